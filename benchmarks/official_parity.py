"""Ours against the official PyTorch code (github adambielski/perturbed-seg): same weights, same
numbers; same data, same budget, same behaviour.

Needs a fetched copy of the official repository (a git directory or a checkout) and a CPU PyTorch
environment; nothing of the official code is copied into this project (see
``benchmarks/official_driver.py``, which drives it through ``benchmarks/official_code.py``):

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy

  python -m benchmarks.official_parity fixture --mirror=GIT_DIR \
      --torch_python=/tmp/torchvenv/bin/python --out=tests/fixtures/official_parity.npz
  python -m benchmarks.official_parity behaviour --mirror=GIT_DIR \
      --torch_python=/tmp/torchvenv/bin/python --json=benchmarks/results/official_behaviour.json

``fixture`` records the official code's numbers from one seeded set of official weights at
narrow widths (``FIXTURE_SPEC``): forward outputs, loss terms, gradients and the state after 3
iterations, then compares ours against them (the same comparison ``tests/test_official_parity.py``
makes in CI) and prints the largest difference per array.

``behaviour`` trains both implementations on the embedded synthetic dataset from the same initial
weights and the same real batches, and compares their EMA generators' samples and loss curves.

The name map between the official parameters and ours, and the reading of the official code's
random draws, are in ``benchmarks/official_common.py`` (shared with ``official_behaviour.py``).
"""

import argparse
import functools
import json
import os
import sys
from typing import Dict, List

import numpy as np

from benchmarks import official_common as oc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "official_parity.npz")

# The fixture's settings (also what the test rebuilds ours from).
FIXTURE_SPEC = {
  "seed": 0,
  "channels": [16, 12, 8, 4],  # 4, 8, 16, 32 px: every block changes the width
  "style_dim": 32,
  "mapping_layers": 4,
  "forward_batch": 2,
  "batch": 4,
  "shift": 0.125,
  "jitter": 0.3,
  "lr": 1e-3,
  "mapping_lr_mult": 0.01,
  "mask_size_weight": 2.0,
  "binarization_weight": 2.0,
  "forward_stages": [1, 2, 3],
  "forward_alphas": [0.5, 1.0],
  "loss_stage": 2,
  "loss_alpha": 0.5,
  # Three iterations: one at 8 px (first stage, alpha 1), two at 16 px in the fade-in, where
  # block 2 and head 2 take their first Adam step while the rest take their second and third.
  "phase": 16,
  "train_plan": [[1, [1.0]], [2, [0.5, 0.75]]],
  "train_mixing": [True, False, True],
}


# --------------------------------------------------------------------------------- ours


def fixture_config(spec, eta: float, resampling: str = "direct"):
  """configs/default.py with the fixture's widths, losses and optimiser settings."""
  from configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.model.channels = tuple(spec["channels"])
  config.model.style_dim = spec["style_dim"]
  config.model.mapping_layers = spec["mapping_layers"]
  config.model.resampling = resampling
  config.perturb.shift = spec["shift"]
  config.perturb.bg_contrast_jitter = spec["jitter"]
  config.loss.min_mask_coverage = float(eta)
  config.loss.mask_size_weight = spec["mask_size_weight"]
  config.loss.binarization_weight = spec["binarization_weight"]
  config.train.resolution = 4 * 2 ** (len(spec["channels"]) - 1)
  config.train.start_resolution = 8
  config.train.mapping_lr_mult = spec["mapping_lr_mult"]
  config.train.ema_rampup = False
  return config


def _nchw(x):
  x = np.asarray(x)
  return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def our_results(fx, resampling: str = "direct") -> Dict[str, np.ndarray]:
  """Everything the fixture recorded from the official code, computed by our code from the
  fixture's weights and draws; keys and layouts as in the fixture (NCHW, official names)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import gan_steps, losses, optim  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training.states import GANState  # pylint: disable=g-import-not-at-top

  spec = json.loads(str(fx["spec"]))
  ch, ml = spec["channels"], spec["mapping_layers"]
  eta = float(fx["eta"])
  config = fixture_config(spec, eta, resampling)
  generator, critic = build.build_generator(config), build.build_critic(config)
  init = {k[len("init/") :]: fx[k] for k in fx.files if k.startswith("init/")}
  g0 = oc.to_ours({k[2:]: v for k, v in init.items() if k.startswith("g/")}, "g", ch, ml)
  d0 = oc.to_ours({k[2:]: v for k, v in init.items() if k.startswith("d/")}, "d", ch, ml)
  g0, d0 = jax.tree.map(jnp.asarray, g0), jax.tree.map(jnp.asarray, d0)
  out = {}

  def critic_fn(d, stage, alpha):
    return lambda x: critic.apply({"params": d}, x, stage=stage, alpha=alpha)

  # --- forward ---
  def forward(g, d, draws, real, alpha, *, stage):
    layers, perturbed, fake = gan_steps.generate_from_draws(
      generator, config, stage, g, draws, alpha
    )
    score = lambda x: critic.apply({"params": d}, x, stage=stage, alpha=alpha, return_features=True)
    (d_real, feats), (d_fake, _) = score(real), score(fake)
    return layers, perturbed, fake, d_real, d_fake, feats

  forward_jit = {}
  cur = oc.Cursor(fx, "fwd_draws")
  for case in json.loads(str(fx["fwd_cases"])):
    name, stage, alpha, mix = case["name"], case["stage"], case["alpha"], case["mixing"]
    z = cur.take("z")[0]
    z2 = cur.take("z2")[0] if mix else None
    draws = oc.generator_draws(cur, spec, stage, z, z2, mix)
    real = jnp.asarray(oc.nhwc(cur.take("real")[0] * 2 - 1))
    if stage not in forward_jit:
      forward_jit[stage] = jax.jit(functools.partial(forward, stage=stage))
    layers, perturbed, fake, d_real, d_fake, feats = jax.device_get(
      forward_jit[stage](g0, d0, draws, real, jnp.float32(alpha))
    )
    for k in ("background", "foreground", "mask", "mask_logit"):
      out[f"{name}/{k}"] = _nchw(layers[k])
    for k in ("background", "foreground", "mask"):
      out[f"{name}/perturbed_{k}"] = _nchw(perturbed[k])
    out[f"{name}/composite"] = _nchw(fake)
    out[f"{name}/d_real"] = np.asarray(d_real)[:, None]
    out[f"{name}/d_fake"] = np.asarray(d_fake)[:, None]
    out[f"{name}/features_real"] = _nchw(feats)

  # --- the generator's loss terms and gradients at the initial weights ---
  stage, alpha = spec["loss_stage"], spec["loss_alpha"]
  cur = oc.Cursor(fx, "gloss_draws")
  z, z2 = cur.take("z")[0], cur.take("z2")[0]
  draws = oc.generator_draws(cur, spec, stage, z, z2, True)
  l = config.loss

  def g_terms(g):
    _, perturbed, fake = gan_steps.generate_from_draws(generator, config, stage, g, draws, alpha)
    d_fake = critic_fn(d0, stage, alpha)(fake)
    m = perturbed["mask"]
    return {
      "g_adversarial": -jnp.mean(d_fake),
      "mask_size_loss": losses.mask_size_loss(m, eta),
      "mask_binary_loss": losses.mask_binary_loss(m),
      "generator_loss": losses.generator_loss(
        d_fake, m, eta=eta, size_weight=l.mask_size_weight, binary_weight=l.binarization_weight
      )[0],
    }

  values, grads = jax.device_get(jax.jit(lambda g: (g_terms(g), jax.jacrev(g_terms)(g)))(g0))
  for term in ("g_adversarial", "mask_size_loss", "mask_binary_loss", "generator_loss"):
    out[f"gloss/{term}"] = np.asarray(values[term])
    for theirs, arr in oc.to_official(grads[term], "g", ch, ml).items():
      out[f"gloss_grad/{term}/{theirs}"] = arr

  # --- the critic's loss terms and gradients in one iteration at the loss stage ---
  cur = oc.Cursor(fx, "dloss_draws")
  real = jnp.asarray(oc.nhwc(cur.take("real")[0] * 2 - 1))
  mixing = bool(cur.take("mixing")[0])
  zc, z2c, _, _ = cur.take("latent4")[0] if mixing else (cur.take("latent")[0], None, None, None)
  draws = oc.generator_draws(cur, spec, stage, zc, z2c, mixing)
  e = jnp.asarray(cur.take("gp_eps")[0])
  _, _, fake = gan_steps.generate_from_draws(generator, config, stage, g0, draws, alpha)
  fake = jax.lax.stop_gradient(fake)

  def d_terms(d):
    fn = critic_fn(d, stage, alpha)
    d_real = fn(real)
    total, metrics = losses.critic_loss(
      fn, real, fake, e, gp_weight=l.gp_weight, drift_weight=l.drift_weight
    )
    return {
      "real": -jnp.mean(d_real) + l.drift_weight * jnp.mean(jnp.square(d_real)),
      "fake": jnp.mean(fn(fake)),
      "gp": l.gp_weight * losses.gradient_penalty(fn, real, fake, e),
      "total": total,
      **metrics,
    }

  grad_terms = lambda d: {
    t: v for t, v in d_terms(d).items() if t in ("real", "fake", "gp", "total")
  }
  values, grads = jax.device_get(jax.jit(lambda d: (d_terms(d), jax.jacrev(grad_terms)(d)))(d0))
  out["dloss/Dstep_D_x"] = np.asarray(values["d_real"])
  out["dloss/Dstep_D_Gz"] = np.asarray(values["d_fake"])
  out["dloss/grad_penalty"] = np.asarray(l.gp_weight * values["gradient_penalty"])
  out["dloss/lossD"] = np.asarray(values["total"] - l.gp_weight * values["gradient_penalty"])
  out["dloss/lossD_real"] = np.asarray(values["real"])
  out["dloss/lossD_fake"] = np.asarray(values["d_fake"])
  for term in ("real", "fake", "gp", "total"):
    for theirs, arr in oc.to_official(grads[term], "d", ch, ml).items():
      out[f"dloss_grad/{term}/{theirs}"] = arr

  # --- three full iterations ---
  cur = oc.Cursor(fx, "train_draws")
  adam = optim.make_adam(config.train)
  state = GANState(
    step=jnp.zeros([], jnp.int32),
    g_params=g0,
    d_params=d0,
    g_opt=adam.init(g0),
    d_opt=adam.init(d0),
    ema_params=jax.tree.map(jnp.array, g0),
    rng=jax.random.PRNGKey(0),
  )
  reals = [jnp.asarray(oc.nhwc(r * 2 - 1)) for r in oc.stack_prefix(fx, "train_draws/real")]
  updates, metrics_log, it = {}, [], 0
  for stage, alphas in spec["train_plan"]:
    if stage not in updates:
      updates[stage] = jax.jit(gan_steps.make_update_fn(generator, critic, config, stage))
    for alpha in alphas:
      state, m = updates[stage](
        state,
        reals[it],
        oc.iteration_draws(cur, spec, stage),
        jnp.float32(alpha),
        jnp.float32(spec["lr"]),
      )
      metrics_log.append({k: float(v) for k, v in jax.device_get(m).items()})
      it += 1
  state = jax.device_get(state)
  for tag, tree, model in (
    ("g", state.g_params, "g"),
    ("d", state.d_params, "d"),
    ("ema", state.ema_params, "g"),
  ):
    for theirs, arr in oc.to_official(tree, model, ch, ml).items():
      out[f"train/{tag}/{theirs}"] = arr
  for tag, opt, model in (("g_opt", state.g_opt, "g"), ("d_opt", state.d_opt, "d")):
    for part in ("count", "mu", "nu"):
      tree = getattr(opt, part)
      for m_, theirs, path, layout in oc.name_map(ch, ml):
        if m_ != model:
          continue
        count = int(np.asarray(oc.get_path(opt.count, path)))
        if count == 0:
          continue  # never stepped: no official state either (checked by the caller)
        value = oc.get_path(tree, path)
        out[f"train/{tag}/{theirs}/{part}"] = (
          np.asarray(count, np.float32) if part == "count" else oc.ours_to_official(value, layout)
        )
  l = config.loss
  out["train/metrics"] = [
    {
      "lossD": m["critic_loss"] - l.gp_weight * m["gradient_penalty"],
      "grad_penalty": l.gp_weight * m["gradient_penalty"],
      "Dstep_D_x": m["d_real"],
      "Dstep_D_Gz": m["d_fake"],
      "lossG_fake": m["g_adversarial"],
      "min_mask_loss": m["mask_size_loss"],
      "bin_loss": m["mask_binary_loss"],
    }
    for m in metrics_log
  ]
  return out


# Tolerances: |ours - official| <= atol + rtol * |official|, with atol = ATOL_SCALE * max|official|
# of the array (a difference small against the array's own scale). Measured maxima in
# benchmarks/results/official_parity.json.
TOLERANCES = {
  "forward": (1e-5, 1e-5),
  "loss": (1e-5, 1e-5),
  "gradient": (2e-5, 2e-5),
  "train": (2e-5, 2e-5),
}


def _group(name: str) -> str:
  if name.startswith("fwd/"):
    return "forward"
  if "_grad/" in name:
    return "gradient"
  if name.startswith("train/"):
    return "train"
  return "loss"


def compare(fx, ours) -> List[Dict]:
  """One row per compared array: name, group, max abs difference, the array's max |official|,
  the normalised difference, and whether it is within the group's tolerance."""
  rows = []
  official = {
    k: fx[k]
    for k in fx.files
    if k.split("/")[0] in ("fwd", "gloss", "gloss_grad", "dloss", "dloss_grad", "train")
    and k != "train/metrics"
  }
  # The critic's total gradient is the sum of the official code's three backward() calls.
  # (A term with no path to a parameter leaves no official gradient there: it adds nothing.)
  for k in list(official):
    if k.startswith("dloss_grad/real/"):
      p = k[len("dloss_grad/real/") :]
      official[f"dloss_grad/total/{p}"] = sum(
        fx[f"dloss_grad/{t}/{p}"]
        for t in ("real", "fake", "gp")
        if f"dloss_grad/{t}/{p}" in fx.files
      )
  spec = json.loads(str(fx["spec"]))
  w = spec["mask_size_weight"], spec["binarization_weight"]
  official["gloss/generator_loss"] = (
    fx["gloss/g_adversarial"]
    + w[0] * fx["gloss/mask_size_loss"]
    + w[1] * fx["gloss/mask_binary_loss"]
  )
  for k in list(official):
    if k.startswith("gloss_grad/g_adversarial/"):
      p = k[len("gloss_grad/g_adversarial/") :]
      official[f"gloss_grad/generator_loss/{p}"] = sum(
        c * fx[f"gloss_grad/{t}/{p}"]
        for c, t in ((1.0, "g_adversarial"), (w[0], "mask_size_loss"), (w[1], "mask_binary_loss"))
        if f"gloss_grad/{t}/{p}" in fx.files
      )
  # Official per-iteration metrics, compared one by one.
  for i, (theirs, mine) in enumerate(
    zip(json.loads(str(fx["train/metrics"])), ours["train/metrics"])
  ):
    for k, v in mine.items():
      official[f"train/metrics/{i}/{k}"] = np.asarray(theirs[k], np.float32)
      ours[f"train/metrics/{i}/{k}"] = np.asarray(v, np.float32)
  missing_ours = sorted(set(official) - set(ours))
  # Our gradients include exact zeros where the official code has no gradient at all.
  for k in missing_ours:
    rows.append(
      {
        "name": k,
        "group": _group(k),
        "ok": False,
        "error": "recorded by the official code, not computed by ours",
      }
    )
  for k in sorted(set(ours) - set(official)):
    if k == "train/metrics":
      continue
    v = np.asarray(ours[k])
    if "_grad/" in k and not np.any(v):
      continue  # no gradient flows there in either implementation
    rows.append(
      {
        "name": k,
        "group": _group(k),
        "ok": False,
        "error": "computed by ours, absent from the official record (an official "
        "parameter without gradient or Adam state)",
      }
    )
  for k in sorted(set(official) & set(ours)):
    ref = np.asarray(official[k], np.float64)
    mine = np.asarray(ours[k], np.float64)
    if ref.shape != mine.shape:
      rows.append(
        {
          "name": k,
          "group": _group(k),
          "ok": False,
          "error": f"shape {mine.shape} vs official {ref.shape}",
        }
      )
      continue
    rtol, atol_scale = TOLERANCES[_group(k)]
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = np.abs(mine - ref)
    max_abs = float(np.max(diff)) if diff.size else 0.0
    ok = bool(np.all(diff <= atol_scale * scale + rtol * np.abs(ref)))
    rows.append(
      {
        "name": k,
        "group": _group(k),
        "max_abs_diff": max_abs,
        "scale": scale,
        "normalized_diff": max_abs / scale if scale else max_abs,
        "ok": ok,
      }
    )
  return rows


def summarize(rows) -> Dict[str, Dict]:
  out = {}
  for r in rows:
    g = out.setdefault(
      r["group"], {"arrays": 0, "failed": 0, "max_normalized_diff": 0.0, "worst": None}
    )
    g["arrays"] += 1
    g["failed"] += 0 if r["ok"] else 1
    nd = r.get("normalized_diff", float("inf"))
    if nd >= g["max_normalized_diff"]:
      g["max_normalized_diff"], g["worst"] = nd, r["name"]
  return out


# --------------------------------------------------------------------------------- faults


def _faults():
  """Plausible bugs, each a replacement of one library function: name -> (module, attr, fn)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import compositing  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import losses, optim  # pylint: disable=g-import-not-at-top

  shift_images, lr_multipliers = compositing.shift_images, optim.lr_multipliers
  ema_update, make_adam = optim.ema_update, optim.make_adam

  def gp_wrong_axes(critic_fn, real, fake, e):
    x_hat = e * real + (1.0 - e) * fake
    grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=0) + losses.GP_NORM_EPS)  # over the batch
    return jnp.mean(jnp.square(norms - 1.0))

  def size_over_batch(mask, eta):
    return jax.nn.relu(eta - jnp.mean(mask))

  def global_adam_count(train_config):
    adam = make_adam(train_config)

    def update(grads, state, params=None, *, active):  # every array counts every step
      return adam.update(grads, state, params, active=jax.tree.map(jnp.ones_like, active))

    return adam._replace(update=update)

  return {
    "gradient penalty norm over the batch axis": (losses, "gradient_penalty", gp_wrong_axes),
    "shift in the wrong direction": (
      compositing,
      "shift_images",
      lambda x, s, m: shift_images(x, -s, m),
    ),
    "L_size over the batch, not per sample": (losses, "mask_size_loss", size_over_batch),
    "mapping lr multiplier ignored": (
      optim,
      "lr_multipliers",
      lambda params, mult: lr_multipliers(params, 1.0),
    ),
    "EMA decay inverted": (
      optim,
      "ema_update",
      lambda ema, params, decay: ema_update(ema, params, 1.0 - decay),
    ),
    "optax's global Adam count": (optim, "make_adam", global_adam_count),
  }


def cmd_faults(args):
  """Each fault injected alone; which of the fixture's comparisons fail."""
  results = {}
  with np.load(args.fixture) as f:
    fx = NpzDict({k: f[k] for k in f.files})
  for name, (module, attr, fn) in _faults().items():
    original = getattr(module, attr)
    setattr(module, attr, fn)
    try:
      rows = compare(fx, our_results(fx, "efficient"))
    finally:
      setattr(module, attr, original)
    failed = [r for r in rows if not r["ok"]]
    by_group = {}
    for r in failed:
      by_group.setdefault(r["group"], []).append(r["name"])
    results[name] = {
      "failed_arrays": len(failed),
      "of": len(rows),
      "failed_by_group": {g: len(v) for g, v in by_group.items()},
      "first_failed": {g: v[:5] for g, v in by_group.items()},
    }
    print(
      f"{name}: {len(failed)} of {len(rows)} arrays fail "
      + ", ".join(f"{g} {len(v)} (e.g. {v[0]})" for g, v in by_group.items()),
      flush=True,
    )
  oc.write_json(args.json, {"command": " ".join(sys.argv), **oc.provenance(), "faults": results})


class NpzDict(dict):
  """A dict of arrays with the ``files`` attribute of an NpzFile."""

  @property
  def files(self):
    return list(self.keys())


# --------------------------------------------------------------------------------- commands


def cmd_fixture(args):
  if args.reuse_official:  # compare again against the official numbers already in --out
    with np.load(args.out) as raw:
      data = {k: raw[k] for k in raw.files}
  else:
    tmp = args.out + ".official.npz"
    oc.run_driver(args, "fixture", FIXTURE_SPEC, tmp)
    with np.load(tmp) as raw:
      data = {k: raw[k] for k in raw.files}
    os.unlink(tmp)
  data["spec"] = np.asarray(json.dumps(FIXTURE_SPEC))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez_compressed(args.out, **data)
  print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {len(data)} arrays)")
  with np.load(args.out) as fx:
    results = {}
    for resampling in ("direct", "efficient"):
      rows = compare(fx, our_results(fx, resampling))
      results[resampling] = {"summary": summarize(rows), "rows": _slim(rows)}
      print(f"resampling={resampling}")
      for group, s in summarize(rows).items():
        print(
          f"  {group:9s} {s['arrays']:4d} arrays, {s['failed']} outside tolerance, "
          f"largest normalised difference {s['max_normalized_diff']:.2e} ({s['worst']})"
        )
  if args.json:
    oc.write_json(
      args.json,
      {
        "command": " ".join(sys.argv),
        "tolerances": TOLERANCES,
        "rows": "name: [max |ours - official|, normalised by max |official|]",
        **oc.provenance(),
        "results": results,
      },
    )


def _slim(rows):
  """Rows for the results file: name -> [max |ours - official|, that / max |official|]."""
  return {
    r["name"]: (
      [float(f"{r['max_abs_diff']:.3g}"), float(f"{r['normalized_diff']:.3g}")]
      if "max_abs_diff" in r
      else r.get("error")
    )
    for r in rows
  }


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  for name in ("fixture", "behaviour"):
    s = sub.add_parser(name)
    s.add_argument("--mirror", required=True, help="git directory or checkout of perturbed-seg")
    s.add_argument("--torch_python", required=True, help="python of a CPU PyTorch venv")
  f = sub.choices["fixture"]
  f.add_argument("--out", default=FIXTURE)
  f.add_argument(
    "--reuse_official",
    action="store_true",
    help="compare against the official numbers already in --out",
  )
  f.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "official_parity.json")
  )
  fl = sub.add_parser("faults", help="inject each fault of _faults() and report what fails")
  fl.add_argument("--fixture", default=FIXTURE)
  fl.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "official_parity_faults.json")
  )
  b = sub.choices["behaviour"]
  b.add_argument(
    "--settings",
    default="fixed32,progressive,border",
    help="comma-separated: fixed32 (two seeds), progressive, border (first seed)",
  )
  b.add_argument("--seeds", default="0,1")
  b.add_argument("--iterations", type=int, default=2500)
  b.add_argument("--num_samples", type=int, default=256)
  b.add_argument("--png_samples", type=int, default=12)
  b.add_argument("--workdir_root", default="/tmp/official_behaviour")
  b.add_argument(
    "--reuse_official",
    action="store_true",
    help="keep a pair's official run (official_run.npz under --workdir_root) when "
    "one is there, training only ours again",
  )
  b.add_argument(
    "--replay",
    action="store_true",
    help="feed ours the official run's own recorded random draws instead of its "
    "own stream (fixed32, border); reports both trajectories apart",
  )
  b.add_argument(
    "--segmenter_steps",
    type=int,
    default=None,
    help="reference segmenter training steps (default: the emergence benchmark's)",
  )
  b.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "official_behaviour.json")
  )
  return p


def main(argv=None):
  args = build_parser().parse_args(argv)
  if args.command in ("fixture", "behaviour") and not args.reuse_official:
    oc.check_official_inputs(args)  # before minutes of work, not after
  if args.command == "fixture":
    cmd_fixture(args)
  elif args.command == "faults":
    cmd_faults(args)
  else:
    from benchmarks import official_behaviour  # pylint: disable=g-import-not-at-top

    official_behaviour.run(args)


if __name__ == "__main__":
  main()
