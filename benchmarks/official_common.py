"""What the parity fixture (``official_parity.py``) and the behaviour comparison
(``official_behaviour.py``) share: the name map between the official parameters and ours, the
official code's logged random draws read in call order, and running the official driver
(``official_driver.py``, under the PyTorch python; it loads the official code through
``official_code.py``).

The name map (``name_map``) is the one place that knows how an official parameter name and
layout correspond to ours:
  * linear ``W [out, in]`` -> ``kernel [in, out]``; conv ``W [out, in, kh, kw]`` -> ``kernel
    [kh, kw, in, out]``; the learned constant ``[1, C, 4, 4]`` -> ``[1, 4, 4, C]``; noise weights
    ``[1, C, 1, 1]`` -> ``[C]``; biases as they are.
  * generator: ``generator_bg`` / ``generator_objects`` -> ``background_*`` / ``object_*``;
    ``style.{1 + 2k}`` -> ``*_mapping/dense_k``; ``generator.progression.i`` -> ``block_i``
    (``conv1.1`` upsampling conv, ``conv1.input`` the constant of block 0, ``conv2``,
    ``noise1/2``, ``adain1/2.style``); ``to_rgb.i`` / ``to_out.i`` -> ``head_i``.
  * critic (n stages): ``progression[n - 1 - i]`` -> ``block_i`` (``conv1.0``, ``conv2.1``);
    ``progression[n - 1]`` -> ``final_conv1`` (``conv1.0``) and ``final_conv2`` (``conv2.0``);
    ``from_rgb[n - 1 - i].0`` -> ``from_rgb_i``; ``linear`` -> ``output``.
Images and noise are NCHW there and NHWC here; shifts are (x, y) there and (dy, dx) here.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

import numpy as np

from benchmarks import official_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def name_map(channels, mapping_layers) -> List[Tuple[str, str, Tuple[str, ...], str]]:
  """[(model 'g' or 'd', official name, our parameter path, layout)] for every parameter."""
  out = []
  for ours, theirs, head in (
    ("background", "generator_bg", "to_rgb"),
    ("object", "generator_objects", "to_out"),
  ):
    for k in range(mapping_layers):
      base = f"{theirs}.style.{1 + 2 * k}.linear"
      out.append(("g", f"{base}.weight_orig", (f"{ours}_mapping", f"dense_{k}", "kernel"), "dense"))
      out.append(("g", f"{base}.bias", (f"{ours}_mapping", f"dense_{k}", "bias"), "bias"))
    syn = f"{ours}_synthesis"
    for i in range(len(channels)):
      base = f"{theirs}.generator.progression.{i}"
      block = (syn, f"block_{i}")
      if i == 0:
        out.append(("g", f"{base}.conv1.input", block + ("const", "const"), "const"))
      else:
        out.append(("g", f"{base}.conv1.1.conv.weight_orig", block + ("conv1", "kernel"), "conv"))
        out.append(("g", f"{base}.conv1.1.conv.bias", block + ("conv1", "bias"), "bias"))
      out.append(("g", f"{base}.conv2.conv.weight_orig", block + ("conv2", "kernel"), "conv"))
      out.append(("g", f"{base}.conv2.conv.bias", block + ("conv2", "bias"), "bias"))
      for j in (1, 2):
        out.append(("g", f"{base}.noise{j}.weight_orig", block + (f"noise{j}", "weight"), "vector"))
        out.append(
          (
            "g",
            f"{base}.adain{j}.style.linear.weight_orig",
            block + (f"adain{j}", "style", "kernel"),
            "dense",
          )
        )
        out.append(
          (
            "g",
            f"{base}.adain{j}.style.linear.bias",
            block + (f"adain{j}", "style", "bias"),
            "bias",
          )
        )
      out.append(
        (
          "g",
          f"{theirs}.generator.{head}.{i}.conv.weight_orig",
          (syn, f"head_{i}", "kernel"),
          "conv",
        )
      )
      out.append(
        ("g", f"{theirs}.generator.{head}.{i}.conv.bias", (syn, f"head_{i}", "bias"), "bias")
      )
  n = len(channels)
  for i in range(1, n):
    base = f"progression.{n - 1 - i}"
    for mine, theirs in (("conv1", "conv1.0"), ("conv2", "conv2.1")):
      out.append(("d", f"{base}.{theirs}.conv.weight_orig", (f"block_{i}", mine, "kernel"), "conv"))
      out.append(("d", f"{base}.{theirs}.conv.bias", (f"block_{i}", mine, "bias"), "bias"))
  for mine, theirs in (("final_conv1", "conv1.0"), ("final_conv2", "conv2.0")):
    out.append(("d", f"progression.{n - 1}.{theirs}.conv.weight_orig", (mine, "kernel"), "conv"))
    out.append(("d", f"progression.{n - 1}.{theirs}.conv.bias", (mine, "bias"), "bias"))
  for i in range(n):
    out.append(
      ("d", f"from_rgb.{n - 1 - i}.0.conv.weight_orig", (f"from_rgb_{i}", "kernel"), "conv")
    )
    out.append(("d", f"from_rgb.{n - 1 - i}.0.conv.bias", (f"from_rgb_{i}", "bias"), "bias"))
  out.append(("d", "linear.linear.weight_orig", ("output", "kernel"), "dense"))
  out.append(("d", "linear.linear.bias", ("output", "bias"), "bias"))
  return out


# layout -> (axes official -> ours, axes ours -> official); 'vector' and 'bias' reshape only.
_TRANSPOSES = {
  "dense": ((1, 0), (1, 0)),
  "conv": ((2, 3, 1, 0), (3, 2, 0, 1)),
  "const": ((0, 2, 3, 1), (0, 3, 1, 2)),
}


def official_to_ours(a: np.ndarray, layout: str) -> np.ndarray:
  a = np.asarray(a)
  if layout in _TRANSPOSES:
    return a.transpose(_TRANSPOSES[layout][0])
  return a.reshape(-1) if layout == "vector" else a


def ours_to_official(a: np.ndarray, layout: str) -> np.ndarray:
  a = np.asarray(a)
  if layout in _TRANSPOSES:
    return a.transpose(_TRANSPOSES[layout][1])
  return a.reshape(1, -1, 1, 1) if layout == "vector" else a


def set_path(tree: dict, path, value):
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def get_path(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def to_ours(
  arrays: Dict[str, np.ndarray], model: str, channels, mapping_layers, default=None
) -> dict:
  """Official-named arrays of ``model`` ('g' or 'd') -> our nested parameter tree. A parameter
  missing from ``arrays`` takes ``default(path)`` (an error when ``default`` is None)."""
  tree = {}
  for m, theirs, path, layout in name_map(channels, mapping_layers):
    if m != model:
      continue
    if theirs in arrays:
      set_path(tree, path, official_to_ours(arrays[theirs], layout).astype(np.float32))
    elif default is not None:
      set_path(tree, path, default(path))
    else:
      raise KeyError(f"no official array {theirs!r} for our {'/'.join(path)}")
  return tree


def to_official(tree: dict, model: str, channels, mapping_layers) -> Dict[str, np.ndarray]:
  """Our parameter tree -> official-named arrays."""
  return {
    theirs: ours_to_official(get_path(tree, path), layout)
    for m, theirs, path, layout in name_map(channels, mapping_layers)
    if m == model
  }


def stack_prefix(fx, prefix):
  """The arrays ``prefix/0000``, ``prefix/0001``, ... in numeric order (past 9999 the names
  grow a digit, and a plain sort would misplace them)."""
  keys = sorted(
    (k for k in fx.files if k.startswith(prefix + "/")), key=lambda k: int(k.rsplit("/", 1)[1])
  )
  return [fx[k] for k in keys]


class Cursor:
  """Reads an official draw log kind by kind, in call order."""

  def __init__(self, fx, prefix):
    self.fx, self.prefix, self.pos, self.values = fx, prefix, {}, {}

  def take(self, kind, n=1):
    i = self.pos.get(kind, 0)
    self.pos[kind] = i + n
    if kind not in self.values:
      self.values[kind] = (
        stack_prefix(self.fx, f"{self.prefix}/{kind}")
        if kind in ("noise", "real")
        else self.fx[f"{self.prefix}/{kind}"]
      )
    values = self.values[kind]
    if i + n > len(values):
      raise IndexError(f"{self.prefix}/{kind}: needs {i + n} draws, the fixture has {len(values)}")
    return [values[j] for j in range(i, i + n)]


def generator_draws(cur: Cursor, spec, stage, z, z2, mixing: bool):
  """One official generator pass's draws (bg noise, [bg crossover], object noise, [object
  crossover], shift, contrast u) as ``train_gan.generate_from_draws`` takes them."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  noise, crossover = {}, {}
  for name in ("background", "object"):
    noise[name] = [jnp.asarray(nhwc(n)) for n in cur.take("noise", stage + 1)]
    crossover[name] = jnp.asarray(int(cur.take("crossover")[0]) if mixing else stage)
  shift_xy = np.asarray(cur.take("shift")[0])
  u = np.asarray(cur.take("jitter_u")[0], np.float32) if spec["jitter"] else None
  s = np.float32(spec["jitter"])
  factors = (np.float32(1) + (np.float32(2) * s * u - s)) if u is not None else None
  return {
    "z": jnp.asarray(z),
    "z2": jnp.asarray(z2 if z2 is not None else np.zeros_like(z)),
    "crossover": crossover,
    "noise": noise,
    "shifts": jnp.asarray(shift_xy[:, ::-1].astype(np.int32)),
    "factors": (
      jnp.asarray(factors) if factors is not None else jnp.ones((z.shape[0], 1, 1, 1), jnp.float32)
    ),
  }


def iteration_draws(cur: Cursor, spec, stage):
  """One official training iteration's draws (mixing decision, latents, both generator passes,
  GP coefficients) as ``gan_steps.make_update_fn``'s ``draws``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  mixing = bool(cur.take("mixing")[0])
  if mixing:
    zc, z2c, zg, z2g = cur.take("latent4")[0]
  else:
    (zc, zg), z2c, z2g = cur.take("latent", 2), None, None
  d_draws = generator_draws(cur, spec, stage, zc, z2c, mixing)
  gp = jnp.asarray(cur.take("gp_eps")[0])
  return {
    "critic": d_draws,
    "gp": gp,
    "generator": generator_draws(cur, spec, stage, zg, z2g, mixing),
  }


def nhwc(x):
  return np.asarray(x).transpose(0, 2, 3, 1)


def check_official_inputs(args):
  """Exits with status 2 and one line unless ``args.mirror`` is a copy of the official code and
  ``args.torch_python`` a python that imports torch (before minutes of work, not after)."""
  for flag, value, check in (
    ("--mirror", args.mirror, official_code.locate),
    ("--torch_python", args.torch_python, official_code.check_torch_python),
  ):
    try:
      check(value)
    except official_code.SourceError as e:
      print(f"error: {flag}: {e}", file=sys.stderr)
      sys.exit(2)


def run_driver(args, mode, spec, out_path):
  """``python -m benchmarks.official_driver --mode=MODE`` on ``spec`` under
  ``args.torch_python``, with this repository on its path (it imports
  ``benchmarks.official_code``); its arrays land in ``out_path``."""
  check_official_inputs(args)
  with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(spec, f)
  cmd = [
    args.torch_python,
    "-m",
    "benchmarks.official_driver",
    f"--mode={mode}",
    f"--mirror={args.mirror}",
    f"--spec={f.name}",
    f"--out={out_path}",
  ]
  path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  print("running the official code:", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=path))
  os.unlink(f.name)


def write_json(path, obj):
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  files.write_json(path, obj, indent=1)


def provenance():
  import datetime  # pylint: disable=g-import-not-at-top

  from benchmarks import common  # pylint: disable=g-import-not-at-top

  return {"machine": common.machine(), "date": datetime.date.today().isoformat()}
