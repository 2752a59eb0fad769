"""The run folder: its layout (JAX-free), the Orbax checkpoints with their checksums, and the
writer's lease and readers' holds."""
