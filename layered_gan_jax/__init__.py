"""layered_gan_jax: unsupervised object segmentation by perturbed layered GANs (JAX/Flax)."""

__version__ = "0.1.0"
