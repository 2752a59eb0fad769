"""LSUN car and horse in one run, as the poster trains "a dataset with two object categories":
the reference recipe of configs/car.py on the first 100k images of each, mixed 0.5 / 0.5.

Images from tfds (``lsun/car`` and ``lsun/horse`` prepared in ``--config.data.data_dir``) or
from LSUN's lmdb databases:

  --config.data.sources="(('lsun_lmdb','DIR/car_lmdb',0.5),('lsun_lmdb','DIR/horse_lmdb',0.5))"

LSUN has no masks: to score per category, give labelled folders (images/ + masks/ each),
``--config.eval.data.sources="(('folder','DIR/car_eval'),('folder','DIR/horse_eval'))"``.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.sources = (("lsun/car", "", 0.5), ("lsun/horse", "", 0.5))
  # eta: the smaller of the two categories' (car 0.25, horse 0.20), so that neither category's
  # objects are pushed larger than their own recipe does (our choice, not the paper's).
  config.loss.min_mask_coverage = 0.20
  return config
