"""LSUN chair with the reference recipe: two generators, progressive 8 -> 128 px, eta = 0.15.

Images from tfds (``lsun/chair``) or LSUN's lmdb database (``--config.data.name=lsun_lmdb
--config.data.path=DIR/chair_lmdb``); see configs/car.py.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "lsun/chair"
  config.loss.min_mask_coverage = 0.15
  return config
