"""The networks and what they compute: generator, critic, encoder, U-Net, Inception, their
layers, compositing and recomposition, the sampler of a frozen generator, and building them
from a config. Imports from ``data`` and the ground floor only."""
