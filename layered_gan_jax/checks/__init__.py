"""What runs before any work, without JAX: the rule of every config field, the config as a
whole, the data a mode reads, checkpoint compatibility, and the preflight of a command."""
