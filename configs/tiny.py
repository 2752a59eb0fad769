"""Tiny variant for tests and smoke runs: 8 -> 16 px progressive growing with minute widths.

Trains a few iterations in seconds on a CPU; the numbers it produces mean nothing.
"""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.model.channels = (16, 16, 8)  # 4, 8, 16 px
  config.model.style_dim = 16
  config.model.mapping_layers = 2
  config.train.start_resolution = 8
  config.train.resolution = 16
  config.train.phase_images = 16  # 2 iterations of fade-in, 2 of stabilization at batch 8
  config.train.batch_size = 8
  config.train.max_steps = 8
  config.train.log_every_steps = 2
  config.train.sample_every_steps = 4
  config.train.checkpoint_every_steps = 4
  config.train.num_samples = 4
  config.encoder.width = 8
  config.encoder.max_width = 16
  config.encoder.batch_size = 8
  config.encoder.max_steps = 4
  config.encoder.log_every_steps = 2
  config.encoder.checkpoint_every_steps = 4
  config.segmenter.width = 4
  config.segmenter.levels = 3
  config.segmenter.batch_size = 8
  config.segmenter.max_steps = 4
  config.segmenter.log_every_steps = 2
  config.segmenter.checkpoint_every_steps = 4
  config.segmenter.validation_size = 16
  config.eval.max_examples = 16
  config.eval.batch_size = 8
  config.eval.num_generated = 16
  config.train.fid_every_images = 0  # The Inception network is far larger than this model.
  config.eval.fid_samples = 0
  return config
