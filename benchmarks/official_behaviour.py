"""``official_parity.py behaviour``: both implementations trained on the same data, compared.

For every (setting, seed) it
  1. builds ``configs/synthetic.py`` with the setting's overrides and the seed;
  2. writes the exact real-batch stream our trainer will read (``data.train.train_iterator``
     per stage, as ``train_gan`` calls it) to .npy files, and our initial weights in the
     official names (``official_common.to_official``);
  3. trains ours with ``train_gan.train_and_evaluate`` (the real entry point) and the official
     ``train.train()`` (``official_driver.py --mode=train``) on that stream, from those weights;
  4. draws both EMA generators' layers on the same fixed latents and reports the statistics of
     ``evaluate.sample_mask_statistics`` (with the reference segmenter of the emergence
     benchmark) and the loss curves averaged over the logging windows.

Settings: ``fixed32`` (configs/synthetic.py as shipped: 32 px from the start), ``progressive``
(8 -> 16 -> 32 px over the same number of images, batch 16 throughout) and ``border``
(``fixed32`` on synthetic objects placed as in dataset version 1: margin -0.15, cut by the
frame). The official EMA follows the same rule as ours (``train.ema_rampup``) through a
wrapper of its ``accumulate``; everything else in its loop is its own.
"""

import os
import shutil
import time
import types
from typing import Dict, List

import numpy as np

from benchmarks import official_common as oc  # pylint: disable=g-import-not-at-top
from benchmarks.common import command_line  # pylint: disable=g-import-not-at-top

SETTINGS = ("fixed32", "progressive", "border")
BORDER_MARGIN = -0.15  # dataset version 1's placement: objects may be cut by the frame
CURVES = ("critic_loss", "wasserstein", "gradient_penalty", "generator_loss")
STATS = (
  "mask_coverage",
  "mask_binary_fraction",
  "binarized_coverage_mean",
  "binarized_coverage_std",
  "centroid_spread_px",
  "reference_miou",
  "reference_miou_inverted_mask",
)


def log(msg):
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_config(setting: str, seed: int, iterations: int):
  from configs import synthetic  # pylint: disable=g-import-not-at-top

  config = synthetic.get_config()
  config.loss.max_mask_coverage = 1.0  # The official code has no upper coverage penalty.
  config.seed = seed
  config.train.max_steps = iterations
  if setting == "progressive":
    batch = config.train.batch_size
    # Three stages of about a third of the images each; 2 * phase is kept off a multiple of
    # the batch, where the official loop would run one iteration more per stage than ours.
    phase = (iterations * batch) // 6
    while (2 * phase) % batch == 0:
      phase -= 1
    config.train.start_resolution = 8
    config.train.phase_images = phase
  config.data.synthetic_layout.update(_layout(setting))
  return config


def _layout(setting: str) -> Dict:
  """The synthetic dataset's layout fields of a setting (the data config's
  ``synthetic_layout``): ``border`` places objects as dataset version 1 did."""
  return {"margin": BORDER_MARGIN} if setting == "border" else {}


def export_stream(config, directory) -> List[Dict]:
  """The real batches ``train_gan`` will read, stage by stage, as .npy [steps, B, R, R, 3]."""
  from layered_gan_jax.data import train_input  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training.schedule import Schedule  # pylint: disable=g-import-not-at-top

  stages = []
  for st in Schedule(config.train).stages:
    steps = min(st.num_steps, config.train.max_steps - st.start_step)
    if steps <= 0:
      break
    path = os.path.join(directory, f"stream_stage{st.stage}.npy")
    out = np.lib.format.open_memmap(
      path,
      mode="w+",
      dtype=np.float32,
      shape=(steps, st.batch_size, st.resolution, st.resolution, 3),
    )
    it = train_input.train_iterator(
      config.data,
      resolution=st.resolution,
      batch_size=st.batch_size,
      seed=config.seed + 1000 * st.stage,
      start_index=0,
    )
    for i in range(steps):
      out[i] = next(it)["image"]
    out.flush()
    del out
    stages.append(
      {"stage": st.stage, "iterations": steps, "fade_images": st.fade_images, "images": path}
    )
  return stages


def our_initial_weights(config, path):
  import jax  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import train_gan  # pylint: disable=g-import-not-at-top

  g, d = build.build_generator(config), build.build_critic(config)
  state = jax.device_get(train_gan.init_state(g, d, config))
  ch, ml = list(build.model_channels(config)), config.model.mapping_layers
  arrays = {
    **{f"g/{k}": v for k, v in oc.to_official(state.g_params, "g", ch, ml).items()},
    **{f"d/{k}": v for k, v in oc.to_official(state.d_params, "d", ch, ml).items()},
  }
  np.savez(path, **arrays)


def ema_samples(generator, ema_params, stage, alpha, latents, seed):
  """The EMA generator's layers on fixed ``latents`` (its own noise, seeded)."""
  import jax  # pylint: disable=g-import-not-at-top

  @jax.jit
  def layers(z, key):
    return generator.apply({"params": ema_params}, z, stage=stage, alpha=alpha, rngs={"noise": key})

  out = {"background": [], "foreground": [], "mask": []}
  key = jax.random.PRNGKey(seed)
  for i in range(0, len(latents), 64):
    key, sub = jax.random.split(key)
    l = jax.device_get(layers(latents[i : i + 64], sub))
    for k in out:
      out[k].append(np.asarray(l[k]))
  return {k: np.concatenate(v) for k, v in out.items()}


def our_samples(workdir, latents, seed):
  from layered_gan_jax.training import loading  # pylint: disable=g-import-not-at-top

  gan = loading.load_gan(workdir)
  return ema_samples(gan.generator, gan.ema_params, gan.stage, gan.alpha, latents, seed)


def our_curves(workdir) -> Dict[str, Dict[int, float]]:
  """Scalars our trainer logged (TensorBoard events written by clu): tag -> {step: value}."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top

  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0, "scalars": 0})
  acc.Reload()
  out = {}
  tags = acc.Tags()
  for tag in CURVES:
    if tag in tags.get("tensors", []):
      out[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
    elif tag in tags.get("scalars", []):
      out[tag] = {e.step: float(e.value) for e in acc.Scalars(tag)}
  return out


def official_curves(metrics: Dict[str, np.ndarray], every: int) -> Dict[str, Dict[int, float]]:
  """The official per-iteration metrics as our curves, averaged over our logging windows."""
  per_iter = {
    "critic_loss": metrics["lossD"] + metrics["grad_penalty"],
    "wasserstein": metrics["Dstep_D_x"] - metrics["Dstep_D_Gz"],
    "gradient_penalty": metrics["grad_penalty"] / 10.0,
    "generator_loss": metrics["lossG"],
  }
  n = len(per_iter["critic_loss"])
  out = {}
  for k, v in per_iter.items():
    out[k] = {end: float(np.mean(v[end - every : end])) for end in range(every, n + 1, every)}
  return out


def curve_summary(curves: Dict[str, Dict[int, float]]) -> Dict[str, Dict[str, float]]:
  """Mean of each curve over the first and the last fifth of training."""
  out = {}
  for k, c in curves.items():
    steps = sorted(c)
    if not steps:
      continue
    fifth = max(1, len(steps) // 5)
    out[k] = {
      "first_fifth": float(np.mean([c[s] for s in steps[:fifth]])),
      "last_fifth": float(np.mean([c[s] for s in steps[-fifth:]])),
    }
  return out


def run_pair(args, setting, seed, latents, segmenter) -> Dict:
  import jax  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import train_gan  # pylint: disable=g-import-not-at-top

  config = make_config(setting, seed, args.iterations)
  validate.validate_config(config, "train", jax.device_count())
  root = os.path.join(args.workdir_root, setting, f"seed_{seed}")
  ours_dir, official_dir = os.path.join(root, "ours"), os.path.join(root, "official")
  if os.path.isdir(ours_dir):
    shutil.rmtree(ours_dir)  # a fresh run each time (a resumed run would read another stream)
  os.makedirs(official_dir, exist_ok=True)
  result = {"setting": setting, "seed": seed, "iterations": args.iterations}
  out_path = os.path.join(official_dir, "official_run.npz")
  reuse = args.reuse_official and os.path.exists(out_path)
  if reuse:
    done = len(np.load(out_path)["metrics/lossD"])
    if done != args.iterations:
      raise SystemExit(
        f"error: {out_path} holds {done} official iterations, not "
        f"--iterations={args.iterations}; rerun without --reuse_official"
      )
  t = time.time()
  if not reuse:
    stages = export_stream(config, official_dir)
    init_path = os.path.join(official_dir, "init.npz")
    our_initial_weights(config, init_path)
  result["export_seconds"] = time.time() - t
  log(
    f"{setting} seed {seed}: stream and initial weights written "
    f"({result['export_seconds']:.0f} s); training ours"
  )
  t = time.time()
  train_gan.train_and_evaluate(config, ours_dir)
  result["ours_seconds"] = time.time() - t
  log(f"{setting} seed {seed}: ours done in {result['ours_seconds']:.0f} s")
  if reuse:
    result["official_reused"] = out_path
  else:
    result["official_seconds"] = run_official(
      args, config, seed, latents, official_dir, stages, init_path, out_path
    )
  ours = {"samples": our_samples(ours_dir, latents, seed + 777), "curves": our_curves(ours_dir)}
  return finish_pair(args, result, config, latents, segmenter, root, ours, out_path)


REPLAY_SNAPSHOTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
FORCED_FROM = (1, 10, 100, 500, 1000)  # and the last iteration but one


def replay_pair(args, setting, seed, latents, segmenter) -> Dict:
  """The official loop trained with its draws recorded; ours then fed those same draws (latents,
  noise maps, mixing decisions and crossovers, shifts, GP coefficients) and the same real
  batches through ``gan_steps.make_update_fn``: both trajectories and end states compared, and
  single iterations of ours started from the official state at points along its run."""
  if setting == "progressive":
    raise SystemExit("error: --replay takes --settings fixed32 or border (one stage, no fade-in)")
  config = make_config(setting, seed, args.iterations)
  root = os.path.join(args.workdir_root, "replay", setting, f"seed_{seed}")
  os.makedirs(root, exist_ok=True)
  out_path = os.path.join(root, "official_run.npz")
  n = args.iterations
  forced = sorted({f for f in FORCED_FROM if f < n - 1} | ({n - 1} if n > 1 else set()))
  snaps = sorted({s for s in REPLAY_SNAPSHOTS if s < n} | {n} | {f + 1 for f in forced})
  result = {"setting": setting, "seed": seed, "iterations": n, "replay": True}
  stages = export_stream(config, root)
  if len(stages) != 1:
    raise SystemExit(f"error: --replay needs one training stage, {setting} has {len(stages)}")
  init_path = os.path.join(root, "init.npz")
  our_initial_weights(config, init_path)
  if args.reuse_official and os.path.exists(out_path):
    result["official_reused"] = out_path
  else:
    result["official_seconds"] = run_official(
      args,
      config,
      seed,
      latents,
      root,
      stages,
      init_path,
      out_path,
      extra={"record_draws": True, "snapshots": snaps, "state_snapshots": forced},
      keep_stream=True,
    )
  t = time.time()
  ours = our_replay(config, np.load(out_path), stages[0], init_path, latents, seed, snaps, forced)
  result["ours_seconds"] = time.time() - t
  result["trajectory"], result["forced"] = ours.pop("trajectory"), ours.pop("forced")
  result["draws"] = draw_distributions(
    config, np.load(out_path), stages[0]["stage"], config.train.batch_size, n
  )
  log(f"{setting} seed {seed}: ours replayed in {result['ours_seconds']:.0f} s")
  os.remove(stages[0]["images"])
  return finish_pair(args, result, config, latents, segmenter, root, ours, out_path)


def draw_distributions(config, official, stage, batch, iterations, seed=5) -> Dict:
  """Each kind of random draw of the official run against as many of our
  ``gan_steps.draw_iteration`` calls: the values come from different generators, the
  distributions should be one."""
  import jax  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import gan_steps  # pylint: disable=g-import-not-at-top

  generator = build.build_generator(config)
  draw = jax.jit(lambda k: gan_steps.draw_iteration(generator, config, stage, k, batch))
  ours = [jax.device_get(draw(k)) for k in jax.random.split(jax.random.PRNGKey(seed), iterations)]
  passes = ("critic", "generator")
  mixed = [min(int(c) for c in d["critic"]["crossover"].values()) < stage for d in ours]
  crossovers = [
    int(c) for d, m in zip(ours, mixed) if m for p in passes for c in d[p]["crossover"].values()
  ]
  shifts = np.concatenate([np.ravel(d[p]["shifts"]) for d in ours for p in passes])
  m = int(np.max(np.abs(official["train_draws/shift"])))
  hist = lambda v, lo, n: (np.bincount(np.asarray(v) - lo, minlength=n) / len(v)).tolist()
  noise_ours = np.concatenate(
    [np.ravel(x) for d in ours for p in passes for maps in d[p]["noise"].values() for x in maps]
  )
  noise_theirs = np.concatenate(
    [
      np.ravel(x)
      for x in oc.stack_prefix(  # pylint: disable=protected-access
        official, "train_draws/noise"
      )
    ]
  )
  z_ours = np.concatenate(
    [
      np.ravel(d[p][k])
      for d, mx in zip(ours, mixed)
      for p in passes
      for k in (("z", "z2") if mx else ("z",))
    ]
  )
  z_theirs = np.concatenate(
    [np.ravel(official["train_draws/latent4"]), np.ravel(official["train_draws/latent"])]
  )
  gp_ours = np.concatenate([np.ravel(d["gp"]) for d in ours])
  stats = lambda a: {"mean": float(np.mean(a)), "std": float(np.std(a)), "n": int(a.size)}
  return {
    "iterations": iterations,
    "mixing_rate": {
      "ours": float(np.mean(mixed)),
      "official": float(np.mean(official["train_draws/mixing"])),
    },
    "crossover_histogram": {
      "ours": hist(crossovers, 0, stage),
      "official": hist(official["train_draws/crossover"], 0, stage),
    },
    "shift_histogram": {
      "values": list(range(-m, m + 1)),
      "ours": hist(shifts, -m, 2 * m + 1),
      "official": hist(np.ravel(official["train_draws/shift"]), -m, 2 * m + 1),
    },
    "noise_maps_per_iteration": {
      "ours": sum(len(x) for p in passes for x in ours[0][p]["noise"].values()),
      "official": len(oc.stack_prefix(official, "train_draws/noise")) // iterations,
    },  # pylint: disable=protected-access
    "noise": {"ours": stats(noise_ours), "official": stats(noise_theirs)},
    "latents": {"ours": stats(z_ours), "official": stats(z_theirs)},
    "gp_coefficients": {
      "ours": stats(gp_ours),
      "official": stats(np.ravel(official["train_draws/gp_eps"])),
    },
  }


def _flat(named_arrays):
  return np.concatenate([np.ravel(named_arrays[k]) for k in sorted(named_arrays)])


def _official_named(official, prefix):
  return {k[len(prefix) :]: official[k] for k in official.files if k.startswith(prefix)}


def _official_state(official, n, ch, ml, like):
  """The official state after ``n`` iterations as our ``GANState`` (``like``: ours, for the
  structure of the Adam state; a parameter never stepped keeps zero moments and count)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.training.optim import AdamState  # pylint: disable=g-import-not-at-top

  trees = {
    tag: oc.to_ours(_official_named(official, f"snap/{n}/{tag}/"), model, ch, ml)
    for tag, model in (("g", "g"), ("d", "d"), ("ema", "g"))
  }
  opts = {}
  for tag, model in (("g_opt", "g"), ("d_opt", "d")):
    arrays = _official_named(official, f"snap/{n}/{tag}/")
    parts = {}
    for part in ("mu", "nu"):
      named = {k[: -len(part) - 1]: v for k, v in arrays.items() if k.endswith("/" + part)}
      parts[part] = oc.to_ours(
        named,
        model,
        ch,
        ml,
        default=lambda path: np.zeros_like(np.asarray(oc.get_path(trees[model], path))),
      )  # pylint: disable=protected-access
    count = {}
    for m_, theirs, path, _ in oc.name_map(ch, ml):
      if m_ == model:
        oc.set_path(count, path, np.int32(arrays.get(f"{theirs}/count", 0)))  # pylint: disable=protected-access
    opts[tag] = AdamState(count=count, mu=parts["mu"], nu=parts["nu"])
  to = lambda t: jax.tree.map(jnp.asarray, t)
  return like.replace(
    step=jnp.asarray(n, jnp.int32),
    g_params=to(trees["g"]),
    d_params=to(trees["d"]),
    ema_params=to(trees["ema"]),
    g_opt=to(opts["g_opt"]),
    d_opt=to(opts["d_opt"]),
  )


def our_replay(config, official, stage_spec, init_path, latents, seed, snaps, forced) -> Dict:
  """Our update function on the official run's recorded draws and real batches. Returns our
  EMA generator's samples and our curves; ``trajectory``: per snapshot, how far the two runs
  are apart, as ||ours - official|| / ||official - initial|| over all parameters of a model;
  ``forced``: one iteration of ours from the official state after n iterations, as
  ||ours - official|| / ||official(n + 1) - official(n)|| (the share of the official
  iteration's own step that ours does not reproduce), with both iterations' losses."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import gan_steps, optim  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training.states import create_gan_state  # pylint: disable=g-import-not-at-top

  generator, critic = build.build_generator(config), build.build_critic(config)
  ch, ml = list(build.model_channels(config)), config.model.mapping_layers
  init = np.load(init_path)
  init_named = {m: _official_named(init, m + "/") for m in ("g", "d")}
  params = {m: jax.tree.map(jnp.asarray, oc.to_ours(init_named[m], m, ch, ml)) for m in ("g", "d")}
  adam = optim.make_adam(config.train)
  state = create_gan_state(params["g"], params["d"], jax.random.PRNGKey(0), adam)
  stage = stage_spec["stage"]
  update = jax.jit(gan_steps.make_update_fn(generator, critic, config, stage))
  stream = np.load(stage_spec["images"], mmap_mode="r")
  spec = {"jitter": config.perturb.bg_contrast_jitter}
  cur = oc.Cursor(official, "train_draws")  # pylint: disable=protected-access
  lr, alpha = jnp.float32(config.train.lr), jnp.float32(1.0)
  theirs = {
    "critic_loss": official["metrics/lossD"] + official["metrics/grad_penalty"],
    "generator_loss": official["metrics/lossG"],
  }
  per_iter = {k: [] for k in CURVES}
  trajectory, forced_rows = [], []

  def apart(tree, tag, n, base):
    ours = _flat(oc.to_official(jax.device_get(tree), tag, ch, ml))
    off = _flat(_official_named(official, f"snap/{n}/{tag}/"))
    return float(np.linalg.norm(ours - off) / max(np.linalg.norm(off - base), 1e-30))

  for it in range(stage_spec["iterations"]):
    draws = oc.iteration_draws(cur, spec, stage)
    real = jnp.asarray(stream[it])
    if it in forced:  # from the official state after ``it`` iterations
      start = _official_state(official, it, ch, ml, state)
      one, fm = jax.device_get(update(start, real, draws, alpha, lr))
      row = {"from": it}
      for tag, tree in (("g", one.g_params), ("d", one.d_params)):
        row[f"{tag}_step_unreproduced"] = apart(
          tree, tag, it + 1, _flat(_official_named(official, f"snap/{it}/{tag}/"))
        )
      for k in theirs:
        row[f"{k}_ours"], row[f"{k}_official"] = float(fm[k]), float(theirs[k][it])
      forced_rows.append(row)
      log(
        f"replay: one iteration from the official state at {it}: "
        + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "from")
      )
    state, m = update(state, real, draws, alpha, lr)
    m = jax.device_get(m)
    for k in CURVES:
      per_iter[k].append(float(m[k]))
    n = it + 1
    if n in snaps:
      row = {"iteration": n}
      for tag, tree in (("g", state.g_params), ("d", state.d_params)):
        row[f"{tag}_apart"] = apart(tree, tag, n, _flat(init_named[tag]))
      for k in theirs:
        row[f"{k}_abs_diff"] = abs(per_iter[k][-1] - float(theirs[k][it]))
      trajectory.append(row)
      log(
        f"replay: iteration {n}: "
        + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "iteration")
      )
  every = config.train.log_every_steps
  curves = {
    k: {end: float(np.mean(v[end - every : end])) for end in range(every, len(v) + 1, every)}
    for k, v in per_iter.items()
  }

  return {
    "samples": ema_samples(generator, state.ema_params, stage, 1.0, latents, seed + 777),
    "curves": curves,
    "trajectory": trajectory,
    "forced": forced_rows,
  }


def run_official(
  args,
  config,
  seed,
  latents,
  official_dir,
  stages,
  init_path,
  out_path,
  extra=None,
  keep_stream=False,
):
  """Trains the official loop on the exported stream (``extra``: more spec keys for the
  driver); returns its wall time."""
  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top

  latents_path = os.path.join(official_dir, "latents.npy")
  np.save(latents_path, latents)
  spec = {
    "seed": seed,
    "channels": list(build.model_channels(config)),
    "style_dim": config.model.style_dim,
    "mapping_layers": config.model.mapping_layers,
    "lr": config.train.lr,
    "mapping_lr_mult": config.train.mapping_lr_mult,
    "shift": config.perturb.shift,
    "jitter": config.perturb.bg_contrast_jitter,
    "eta": config.loss.min_mask_coverage,
    "mask_size_weight": config.loss.mask_size_weight,
    "binarization_weight": config.loss.binarization_weight,
    "ema_rampup": bool(config.train.ema_rampup),
    "init": init_path,
    "latents": latents_path,
    "stages": stages,
    **(extra or {}),
  }
  t = time.time()
  oc.run_driver(args, "train", spec, out_path)
  log(f"official done in {time.time() - t:.0f} s")
  if not keep_stream:
    for st in stages:
      os.remove(st["images"])  # hundreds of MB each; rewritten by a rerun
  return time.time() - t


def finish_pair(args, result, config, latents, segmenter, root, ours, out_path):
  """Both implementations' sample statistics and curves for one trained pair (``ours``: our
  EMA generator's ``samples`` on ``latents`` and our ``curves``)."""
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  setting = result["setting"]
  official = np.load(out_path)
  theirs = {
    k: np.asarray(official[f"samples/{k}"]).transpose(0, 2, 3, 1)
    for k in ("background", "foreground", "mask")
  }
  samples = {"ours": ours["samples"], "official": theirs}
  for impl, layers in samples.items():
    comp = (1 - layers["mask"]) * layers["background"] + layers["mask"] * layers["foreground"]
    result[impl] = evaluate.sample_mask_statistics(layers["mask"][..., 0], comp, segmenter[setting])
  metrics = {k[len("metrics/") :]: official[k] for k in official.files if k.startswith("metrics/")}
  curves = {
    "ours": ours["curves"],
    "official": official_curves(metrics, config.train.log_every_steps),
  }
  result["curves"] = {impl: curve_summary(c) for impl, c in curves.items()}
  result["curves_full"] = {
    impl: {k: {str(s): v for s, v in c.items()} for k, c in cs.items()}
    for impl, cs in curves.items()
  }
  np.savez_compressed(
    os.path.join(root, "samples.npz"),
    **{f"{impl}/{k}": v[: args.png_samples] for impl, l in samples.items() for k, v in l.items()},
  )
  return result


class ReferenceSegmenters(dict):
  """The emergence benchmark's reference segmenter per dataset placement, trained (or loaded
  from ``workdir_root``) when a setting first needs it."""

  def __init__(self, args):
    super().__init__()
    self.args, self.upper_bounds = args, {}

  def __missing__(self, setting):
    from benchmarks import emergence  # pylint: disable=g-import-not-at-top

    placement = "border" if setting == "border" else "v2"
    if placement not in self.upper_bounds:
      seg_args = types.SimpleNamespace(
        segmenter_steps=self.args.segmenter_steps,
        segmenter_width=16,
        segmenter_levels=4,
        segmenter_seed=0,
        workdir_root=os.path.join(self.args.workdir_root, "segmenter_" + placement),
      )
      from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top

      layout = data_config.synthetic_layout({"synthetic_layout": _layout(setting)})
      seg, ub = emergence.get_reference_segmenter(seg_args, 32, 500, layout=layout)
      self.upper_bounds[placement] = ub
      self["_" + placement] = seg
    self[setting] = self["_" + placement]
    return self[setting]


def real_mask_statistics(setting, n=500) -> Dict[str, float]:
  """The same statistics on the real test masks (what a generator should match)."""
  from layered_gan_jax.data import eval_input  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  masks = []
  data = {"name": "synthetic", "synthetic_layout": _layout(setting)}
  for b in eval_input.eval_dataset(data, resolution=32, batch_size=100, max_examples=n):
    masks.append(np.asarray(b["mask"])[np.asarray(b["valid"])])
  m = np.concatenate(masks).astype(np.float32)
  m = m[..., 0] if m.ndim == 4 else m
  stats = evaluate.sample_mask_statistics(m, np.zeros(m.shape + (3,), np.float32))
  return {k: stats[k] for k in ("mask_coverage", "binarized_coverage_std", "centroid_spread_px")}


def markdown(result) -> str:
  lines = [
    f"# Ours vs the official code: same data, same budget ({result['date']})",
    "",
    f"Command: `{result['command']}`",
    "",
    f"Machine: {result['machine']}. Wall time {result['seconds'] / 60:.0f} min.",
    "",
  ]
  head = (
    "| setting | seed | impl | coverage | near-binary | bin. cov. std | centroid spread "
    "(px) | reference mIoU | inverted | critic loss (last 1/5) | W estimate | GP |"
  )
  lines += [head, "|" + "---|" * 12]
  for r in result["runs"]:
    for impl in ("ours", "official"):
      s, c = r[impl], r["curves"][impl]
      label = "ours, official draws" if impl == "ours" and r.get("replay") else impl
      lines.append(
        f"| {r['setting']} | {r['seed']} | {label} | {s['mask_coverage']:.3f} | "
        f"{s['mask_binary_fraction']:.3f} | {s['binarized_coverage_std']:.3f} | "
        f"{s['centroid_spread_px']:.2f} | {s['reference_miou']:.3f} | "
        f"{s['reference_miou_inverted_mask']:.3f} | "
        + " | ".join(
          f"{c[k]['last_fifth']:.{d}f}" if k in c else "n/a"
          for k, d in (("critic_loss", 2), ("wasserstein", 2), ("gradient_penalty", 3))
        )
        + " |"
      )
  replays = [r for r in result["runs"] if r.get("trajectory")]
  if replays:
    replay_tables = (
      (
        "Replay: ours fed the official run's recorded draws and real batches. How far apart "
        "the two runs are after n iterations, ||ours - official|| / ||official - initial|| "
        "over all parameters of a model, and |ours - official| of the losses at iteration n:",
        "trajectory",
        lambda t: (
          t["iteration"],
          f"{t['g_apart']:.2e}",
          f"{t['d_apart']:.2e}",
          f"{t['critic_loss_abs_diff']:.2e}",
          f"{t['generator_loss_abs_diff']:.2e}",
        ),
      ),
      (
        "One iteration of ours from the official state after n iterations: the share of the "
        "official iteration's step that ours does not reproduce, ||ours(n + 1) - official(n + "
        "1)|| / ||official(n + 1) - official(n)||, and the iteration's losses (ours / "
        "official):",
        "forced",
        lambda t: (
          t["from"],
          f"{t['g_step_unreproduced']:.2e}",
          f"{t['d_step_unreproduced']:.2e}",
          f"{t['critic_loss_ours']:.4f} / {t['critic_loss_official']:.4f}",
          f"{t['generator_loss_ours']:.4f} / {t['generator_loss_official']:.4f}",
        ),
      ),
    )
    for caption, key, cells in replay_tables:
      lines += [
        "",
        caption,
        "",
        "| setting | seed | n | generator | critic | critic loss | generator loss |",
        "|" + "---|" * 7,
      ]
      lines += [
        "| " + " | ".join(str(c) for c in (r["setting"], r["seed"], *cells(t))) + " |"
        for r in replays
        for t in r[key]
      ]
    for r in replays:
      d = r.get("draws")
      if not d:
        continue
      f = lambda v: ", ".join(f"{x:.3f}" for x in v)
      lines += [
        "",
        f"Random draws of {d['iterations']} iterations, ours / official "
        f"({r['setting']}, seed {r['seed']}):",
        "",
        f"- mixing rate {d['mixing_rate']['ours']:.3f} / {d['mixing_rate']['official']:.3f}",
        f"- crossover histogram {f(d['crossover_histogram']['ours'])} / "
        f"{f(d['crossover_histogram']['official'])}",
        f"- shift histogram over {d['shift_histogram']['values']}: "
        f"{f(d['shift_histogram']['ours'])} / {f(d['shift_histogram']['official'])}",
        f"- noise maps per iteration {d['noise_maps_per_iteration']['ours']} / "
        f"{d['noise_maps_per_iteration']['official']}",
      ]
      for k in ("noise", "latents", "gp_coefficients"):
        lines.append(
          f"- {k}: mean {d[k]['ours']['mean']:.4f} / {d[k]['official']['mean']:.4f}, "
          f"std {d[k]['ours']['std']:.4f} / {d[k]['official']['std']:.4f}"
        )
  lines += ["", "Real test masks (500):", ""]
  for setting, s in result["real_masks"].items():
    lines.append(
      f"- {setting}: coverage {s['mask_coverage']:.3f}, binarized coverage std "
      f"{s['binarized_coverage_std']:.3f}, centroid spread "
      f"{s['centroid_spread_px']:.2f} px"
    )
  return "\n".join(lines) + "\n"


def make_png(result, path, n):
  from layered_gan_jax import visualization  # pylint: disable=g-import-not-at-top

  blocks = []
  for r in result["runs"]:
    if r["seed"] != result["runs"][0]["seed"] and r["setting"] == "fixed32":
      continue
    data = np.load(os.path.join(r["workdir"], "samples.npz"))
    for impl in ("ours", "official"):
      bg, fg, m = (data[f"{impl}/{k}"][:n] for k in ("background", "foreground", "mask"))
      comp = (1 - m) * bg + m * fg
      blocks += [visualization.to_uint8(comp), visualization.to_uint8(m, (0.0, 1.0))]
  visualization.save_png(path, visualization.grid(blocks))


def run(args):
  start = time.time()
  settings = [s for s in args.settings.split(",") if s]
  bad = [s for s in settings if s not in SETTINGS]
  if bad:
    raise SystemExit(f"error: unknown --settings {bad}; choose from {SETTINGS}")
  seeds = [int(s) for s in args.seeds.split(",")]
  latents = (
    np.random.default_rng(12345)
    .standard_normal((args.num_samples, make_config("fixed32", 0, 1).model.style_dim))
    .astype(np.float32)
  )
  segmenter = ReferenceSegmenters(args)
  runs = []
  for setting in settings:
    for seed in seeds if setting == "fixed32" else seeds[:1]:
      if args.replay:
        r = replay_pair(args, setting, seed, latents, segmenter)
        r["workdir"] = os.path.join(args.workdir_root, "replay", setting, f"seed_{seed}")
      else:
        r = run_pair(args, setting, seed, latents, segmenter)
        r["workdir"] = os.path.join(args.workdir_root, setting, f"seed_{seed}")
      runs.append(r)
      log(
        f"{setting} seed {seed}: "
        + ", ".join(
          f"{impl} ref mIoU {r[impl]['reference_miou']:.3f} / inv "
          f"{r[impl]['reference_miou_inverted_mask']:.3f}, bin. cov. std "
          f"{r[impl]['binarized_coverage_std']:.3f}"
          for impl in ("ours", "official")
        )
      )
      _write(args, runs, settings, start, segmenter)
  return _write(args, runs, settings, start, segmenter)


def _write(args, runs, settings, start, segmenter):
  result = {
    "command": command_line("benchmarks.official_parity"),
    **oc.provenance(),
    "seconds": time.time() - start,  # pylint: disable=protected-access
    "iterations": args.iterations,
    "num_samples": args.num_samples,
    "runs": [{k: v for k, v in r.items() if k != "curves_full"} for r in runs],
    "curves": {f"{r['setting']}/seed_{r['seed']}": r["curves_full"] for r in runs},
    "reference_segmenter": dict(segmenter.upper_bounds),
    "real_masks": {s: real_mask_statistics(s) for s in settings},
  }
  oc.write_json(args.json, result)  # pylint: disable=protected-access
  base = os.path.splitext(args.json)[0]
  with open(base + ".md", "w") as f:
    f.write(markdown(result))
  if runs:
    make_png(result, base + ".png", args.png_samples)
  return result
