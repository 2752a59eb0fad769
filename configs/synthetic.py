"""CPU-sized default: the embedded synthetic dataset at 32 px with narrow models.

The method is the reference one (two generators, shift 0.125, mask losses, WGAN-GP, EMA); only
the sizes and the schedule are scaled down so that a 2-core CPU trains it in minutes.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "synthetic"
  config.data.num_train_examples = 20_000
  config.model.channels = (64, 64, 32, 16, 16)  # 4, 8, 16, 32, 64 px
  config.model.style_dim = 128
  config.model.mapping_layers = 4
  config.perturb.bg_contrast_jitter = 0.0
  config.loss.min_mask_coverage = 0.1
  config.train.start_resolution = 32
  config.train.resolution = 32
  config.train.batch_size = 16
  config.train.batch_sizes = ""
  config.train.lrs = ""
  config.train.lr = 2e-3
  config.train.ema_rampup = True
  config.train.phase_images = 50_000
  config.train.max_steps = 2_500
  config.train.log_every_steps = 50
  config.train.sample_every_steps = 250
  config.train.checkpoint_every_steps = 250
  config.encoder.width = 32
  config.encoder.max_width = 128
  config.encoder.batch_size = 32
  config.encoder.lr = 1e-3
  config.encoder.max_steps = 600
  config.encoder.log_every_steps = 50
  config.encoder.checkpoint_every_steps = 500
  config.segmenter.width = 16
  config.segmenter.levels = 4
  config.segmenter.max_steps = 1_500
  config.segmenter.log_every_steps = 50
  config.segmenter.checkpoint_every_steps = 500
  config.eval.max_examples = 500
  config.eval.num_generated = 256
  config.train.fid_every_images = 0  # FID / KID at the end only (--mode=evaluate): 500 + 500.
  config.eval.fid_samples = 500
  config.eval.fid_real_images = 500
  config.runtime.xla_cpu_kernels = "xla"  # Narrow models: XLA's own kernels are faster.
  config.model.resampling = "direct"  # The committed synthetic results were trained with it.
  return config
