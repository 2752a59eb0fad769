"""LSUN horse with the reference recipe: two generators, progressive 8 -> 128 px, eta = 0.20.

Images from tfds (``lsun/horse``) or LSUN's lmdb database (``--config.data.name=lsun_lmdb
--config.data.path=DIR/horse_lmdb``); see configs/car.py.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "lsun/horse"
  config.loss.min_mask_coverage = 0.20
  return config
