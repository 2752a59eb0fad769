"""Default configuration: the reference LSUN recipe (Bielski & Favaro 2019), fields documented.

Every other config imports this one and overrides a few fields. Any field can be overridden on
the command line, e.g. ``--config.train.max_steps=1000 --config.perturb.shift=0``.
"""

import ml_collections

from layered_gan_jax.nets.architecture import REFERENCE_CHANNELS  # 4, 8, ..., 1024 px


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameters, latents, perturbations and the data order.

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # 'synthetic' (embedded), 'folder', 'lsun/car', 'lsun/horse', 'lsun/chair', 'lsun/bird',
  # 'caltech_birds2011', 'oxford_iiit_pet'.
  config.data.name = "lsun/car"
  config.data.path = ""  # Root folder for name='folder' (images; images/ + masks/ to evaluate).
  config.data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds data_dir.
  config.data.num_train_examples = 100_000  # The first N training images (reference: 100k).
  config.data.org_to_crop = 1.125  # Square-resize to org_to_crop * R, then random R x R crop.
  config.data.random_crop = True  # False = plain resize to R (poster ablation (e)).
  config.data.cub_test_ids_path = ""  # ReDO's 1,000-image CUB test list (one file name a line).
  config.data.cub_images_txt_path = ""  # CUB images.txt, to map ReDO's numeric ids to names.
  config.data.on_bad_file = "skip"  # Unreadable images: 'skip' (counted, logged) or 'error'.
  config.data.on_missing_mask = "error"  # Evaluation folders: an image without mask.
  config.data.pet_boundary_is_foreground = False  # Oxford pets: trimap 3 (boundary) -> fg?
  config.data.train_split = "train"  # tfds split the training images come from.
  config.data.download = False  # Let tfds download and prepare missing datasets.
  config.data.synthetic_seed = 0  # Which embedded synthetic dataset (not the run's seed).
  # Experiments on the synthetic dataset's design: another layout (data/synthetic.Layout:
  # margin, rim_probability, bg_textures); unset fields keep the dataset's own.
  config.data.synthetic_layout = ml_collections.ConfigDict()
  config.data.synthetic_layout.margin = ml_collections.config_dict.placeholder(float)
  config.data.synthetic_layout.rim_probability = ml_collections.config_dict.placeholder(float)
  config.data.synthetic_layout.bg_textures = ml_collections.config_dict.placeholder(tuple)
  # Several sources in one run (e.g. two object categories), mixed by weight:
  # ((name, path, weight), ...) with a name as above and the path of the folder or lmdb
  # database, the synthetic category ('' = all of it) or the tfds data_dir ('' = data_dir).
  # Empty: the one source named above. The other fields apply to every source. docs/data.md.
  config.data.sources = ()
  config.data.synthetic_category = ""  # '' = the whole synthetic dataset, 'round', 'angular'.
  config.data.num_workers = 4  # Threads decoding / transforming images.
  config.data.prefetch = 2  # Batches prepared ahead of the training step.

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  # 'two_generators' (default), 'single_generator' (poster ablation (h)), 'shared_style'.
  config.model.variant = "two_generators"
  # Channels per resolution 4, 8, 16, ... (generator and critic); only the entries up to the
  # final training resolution are built. Reference: 512 up to 32 px, then 256, 128, 64, 32, 16.
  config.model.channels = REFERENCE_CHANNELS
  config.model.style_dim = 512  # z and w dimension.
  config.model.mapping_layers = 8  # Dense layers in each mapping network.
  config.model.fused_resolution = 128  # Fused up/down-sampling convs from this resolution on.
  # Not in the paper: a constant added to the mask logit (e.g. -3: start with an almost empty
  # mask, so the background generator models whole images first). 0 = reference.
  config.model.mask_logit_offset = 0.0
  # Not in the paper: init std of the generators' 1x1 output heads (1.0 = reference; below 1
  # the layers start nearer the data's contrast).
  config.model.head_init_std = 1.0
  config.model.dtype = "float32"  # Computation dtype: 'float32' or 'bfloat16' (params fp32).
  # How up/down-sampling around convs is computed (same function, same parameters):
  # 'efficient' (sub-pixel upsample-conv; conv + pooling as one matrix product; fewer FLOPs) or
  # 'direct' (the literal upsample-then-conv and conv-then-pool). Speed: docs/performance.md.
  config.model.resampling = "efficient"

  # ---------------------------------------------------------------- perturbations
  config.perturb = ml_collections.ConfigDict()
  config.perturb.shift = 0.125  # Max foreground shift as a fraction of R (poster beta; 0 = off).
  config.perturb.bg_contrast_jitter = 0.3  # Background contrast jitter strength (0 = off).

  # ---------------------------------------------------------------- losses
  config.loss = ml_collections.ConfigDict()
  config.loss.min_mask_coverage = 0.25  # eta: car 0.25, horse 0.20, chair 0.15, bird 0.15.
  # Not in the paper: also penalise coverage above this (1.0 = off), against inverted layers.
  config.loss.max_mask_coverage = 1.0
  config.loss.mask_size_weight = 2.0  # gamma1 (poster ablation (f) raises it).
  config.loss.binarization_weight = 2.0  # gamma2.
  config.loss.gp_weight = 10.0  # WGAN-GP gradient-penalty weight.
  config.loss.drift_weight = 0.001  # Drift penalty on D(real)^2.

  # ---------------------------------------------------------------- training (the GAN)
  config.train = ml_collections.ConfigDict()
  config.train.start_resolution = 8  # First progressive stage.
  config.train.resolution = 128  # Final resolution (= start_resolution: no progressive growing).
  config.train.phase_images = 600_000  # Real images per fade-in and per stabilization phase.
  config.train.batch_size = 32  # Global batch for resolutions not in batch_sizes.
  config.train.batch_sizes = "8:256,16:128,32:64,64:32,128:32"  # Per-resolution global batch.
  config.train.lr = 1e-3  # Base Adam learning rate.
  config.train.lrs = "128:0.0015"  # Per-resolution overrides of lr.
  config.train.mapping_lr_mult = 0.01  # Mapping networks train at lr * this.
  config.train.critic_lr_mult = 1.0  # The critic trains at lr * this.
  config.train.adam_b1 = 0.0
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-8
  config.train.ema_decay = 0.999  # EMA of generator parameters after every generator step.
  # Use min(ema_decay, (1 + t) / (10 + t)) at iteration t, so that short runs are not dominated
  # by the random initialisation (not in the reference, which trains ~100k iterations).
  config.train.ema_rampup = False
  config.train.style_mixing_prob = 0.9
  config.train.max_steps = 110_000  # Stop after this many iterations (critic + generator step).
  config.train.log_every_steps = 100
  config.train.sample_every_steps = 2_000  # Image grids from fixed latents (EMA generator).
  config.train.checkpoint_every_steps = 2_000
  config.train.keep_checkpoints = 3
  config.train.num_samples = 16  # Latents in the sample grids.
  # Recompute the critic's activations in the gradient penalty's double backward instead of
  # keeping them from the forward pass (jax.checkpoint); the same numbers, more compute.
  config.train.remat_penalty = False
  # Training iterations per compiled call (a lax.scan of the step): fewer dispatches for small
  # models on fast accelerators; the same numbers. Calls end at every log, sample, checkpoint
  # and FID step. 1 = one iteration per call.
  config.train.steps_per_call = 1
  # Batches put on the devices ahead of the step that needs them (0 = when needed).
  config.train.device_prefetch = 2
  # Collapse (layered_gan_jax/training/collapse.py): the masks of the sample latents empty, full or the
  # same for every latent at this many consecutive sample steps -> a warning; with
  # stop_on_collapse the run also stops after a checkpoint (exit status 3).
  config.train.collapse_patience = 3
  config.train.stop_on_collapse = False
  # FID / KID of the EMA generator (layered_gan_jax/metrics/fid.py) every this many images, on
  # train.fid_samples samples against eval.fid_real_images real ones; 0 = off.
  config.train.fid_every_images = 1_000_000
  config.train.fid_samples = 5_000

  # ---------------------------------------------------------------- encoders (segmentation)
  config.encoder = ml_collections.ConfigDict()
  # What the encoder predicts: 'z' (one latent for both layers), 'z_per_generator' (a latent per
  # generator), 'w' (a style per generator), 'w_plus' (a style per block and generator).
  # The choice measured: docs/results.md (benchmarks/results/encoder_choices.json).
  config.encoder.target = "w_plus"
  # Generator noise while encoding: 'fixed' (one seeded draw, as in training) or 'zero'.
  config.encoder.noise = "fixed"
  config.encoder.width = 64  # Channels of the first ResNet stage (doubled per stage, capped).
  config.encoder.max_width = 512
  config.encoder.blocks_per_stage = 1
  config.encoder.feature_weight = 1.0  # Weight of the critic-feature term of L_auto.
  config.encoder.latent_weight = 0.0  # Extra loss on generated samples with known latents.
  # Also predict a translation and scale of the foreground and mask (a zero-initialised head:
  # training starts at the identity).
  config.encoder.predict_placement = False
  # At prediction time: refine the encoder's output per batch by this many Adam steps on the
  # training reconstruction loss (0 = off), at refine_lr.
  config.encoder.refine_steps = 0
  config.encoder.refine_lr = 0.01
  config.encoder.batch_size = 32
  config.encoder.lr = 1e-4
  config.encoder.max_steps = 20_000
  config.encoder.log_every_steps = 100
  config.encoder.checkpoint_every_steps = 2_000

  # ---------------------------------------------------------------- distilled segmenter
  # A U-Net trained on the frozen EMA generator's layers, recomposed into (image, mask) pairs
  # (--mode=train_segmenter; layered_gan_jax/nets/recompose.py).
  config.segmenter = ml_collections.ConfigDict()
  config.segmenter.width = 32  # U-Net channels at full resolution (doubled per level).
  config.segmenter.levels = 5  # Resolutions; the input side must divide by 2**(levels - 1).
  config.segmenter.batch_size = 32
  config.segmenter.lr = 2e-3  # Adam, cosine decay to 5 % over max_steps.
  config.segmenter.max_steps = 20_000
  config.segmenter.dice_weight = 0.5  # Loss: BCE + dice_weight * (1 - soft Dice).
  config.segmenter.recompose = True  # False: the generator's own composites and masks.
  config.segmenter.scale_range = (0.6, 1.5)  # Foreground + mask scale, log-uniform.
  config.segmenter.translate = True  # Move foreground + mask anywhere in the frame,
  config.segmenter.max_cut = 0.2  # keeping all but this share of the mask's extent inside.
  config.segmenter.flip_prob = 0.5  # Mirror foreground + mask left-right.
  config.segmenter.swap_background_prob = 0.5  # Over another sample's background.
  config.segmenter.color_jitter = 0.0  # Brightness / contrast / saturation strength (0 = off).
  config.segmenter.min_area = 0.02  # Mask filter: binarized area range,
  config.segmenter.max_area = 0.9
  config.segmenter.max_uncertainty = 0.15  # and mean min(m, 1 - m) at most this.
  config.segmenter.validation_size = 256  # Held-out recomposed pairs for model selection.
  config.segmenter.log_every_steps = 100
  config.segmenter.checkpoint_every_steps = 2_000

  # ---------------------------------------------------------------- segmentation route
  config.segment = ml_collections.ConfigDict()
  # What evaluate's top-level figures and --mode=segment use: 'distilled' (the segmenter above)
  # or 'encoder' (the paper's: the generator's mask of G(E(x))).
  config.segment.route = "distilled"
  # Distilled route: the mean of the U-Net's logits of the image and of its mirror image.
  config.segment.mirror_average = True

  # ---------------------------------------------------------------- evaluation
  config.eval = ml_collections.ConfigDict()
  config.eval.data = ml_collections.ConfigDict()
  config.eval.data.name = ""  # '' = the test split of the training dataset.
  config.eval.data.path = ""  # images/ + masks/ root for name='folder'.
  # Several labelled sets, ((name, path), ...) as data.sources: metrics per source and overall.
  # Unset with data.sources: the training sources' test splits.
  config.eval.data.sources = ()
  config.eval.max_examples = 1000  # Cap on evaluated images (0 = all).
  config.eval.batch_size = 64
  config.eval.baselines = ("full_image", "center_prior", "grabcut")
  config.eval.num_generated = 1000  # Generated images for mask statistics.
  config.eval.external_segmenter = ""  # 'module:function' plug-in (e.g. a Mask R-CNN wrapper).
  # FID / KID in --mode=evaluate: generated samples (0 = off) against real training images
  # (statistics cached per dataset, resolution, crop and count); --mode=fid for any checkpoint.
  config.eval.fid_samples = 50_000
  config.eval.fid_real_images = 50_000
  # A converted Inception file (local or gs://); '' = fetched and converted once per host.
  config.eval.fid_weights = ""

  # ---------------------------------------------------------------- runtime
  config.runtime = ml_collections.ConfigDict()
  # XLA:CPU kernels (layered_gan_jax/runtime.py): 'ynn' routes convolutions, matmuls and
  # reductions to YNNPACK (faster at the reference widths on CPU); 'xla' keeps XLA's defaults
  # (faster for narrow CPU models). No effect on GPU / TPU. Speed: docs/performance.md.
  config.runtime.xla_cpu_kernels = "ynn"
  # One training per network and workdir (layered_gan_jax/run/lease.py): a writer lease of another
  # host (or on an object store) not renewed for this long is taken for a dead process's.
  config.runtime.lease_stale_after_s = 1800.0
  return config
