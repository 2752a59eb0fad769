"""The official training iteration timed on random batches: the official side of
``compare_reference.py`` (and, on CUDA, of ``device/ref_bench_cuda.py``).

  /tmp/torchvenv/bin/python -m benchmarks.official_timing --mirror=GIT_DIR \
      --resolution=32 --batch=16 --steps=5 --warmup=2 --gemm

Run from the repository root with the python of a PyTorch environment. The official code is
loaded and its ``train.train()`` called by ``official_code.py``; this module sets up what the
official ``train.py`` ``__main__`` would for the official README's command (``README_SETTINGS``:
the reference widths, 512-d latents and 8 mapping layers, shift 0.125, background contrast
jitter 0.3, mask coverage 0.25, style mixing, WGAN-GP, the --sched learning rates) at one
resolution, where alpha is 1, and runs ``--warmup`` untimed then ``--steps`` timed iterations on
a pool of four random batches in [-1, 1] (the range of the official data pipeline).

An iteration is one pass of the official loop: the critic step (real and fake scores, the
drift term, the gradient penalty, Adam) and the generator step (perturbed render, critic, mask
losses, Adam, the EMA update), with the ``.item()`` reads the loop makes; the critic part ends
when the critic's Adam step returns. Output: one line per iteration, a check that every
iteration took both steps and moved the EMA generator (exit status 1 if not), and the last line
``ref_img_per_s=<batch / median> resolution=R batch=B median_step_s=<median seconds>``.
A missing or wrong --mirror, or a python without torch: one line on stderr, exit status 2.
"""

import argparse
import copy
import random
import statistics
import sys
import time

from benchmarks import official_code

# The official README's training command (train.py's defaults where the command is silent).
README_SETTINGS = {
  "code_size": 512,
  "mapping_layers": 8,
  "mapping_lr_mult": 0.01,
  "shift": 0.125,
  "contrast_jitter": 0.3,
  "min_mask_coverage": 0.25,
  "mask_alpha": 2.0,
  "binarization_alpha": 2.0,
  "lr": 0.001,
  "sched_lr": {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
}


def time_iterations(official, torch, resolution, batch, steps, warmup, device="cpu", seed=0):
  """``warmup + steps`` official iterations at ``README_SETTINGS``; returns the timed iterations'
  seconds (``step_seconds``, ``critic_seconds``) and what shows the loop ran as it should."""
  s = README_SETTINGS
  random.seed(seed)
  torch.manual_seed(seed)
  device = torch.device(device)
  sync = torch.cuda.synchronize if str(device).startswith("cuda") else None
  generator = official["model"].BgFgMask(s["code_size"], s["mapping_layers"]).to(device)
  discriminator = official["stylegan"].Discriminator(in_channels=3).to(device)
  g_running = copy.deepcopy(generator).to(device)
  g_running.train(False)
  shift = s["shift"]

  def location_noise(*size, resolution, device=None):  # uniform in [-shift, shift] * resolution
    return (torch.rand(*size, device=device) * 2 - 1) * (shift * resolution)

  wrapped = torch.nn.DataParallel(
    official_code.wrap_generator(official, generator, location_noise, s["contrast_jitter"])
  ).to(device)
  g_running_wrapped = official_code.wrap_generator(official, g_running)
  optimizers = official_code.adam_optimizers(
    torch, generator, discriminator, s["lr"], s["mapping_lr_mult"]
  )
  official["train"].accumulate(g_running, generator, 0)
  mask_loss = official["loss"].MaskLoss(
    s["min_mask_coverage"], s["mask_alpha"], s["binarization_alpha"]
  )
  count = sum(p.numel() for p in generator.parameters())
  print(
    f"official BgFgMask {count:,} parameters, Discriminator "
    f"{sum(p.numel() for p in discriminator.parameters()):,}; {resolution} px, batch {batch}, "
    f"{device}",
    flush=True,
  )

  critic_done, generator_steps = [], [0]
  d_step, g_step = optimizers[1].step, optimizers[0].step

  def d_step_timed(*args, **kwargs):
    out = d_step(*args, **kwargs)
    if sync is not None:
      sync()
    critic_done.append(time.perf_counter())
    return out

  def g_step_counted(*args, **kwargs):
    generator_steps[0] += 1
    return g_step(*args, **kwargs)

  optimizers[1].step, optimizers[0].step = d_step_timed, g_step_counted

  def report(i, seconds, description):
    part = ""
    if i < len(critic_done):
      critic = critic_done[i] - progress.marks[i]
      part = f" (critic {critic:.3f} s, generator {seconds - critic:.3f} s)"
    kind = f"warm-up {i + 1}/{warmup}" if i < warmup else f"timed {i - warmup + 1}/{steps}"
    print(f"{kind}: {seconds:.3f} s{part}, {batch / seconds:.2f} img/s | {description}", flush=True)

  progress = official_code.Progress(warmup + steps, time.perf_counter, sync, report)
  generator_pool = torch.Generator().manual_seed(seed + 1)
  pool = [
    (torch.rand(batch, 3, resolution, resolution, generator=generator_pool) * 2 - 1)
    for _ in range(4)
  ]
  probe = next(iter(g_running.parameters()))
  probe_before = probe.detach().clone()
  logger = official_code.MetricsLog()
  args = official_code.train_arguments(resolution, {resolution: batch}, s["sched_lr"])
  official_code.run_train(
    official,
    args,
    wrapped,
    g_running_wrapped,
    torch.nn.DataParallel(discriminator),
    optimizers,
    mask_loss,
    official_code.Batches(lambda i: pool[i], len(pool)),
    progress,
    logger,
    device=device,
    code_size=s["code_size"],
  )
  spans = [b - a for a, b in zip(progress.marks, progress.marks[1:])]
  critic = [c - a for a, c in zip(progress.marks, critic_done)]
  return {
    "step_seconds": spans[warmup:],
    "critic_seconds": critic[warmup:],
    "iterations": len(spans),
    "logged": len(logger.metrics),
    "critic_steps": len(critic_done),
    "generator_steps": generator_steps[0],
    "ema_moved": not torch.equal(probe_before, probe.detach()),
  }


def gemm_gflops(torch, n=2048, repeats=10):
  """fp32 n x n matmul throughput of this torch (median and best of ``repeats``)."""
  a, b = torch.randn(n, n), torch.randn(n, n)
  for _ in range(3):
    a @ b
  seconds = []
  for _ in range(repeats):
    t = time.perf_counter()
    a @ b
    seconds.append(time.perf_counter() - t)
  flop = 2.0 * n**3
  return flop / statistics.median(seconds) / 1e9, flop / min(seconds) / 1e9


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--mirror", required=True, help="git directory or checkout of perturbed-seg")
  p.add_argument("--rev", default="HEAD", help="revision of a git directory")
  p.add_argument("--resolution", type=int, default=32, choices=(8, 16, 32, 64, 128))
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=5, help="timed iterations")
  p.add_argument("--warmup", type=int, default=2, help="untimed iterations before them")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  p.add_argument("--device", default="cpu", help="cpu or cuda:N")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--gemm", action="store_true", help="also time an fp32 2048 x 2048 matmul")
  return p


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.batch < 2 or args.steps < 1 or args.warmup < 0:
    print("error: --batch must be >= 2, --steps >= 1, --warmup >= 0", file=sys.stderr)
    return 2
  try:
    source = official_code.locate(args.mirror, args.rev)
    import torch  # pylint: disable=g-import-not-at-top
  except official_code.SourceError as e:
    print(f"error: --mirror: {e}", file=sys.stderr)
    return 2
  except ImportError:
    print(
      f"error: {sys.executable} cannot import torch; run with a PyTorch python", file=sys.stderr
    )
    return 2
  torch.set_num_threads(args.threads)
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
  if args.gemm:
    median, best = gemm_gflops(torch)
    print(f"gemm fp32 2048 x 2048: median {median:.1f} GFLOP/s, best {best:.1f}", flush=True)
  with official_code.Official(source) as official:
    print(
      f"official code {official.commit} ({source.kind} {source.path}); stand-ins for: "
      f"{', '.join(official.stand_ins) or 'none'}",
      flush=True,
    )
    start = time.perf_counter()
    r = time_iterations(
      official, torch, args.resolution, args.batch, args.steps, args.warmup, args.device, args.seed
    )
  n = args.warmup + args.steps
  counts = (r["iterations"], r["logged"], r["critic_steps"], r["generator_steps"])
  print(
    f"checks: iterations, logged, critic steps, generator steps {counts} (expected {n} each), "
    f"EMA moved {r['ema_moved']}; {time.perf_counter() - start:.1f} s in all",
    flush=True,
  )
  if counts != (n,) * 4 or not r["ema_moved"]:
    print("error: the official training loop did not run as expected", file=sys.stderr)
    return 1
  median = statistics.median(r["step_seconds"])
  critic = statistics.median(r["critic_seconds"])
  print(
    f"timed iterations (s): {', '.join(f'{t:.3f}' for t in r['step_seconds'])}; median critic "
    f"{critic:.3f} s, generator {median - critic:.3f} s",
    flush=True,
  )
  print(
    f"ref_img_per_s={args.batch / median:.4f} resolution={args.resolution} batch={args.batch} "
    f"median_step_s={median:.4f}",
    flush=True,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
