"""CUB-200-2011 (tfds caltech_birds2011), full image resized to 128 px, eta 0.15 (birds).

Splits (the first log line of a run says which is used):

* ReDO's (set ``--config.data.cub_test_ids_path=ids.txt``, and ``cub_images_txt_path`` if the
  list holds numeric ids): train on tfds train+test minus ReDO's 1,000 test images (all
  10,788), evaluate on those 1,000.
* Without the list (a one-line warning): train on the tfds 'train' split (5,994 images),
  evaluate on the whole tfds 'test' split (5,794 images): not ReDO's protocol.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "caltech_birds2011"
  # All remaining CUB images: 11,788 - ReDO's 1,000 (without the list: all 5,994 of 'train').
  config.data.num_train_examples = 10_788
  config.loss.min_mask_coverage = 0.15
  config.eval.data.name = "caltech_birds2011"
  config.eval.max_examples = 0  # All test images (ReDO's 1,000, or tfds 'test').
  return config
