"""Ours against numbers recorded from the official PyTorch code (tests/fixtures/official_parity.npz,
made by ``benchmarks/official_parity.py fixture``): the same seeded weights and random draws
through our code must give the official forward outputs, loss terms, gradients and the state
after 3 iterations (one at 8 px, two at 16 px in the fade-in, where a late block takes its first
Adam step). See benchmarks/results/official_parity.json for the measured differences."""

import json

import jax
import numpy as np
import pytest

from benchmarks import official_common as oc
from benchmarks import official_parity as op
from layered_gan_jax.nets import build
from layered_gan_jax.nets.critic import init_critic
from layered_gan_jax.nets.generator import init_generator


@pytest.fixture(scope="module")
def fx():
  with np.load(op.FIXTURE) as f:
    yield {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def rows(fx):
  data = op.NpzDict(fx)
  return op.compare(data, op.our_results(data, "efficient"))


def _spec(fx):
  return json.loads(str(fx["spec"]))


def test_name_map_covers_every_parameter_once(fx):
  spec = _spec(fx)
  ch, ml = spec["channels"], spec["mapping_layers"]
  entries = oc.name_map(ch, ml)
  official = {k[len("init/") :] for k in fx if k.startswith("init/")}
  mapped = {f"{m}/{theirs}" for m, theirs, _, _ in entries}
  assert mapped == official  # no official parameter left out, none invented
  config = op.fixture_config(spec, 0.25)
  gen, crit = build.build_generator(config), build.build_critic(config)
  ours = {
    "g": jax.eval_shape(lambda k: init_generator(gen, k), jax.random.PRNGKey(0)),
    "d": jax.eval_shape(lambda k: init_critic(crit, k), jax.random.PRNGKey(1)),
  }
  for m in ("g", "d"):
    paths = {
      tuple(str(k.key) for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(ours[m])[0]
    }
    assert {path for mm, _, path, _ in entries if mm == m} == paths
  # The layouts round-trip, and the official shapes come out of our trees.
  for m in ("g", "d"):
    arrays = {k[len(f"init/{m}/") :]: fx[k] for k in fx if k.startswith(f"init/{m}/")}
    tree = oc.to_ours(arrays, m, ch, ml)
    back = oc.to_official(tree, m, ch, ml)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
      np.testing.assert_array_equal(back[k], v, err_msg=k)
    shapes = jax.tree.map(lambda a: a.shape, ours[m])
    assert jax.tree.map(lambda a: a.shape, tree) == shapes


def test_fixture_exercises_what_it_claims(fx):
  spec = _spec(fx)
  cases = json.loads(str(fx["fwd_cases"]))
  assert {(c["stage"], c["alpha"], c["mixing"]) for c in cases} == {
    (s, a, m) for s in (1, 2, 3) for a in (0.5, 1.0) for m in (False, True)
  }
  # eta lies between the per-sample coverages: L_size per sample differs from the batch form.
  cov, eta = fx["eta_coverages"], float(fx["eta"])
  assert cov.min() < eta < cov.max()
  # The late block: block 2 and head 2 started in iteration 2, the others in iteration 1.
  counts = {
    k: float(v) for k, v in fx.items() if k.startswith("train/g_opt/") and k.endswith("/count")
  }
  late = [k for k in counts if ".progression.2." in k or ".to_rgb.2." in k or ".to_out.2." in k]
  early = [k for k in counts if ".progression.1." in k or ".style.1." in k]
  assert late and early
  assert all(counts[k] == 2 for k in late) and all(counts[k] == 3 for k in early)
  assert [m for m in json.loads(str(fx["train/metrics"]))] and spec["train_mixing"] == [
    True,
    False,
    True,
  ]
  assert fx["train_draws/mixing"].tolist() == [True, False, True]


def test_ours_matches_the_official_code(rows):
  bad = [r for r in rows if not r["ok"]]
  summary = op.summarize(rows)
  assert {"forward", "loss", "gradient", "train"} <= set(summary)
  assert summary["forward"]["arrays"] >= 12 * 8 and summary["train"]["arrays"] >= 500
  assert not bad, "arrays that differ from the official code:\n" + "\n".join(
    f"  {r['name']}: "
    + (r.get("error") or f"max |diff| {r['max_abs_diff']:.3g} (scale {r['scale']:.3g})")
    for r in bad[:40]
  )
