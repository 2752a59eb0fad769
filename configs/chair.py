"""LSUN chair with the reference recipe: two generators, progressive 8 -> 128 px, eta = 0.15."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "lsun/chair"
  config.loss.min_mask_coverage = 0.15
  return config
