"""LSUN car with the reference recipe: two generators, progressive 8 -> 128 px, eta = 0.25.

The images come from tfds (``lsun/car``, prepared in ``--config.data.data_dir``) or from LSUN's
own lmdb database: ``--config.data.name=lsun_lmdb --config.data.path=DIR/car_lmdb`` (the
folder holding ``data.mdb``; the first ``num_train_examples`` records in key order).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "lsun/car"
  config.loss.min_mask_coverage = 0.25
  return config
