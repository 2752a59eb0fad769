"""The three trainers (the GAN, the encoder, the distilled segmenter) and what they share: the
loop, the states, the optimiser, the schedule, the losses, preemption, the collapse watch, and
loading trained networks from a run folder."""
