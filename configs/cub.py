"""CUB-200-2011 (tfds caltech_birds2011): train on train+test minus ReDO's 1,000 test images,
evaluate on those (set data.cub_test_ids_path), full image resized to 128 px, eta 0.15 (birds).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "caltech_birds2011"
  config.data.num_train_examples = 10_000  # All remaining CUB images (about 10.8k).
  config.loss.min_mask_coverage = 0.15
  config.eval.data.name = "caltech_birds2011"
  config.eval.max_examples = 0  # All 1,000 test images.
  return config
