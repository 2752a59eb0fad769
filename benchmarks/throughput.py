"""Training throughput of the layered GAN at one resolution: images/s, FLOP/s, utilization.

  python -m benchmarks.throughput --config=configs/car.py --resolution=64 --batch=32 \
      --steps=20 --warmup=3 [--dtype=bfloat16 --compare_fp32_steps=5] \
      --json=benchmarks/results/throughput_car_64.json

What it measures, for the config's model at a fixed resolution R (``train.start_resolution =
train.resolution = R``, so the model is built up to R with the config's channel widths, e.g. the
reference widths for car.py) and a global batch B split over ``jax.device_count()`` devices:

* ``compile_seconds`` and ``flops_per_iteration``: ``gan_steps.compile_train_step`` (ahead of
  time compile of the whole iteration; FLOPs are XLA's ``cost_analysis`` count of the lowered
  program, i.e. before XLA's optimizations, divided by the device count: on GPU the compiled
  program's own count misses the cuDNN convolutions, see ``gan_steps.flops_of``;
  ``xla_compiled_flops_per_iteration`` keeps that compiled count for comparison). A persistent
  compilation cache (``JAX_COMPILATION_CACHE_DIR``) makes the compile time a cache hit.
* ``step_seconds_all``: ``--steps`` full training iterations (critic step + generator step with
  the perturbations, the two Adam updates and the EMA update, exactly as compiled for training),
  each timed on its own with ``jax.block_until_ready`` after ``--warmup`` untimed ones. The real
  batches come from ``data.train.train_iterator`` and are put on the devices with
  ``parallel.put_batch`` BEFORE timing (up to ``--distinct_batches`` of them, cycled), so the
  step time is the device compute alone. ``images_per_s = B / median(step seconds)``.
* ``input_pipeline_images_per_s``: images/s that ``train_iterator`` delivers for (R, B) on this
  host, timed separately (``--pipeline_batches`` batches). If the config's dataset is not
  available offline (LSUN needs a manual download), the embedded ``synthetic`` dataset is used
  instead, for the training batches and the pipeline timing, and ``data_used`` /
  ``data_note`` say so. For synthetic data the number is the steady state (images rendered once
  and cached, as in every epoch after the first); ``input_pipeline_first_pass_images_per_s``
  includes the rendering.
* ``matmul_flops_per_s``: a jitted dense ``x @ y`` of ``--matmul_size`` square float32 matrices
  (a chain of them inside one call, so dispatch overhead does not count), median of
  ``--matmul_reps`` calls, ``2 n^3 / seconds``; also bfloat16 when ``--dtype=bfloat16``. It uses
  JAX's default matmul precision, the same as the model's convolutions.
* ``utilization = achieved_flops_per_s / matmul_flops_per_s`` where ``achieved_flops_per_s =
  flops_per_iteration / step_seconds_median``. With several devices XLA's count is that of the
  partitioned program, i.e. per device, as is the matmul rate: utilization is per device
  (``*_all_devices`` multiply by the device count).
* ``peak_memory_bytes``: the device allocator's ``peak_bytes_in_use`` (GPU / TPU), or, where the
  device reports no memory statistics (CPU), the process's maximum resident set size
  (``peak_memory_kind`` says which).
* ``--dtype=bfloat16 --compare_fp32_steps=N``: N iterations in bfloat16 and N in float32 from the
  same initial state on the same batches; ``bf16_loss_drift`` holds the relative difference
  ``|bf16 - fp32| / max(|fp32|, 1e-6)`` of critic_loss, generator_loss and gradient_penalty at
  every step and its maximum (the two runs drift apart as their parameters diverge).

``--config.FIELD=VALUE`` (repeatable, as for ``main.py``) overrides config fields, e.g.
``--config.model.channels=(64,64,64)``.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks.common import command_line, cpu_model, load_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax import parallel, runtime
from layered_gan_jax.checks import validate
from layered_gan_jax.data import train_input  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax.nets import build
from layered_gan_jax.nets.architecture import stage_of  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax.training import gan_steps, train_gan
from layered_gan_jax.training.schedule import Schedule  # pylint: disable=g-import-not-at-top,wrong-import-position

LOSS_KEYS = ("critic_loss", "generator_loss", "gradient_penalty")
SYNTHETIC_MAX_RESOLUTION = 128


# ---------------------------------------------------------------------------------------------
# Config.


def prepare_config(args):
  """The config at one fixed resolution; returns (config, stage, batch, lr)."""
  config, args.overrides = load_config(args.config, args.config_overrides)
  r = args.resolution or config.train.resolution
  stage = stage_of(r)
  config.train.start_resolution = r
  config.train.resolution = r
  # The batch and learning rate the config's schedule uses at R, unless --batch is given.
  schedule_stage = Schedule(config.train).stages[0]
  batch = args.batch or schedule_stage.batch_size
  config.train.batch_size = batch
  config.train.batch_sizes = ""
  if args.dtype:
    config.model.dtype = args.dtype
  # Every field is checked, but not the training data: the benchmark times the step on batches
  # of the config's shape, and resolve_data falls back to synthetic ones (and says so) where the
  # config's dataset is not available here (e.g. LSUN, which needs a manual download).
  validate.validate_config(config, "sample")
  runtime.configure_xla_cpu(config.runtime.xla_cpu_kernels)  # Before the first device use.
  validate.validate_config(config, "sample", jax.device_count())
  parallel.check_batch_size(batch)
  return config, stage, batch, schedule_stage.lr


# ---------------------------------------------------------------------------------------------
# Data.


def _synthetic_cfg(config, examples: int) -> dict:
  cfg = config.data.to_dict()
  total = cfg.get("num_train_examples") if cfg.get("name") == "synthetic" else None
  cfg.update(
    name="synthetic", path="", num_train_examples=int(min(examples, total or 20_000, 20_000))
  )
  return cfg


def resolve_data(config, resolution: int, local_batch: int, examples: int):
  """(data cfg dict or None for random images, name used, note). Tries the config's data."""
  name = config.data.name
  if name == "synthetic":
    if resolution > SYNTHETIC_MAX_RESOLUTION:
      return (
        None,
        "random",
        (
          f"the synthetic dataset renders at most "
          f"{SYNTHETIC_MAX_RESOLUTION} px: uniform random images used"
        ),
      )
    return (
      _synthetic_cfg(config, examples),
      "synthetic",
      (f"synthetic (the config's data), limited to {examples} examples"),
    )
  try:
    it = train_input.train_iterator(
      config.data, resolution=resolution, batch_size=local_batch, seed=config.seed
    )
    try:
      next(it)
    finally:
      it.close()
    return config.data.to_dict(), name, f"the config's data ({name})"
  except Exception as e:  # pylint: disable=broad-except
    reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
  if resolution > SYNTHETIC_MAX_RESOLUTION:
    return (
      None,
      "random",
      (
        f"{name} is not available offline ({reason}); the synthetic "
        f"dataset renders at most {SYNTHETIC_MAX_RESOLUTION} px: uniform "
        "random images used, no pipeline timing"
      ),
    )
  return (
    _synthetic_cfg(config, examples),
    "synthetic",
    (
      f"{name} is not available offline ({reason}); fell back to the synthetic dataset "
      f"(limited to {examples} examples) for the training batches and the pipeline timing"
    ),
  )


def host_batches(cfg, resolution: int, local_batch: int, count: int, seed: int):
  if cfg is None:
    rng = np.random.default_rng(seed)
    return [
      rng.uniform(-1, 1, (local_batch, resolution, resolution, 3)).astype(np.float32)
      for _ in range(count)
    ]
  with train_input.train_iterator(
    cfg, resolution=resolution, batch_size=local_batch, seed=seed
  ) as it:
    return [next(it)["image"] for _ in range(count)]


def _rate(it, batches: int, batch: int) -> float:
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch / (time.perf_counter() - start)


def time_pipeline(
  cfg, resolution: int, local_batch: int, seed: int, batches: int, warmup: int
) -> dict:
  """Images/s delivered by train_iterator on this host (per process)."""
  if cfg is None:
    return {"images_per_s": None, "first_pass_images_per_s": None}
  out = {"first_pass_images_per_s": None}
  if cfg["name"] == "synthetic":
    train_input.clear_caches()  # Renders from scratch in the first pass.
  with train_input.train_iterator(
    cfg, resolution=resolution, batch_size=local_batch, seed=seed
  ) as it:
    if cfg["name"] == "synthetic":  # One epoch renders every example once; then cached.
      epoch = math.ceil(cfg["num_train_examples"] / local_batch)
      out["first_pass_images_per_s"] = _rate(it, epoch, local_batch)
    _rate(it, warmup, local_batch)
    out["images_per_s"] = _rate(it, batches, local_batch)
  return out


# ---------------------------------------------------------------------------------------------
# Device measurements.


def matmul_flops_per_s(dtype, n: int, reps: int, target_seconds: float = 0.05) -> dict:
  """Dense n x n matmul FLOP/s: a chain of ``inner`` matmuls per jitted call (inner chosen so a
  call lasts about target_seconds), median over reps calls."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  # Top singular value ~1: the chained products neither overflow nor vanish.
  x = (0.5 / math.sqrt(n) * jax.random.normal(k1, (n, n), jnp.float32)).astype(dtype)
  y = jax.random.normal(k2, (n, n), jnp.float32).astype(dtype)

  def timed(fn):
    start = time.perf_counter()
    jax.block_until_ready(fn(x, y))
    return time.perf_counter() - start

  single = jax.jit(lambda a, b: a @ b)
  timed(single)
  one = min(timed(single) for _ in range(3))
  inner = int(min(256, max(1, math.ceil(target_seconds / max(one, 1e-7)))))
  chain = jax.jit(lambda a, b: jax.lax.fori_loop(0, inner, lambda i, c: a @ c, b))
  timed(chain)
  seconds = statistics.median(timed(chain) for _ in range(reps)) / inner
  return {
    "flops_per_s": 2.0 * n**3 / seconds,
    "n": n,
    "matmuls_per_call": inner,
    "calls": reps,
    "seconds_per_matmul": seconds,
  }


def peak_memory() -> tuple:
  peaks = []
  for d in jax.local_devices():
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  if peaks:
    return max(peaks), "device_peak_bytes_in_use (max over local devices)"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss *= 1 if sys.platform == "darwin" else 1024  # kB on Linux, bytes on macOS
  return int(rss), "host_max_rss (the device reports no memory statistics)"


def compiled_memory(compiled) -> dict:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if m is None:
    return {}
  keys = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "temp_size_in_bytes",
    "alias_size_in_bytes",
    "generated_code_size_in_bytes",
  )
  return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def run_steps(compiled, state, batches, n: int, alpha, lr, timed: bool):
  """n iterations cycling over the device batches; returns (state, seconds, metrics list)."""
  seconds, metrics = [], []
  for i in range(n):
    start = time.perf_counter()
    state, m = compiled(state, batches[i % len(batches)], alpha, lr)
    jax.block_until_ready((state, m))
    seconds.append(time.perf_counter() - start)
    if not timed:
      metrics.append(m)
  return state, seconds, metrics


def _floats(metrics) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def compare_bf16_fp32(config, stage: int, compiled_bf16, batches, n: int, alpha, lr, shape) -> dict:
  """n bf16 and n fp32 iterations from the same initial state on the same batches."""
  g32, d32 = build.build_generator(config, "float32"), build.build_critic(config, "float32")
  state32 = train_gan.init_state(g32, d32, config)
  state16 = train_gan.init_state(g32, d32, config)  # Same seed: identical fp32 parameters.
  compiled32, _, _ = gan_steps.compile_train_step(g32, d32, config, stage, state32, shape)
  _, _, m16 = run_steps(compiled_bf16, state16, batches, n, alpha, lr, timed=False)
  _, _, m32 = run_steps(compiled32, state32, batches, n, alpha, lr, timed=False)
  per_step, abs_step, bf16, fp32 = [], [], [], []
  for a, b in zip(m16, m32):
    a, b = _floats(a), _floats(b)
    bf16.append({k: a[k] for k in LOSS_KEYS})
    fp32.append({k: b[k] for k in LOSS_KEYS})
    abs_step.append({k: abs(a[k] - b[k]) for k in LOSS_KEYS})
    per_step.append({k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-6) for k in LOSS_KEYS})
  max_per_key = {k: max(s[k] for s in per_step) for k in LOSS_KEYS}
  finite = all(math.isfinite(v) for s in bf16 + fp32 for v in s.values())
  return {
    "per_step": per_step,
    "max": max(max_per_key.values()),
    "max_per_loss": max_per_key,
    "abs_per_step": abs_step,
    "max_abs_per_loss": {k: max(s[k] for s in abs_step) for k in LOSS_KEYS},
    "losses_bf16": bf16,
    "losses_fp32": fp32,
    "all_finite": finite,
    "steps": n,
    "definition": "|bf16 - fp32| / max(|fp32|, 1e-6) per step and loss (a loss near "
    "0, e.g. generator_loss, inflates it: see abs_per_step)",
  }


# ---------------------------------------------------------------------------------------------
# Machine description.


def machine() -> dict:
  cpu = cpu_model()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {
    "platform": platform.platform(),
    "python": platform.python_version(),
    "cpu": cpu,
    "nproc": usable,
    "cpu_count": os.cpu_count(),
    "load_average_1min": round(os.getloadavg()[0], 2),
  }


def _count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ---------------------------------------------------------------------------------------------


def add_step_arguments(p: argparse.ArgumentParser) -> None:
  """The options :func:`prepare_config` reads: the config, the resolution, batch and dtype."""
  p.add_argument("--config", required=True, help="config file with get_config()")
  p.add_argument(
    "--resolution",
    type=int,
    default=0,
    help="fixed training resolution (default: the config's train.resolution)",
  )
  p.add_argument(
    "--batch",
    type=int,
    default=0,
    help="global batch (default: the config's batch at this resolution)",
  )
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="",
    help="computation dtype (default: the config's model.dtype)",
  )


def parse_args(argv=None):
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  add_step_arguments(p)
  p.add_argument("--steps", type=int, default=20, help="timed iterations")
  p.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
  p.add_argument("--alpha", type=float, default=1.0, help="fade-in alpha fed to the step")
  p.add_argument(
    "--compare_fp32_steps",
    type=int,
    default=0,
    help="with --dtype=bfloat16: iterations of the bf16 vs fp32 loss comparison",
  )
  p.add_argument(
    "--distinct_batches",
    type=int,
    default=8,
    help="device-resident batches prepared before timing (cycled)",
  )
  p.add_argument(
    "--pipeline_batches", type=int, default=20, help="batches timed for input_pipeline_images_per_s"
  )
  p.add_argument("--pipeline_warmup", type=int, default=2)
  p.add_argument("--matmul_size", type=int, default=2048)
  p.add_argument("--matmul_reps", type=int, default=10)
  p.add_argument("--json", default="", help="write the results here")
  args, args.config_overrides = p.parse_known_args(argv)  # --config.FIELD=VALUE ...
  if args.steps < 1 or args.warmup < 0 or args.compare_fp32_steps < 0:
    p.error("--steps must be >= 1, --warmup and --compare_fp32_steps >= 0")
  return args


def main(argv=None):
  args = parse_args(argv)
  config, stage, batch, lr = prepare_config(args)
  r, dtype = config.train.resolution, config.model.dtype
  local_batch = parallel.per_process_batch(batch)
  shape = (batch, r, r, 3)
  compare_steps = args.compare_fp32_steps if dtype == "bfloat16" else 0

  # Data: resolve, time the pipeline, then prepare device-resident batches for the steps.
  distinct = max(1, min(args.warmup + max(args.steps, compare_steps), args.distinct_batches))
  examples = max(4 * local_batch, distinct * local_batch)
  data_cfg, data_used, data_note = resolve_data(config, r, local_batch, examples)
  print(f"data: {data_note}", flush=True)
  pipeline = time_pipeline(
    data_cfg, r, local_batch, config.seed + 1, args.pipeline_batches, args.pipeline_warmup
  )
  host = host_batches(data_cfg, r, local_batch, distinct, config.seed)
  device_batches = [parallel.put_batch(b) for b in host]
  jax.block_until_ready(device_batches)

  # Model, state, compile.
  generator, critic = build.build_generator(config), build.build_critic(config)
  state = train_gan.init_state(generator, critic, config)
  param_dtypes = sorted({str(x.dtype) for x in jax.tree.leaves((state.g_params, state.d_params))})
  param_counts = _count(state.g_params), _count(state.d_params)
  compiled, compile_seconds, flops = gan_steps.compile_train_step(
    generator, critic, config, stage, state, shape
  )
  compiled_mem = compiled_memory(compiled)

  # Timing of full iterations on device-resident batches.
  alpha, lr_arr = jnp.float32(args.alpha), jnp.float32(lr)
  state, _, warm_metrics = run_steps(
    compiled, state, device_batches, args.warmup, alpha, lr_arr, timed=False
  )
  state, seconds, _ = run_steps(
    compiled, state, device_batches, args.steps, alpha, lr_arr, timed=True
  )
  peak_bytes, peak_kind = peak_memory()
  _, _, last = run_steps(compiled, state, device_batches, 1, alpha, lr_arr, timed=False)
  last_metrics = _floats(last[0])
  del state
  median = statistics.median(seconds)
  achieved = flops / median if flops else 0.0

  # Reference matmul FLOP/s on the same device(s).
  mm32 = matmul_flops_per_s(jnp.float32, args.matmul_size, args.matmul_reps)
  mm16 = (
    matmul_flops_per_s(jnp.bfloat16, args.matmul_size, args.matmul_reps)
    if dtype == "bfloat16"
    else None
  )

  result = {
    "images_per_s": batch / median,
    "step_seconds_median": median,
    "step_seconds_all": seconds,
    "step_seconds_min": min(seconds),
    "compile_seconds": compile_seconds,
    "flops_per_iteration": flops,
    "achieved_flops_per_s": achieved,
    "xla_compiled_flops_per_iteration": gan_steps.flops_of(compiled),
    "flops_scope": (
      "per device: XLA's cost_analysis of the lowered (global) program / devices; "
      "matmul_flops_per_s is one device too, so utilization is per device"
    ),
    "flops_per_iteration_all_devices": flops * jax.device_count(),
    "achieved_flops_per_s_all_devices": achieved * jax.device_count(),
    "matmul_flops_per_s": mm32["flops_per_s"],
    "utilization": achieved / mm32["flops_per_s"],
    "peak_memory_bytes": peak_bytes,
    "peak_memory_kind": peak_kind,
    "compiled_memory_bytes": compiled_mem,
    "input_pipeline_images_per_s": pipeline["images_per_s"],
    "input_pipeline_first_pass_images_per_s": pipeline["first_pass_images_per_s"],
    "input_pipeline_note": (
      "per process; synthetic: steady state from the in-memory cache "
      "(first pass includes rendering)"
      if data_used == "synthetic"
      else "per process"
    ),
    "data_used": data_used,
    "data_note": data_note,
    "config": args.config,
    "overrides": args.overrides,
    "resolution": r,
    "stage": stage,
    "channels": list(build.model_channels(config)),
    "batch": batch,
    "batch_per_device": batch // jax.device_count(),
    "dtype": dtype,
    "xla_cpu_kernels": config.runtime.xla_cpu_kernels,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "param_dtypes": param_dtypes,
    "generator_params": param_counts[0],
    "critic_params": param_counts[1],
    "alpha": args.alpha,
    "lr": lr,
    "warmup": args.warmup,
    "steps": args.steps,
    "distinct_batches": distinct,
    "last_metrics": last_metrics,
    "warmup_metrics_finite": all(
      math.isfinite(v) for m in warm_metrics for v in _floats(m).values()
    ),
    "matmul": mm32,
    "devices": jax.device_count(),
    "device_kind": jax.devices()[0].device_kind,
    "platform": jax.default_backend(),
    "process_count": jax.process_count(),
    "default_matmul_precision": jax.config.jax_default_matmul_precision,
    "compilation_cache_dir": jax.config.jax_compilation_cache_dir or None,
    "command": command_line("benchmarks.throughput"),
    "machine": machine(),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "jax_version": jax.__version__,
  }
  if mm16 is not None:
    result["matmul_bf16_flops_per_s"] = mm16["flops_per_s"]
    result["utilization_vs_bf16_matmul"] = achieved / mm16["flops_per_s"]
    result["matmul_bf16"] = mm16
  if compare_steps:
    result["bf16_loss_drift"] = compare_bf16_fp32(
      config, stage, compiled, device_batches, compare_steps, alpha, lr_arr, shape
    )
  if args.compare_fp32_steps and dtype != "bfloat16":
    result["bf16_loss_drift"] = None
    result["bf16_loss_drift_note"] = "--compare_fp32_steps needs --dtype=bfloat16"

  text = json.dumps(result, indent=2)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      f.write(text + "\n")
  print(summary(result))
  return result


def _si(x, unit: str) -> str:
  return "n/a" if x is None else f"{x:.3g} {unit}"


def summary(r: dict) -> str:
  line = (
    f"{os.path.basename(r['config'])} {r['resolution']} px, batch {r['batch']}, "
    f"{r['dtype']} on {r['devices']} x {r['device_kind']}: {r['images_per_s']:.1f} img/s "
    f"(median step {r['step_seconds_median'] * 1e3:.1f} ms over {r['steps']}), compile "
    f"{r['compile_seconds']:.1f} s, {_si(r['flops_per_iteration'], 'FLOP')}/iter, "
    f"{_si(r['achieved_flops_per_s'], 'FLOP/s')} = {100 * r['utilization']:.1f}% of "
    f"fp32 matmul {_si(r['matmul_flops_per_s'], 'FLOP/s')}; peak memory "
    f"{r['peak_memory_bytes'] / 2**20:.0f} MiB ({r['peak_memory_kind'].split()[0]}); "
    f"input pipeline {_si(r['input_pipeline_images_per_s'], 'img/s')} ({r['data_used']})"
  )
  drift = r.get("bf16_loss_drift")
  if drift:
    line += f"; bf16 vs fp32 max relative loss drift {drift['max']:.3g} over {drift['steps']} steps"
  return line


if __name__ == "__main__":
  main()
