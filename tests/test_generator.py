"""The layered StyleGAN-1 generator: shapes, fade-in, variants, style mixing, truncation,
determinism and the parameter counts of the official model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from params import random_params

from layered_gan_jax.nets import architecture, layers
from layered_gan_jax.nets import generator as G

CHANNELS = (8, 8, 8, 4, 4, 4)  # stages 0..5: 4..128 px (the fused upsampling runs at 128 px)
STYLE_DIM = 8
BATCH = 2


def KEY(seed):
  # The code under test is agnostic to the PRNG implementation; "rbg" keys compile much faster
  # on CPU than threefry ones, which keeps this file quick.
  return jax.random.key(seed, impl="rbg")


def make(variant, channels=CHANNELS):
  return G.LayeredGenerator(
    channels=channels, variant=variant, style_dim=STYLE_DIM, mapping_layers=2
  )


@pytest.fixture(scope="module")
def models():
  out = {}
  for i, v in enumerate(architecture.VARIANTS):
    model = make(v)
    out[v] = (model, random_params(lambda k, m=model: G.init_generator(m, k), i))
  return out


def latents(seed, batch=BATCH):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, STYLE_DIM)), jnp.float32)


def fixed_noise(model, seed, stage, batch=BATCH):
  rng = np.random.default_rng(seed)
  return {
    n: [
      jnp.asarray(rng.standard_normal(s).astype(np.float32)) for s in G.noise_shapes(batch, stage)
    ]
    for n in model.synthesis_names
  }


def manual_heads(sub_params, out_channels, styles, noise, stage, fused_resolution=128):
  """One synthesis network assembled by hand: runs blocks 0..stage one at a time and returns
  (head_stage(features_stage), head_{stage-1}(features_{stage-1}))."""
  x, feats = None, []
  for i in range(stage + 1):
    block = G.SynthesisBlock(
      CHANNELS[i], initial=i == 0, fused=i > 0 and architecture.resolution_of(i) >= fused_resolution
    )
    x = block.apply({"params": sub_params[f"block_{i}"]}, x, styles[i], noise[i])
    feats.append(x)
  head = lambda j: layers.EqualConv(out_channels, kernel_size=1).apply(
    {"params": sub_params[f"head_{j}"]}, feats[j]
  )
  return head(stage), head(stage - 1)


def _close(a, b, tol=1e-4):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- shapes, fade-in


@pytest.mark.parametrize("variant", architecture.VARIANTS)
def test_shapes_finiteness_and_fade_in_every_stage(models, variant):
  model, params = models[variant]
  z = latents(1)
  for stage in range(1, 6):
    r = architecture.resolution_of(stage)
    noise = fixed_noise(model, stage, stage)
    out = {
      a: model.apply({"params": params}, z, stage=stage, alpha=a, noise=noise)
      for a in (0.0, 0.5, 1.0)
    }
    for a, o in out.items():
      assert o["background"].shape == (BATCH, r, r, 3)
      assert o["foreground"].shape == (BATCH, r, r, 3)
      assert o["mask_logit"].shape == (BATCH, r, r, 1) and o["mask"].shape == (BATCH, r, r, 1)
      for name, v in o.items():
        assert v.dtype == jnp.float32 and np.all(np.isfinite(v)), (stage, a, name)
      assert np.all((o["mask"] >= 0) & (o["mask"] <= 1))
      _close(o["mask"], jax.nn.sigmoid(o["mask_logit"]), 1e-6)
    # alpha = 0: the stage - 1 output (same styles, same noise for blocks 0..stage-1),
    # upsampled nearest x2; the mask is the sigmoid of the upsampled logit.
    prev_noise = {n: v[:stage] for n, v in noise.items()}
    prev = model.apply({"params": params}, z, stage=stage - 1, noise=prev_noise)
    for name in ("background", "foreground", "mask_logit"):
      _close(out[0.0][name], layers.upsample_nearest(prev[name]))
    _close(out[0.0]["mask"], jax.nn.sigmoid(layers.upsample_nearest(prev["mask_logit"])), 1e-5)
    # alpha = 0.5: the blend of the two, on the logit; the sigmoid comes after.
    for name in ("background", "foreground", "mask_logit"):
      _close(out[0.5][name], 0.5 * out[0.0][name] + 0.5 * out[1.0][name])
    _close(
      out[0.5]["mask"],
      jax.nn.sigmoid(0.5 * out[0.0]["mask_logit"] + 0.5 * out[1.0]["mask_logit"]),
      1e-5,
    )
    assert not np.allclose(out[0.0]["background"], out[1.0]["background"], atol=1e-3)


@pytest.mark.parametrize(
  "variant,stage",
  [("two_generators", 1), ("two_generators", 5), ("single_generator", 3), ("shared_style", 5)],
)
def test_fade_in_against_heads_computed_by_hand(models, variant, stage):
  """alpha = 1 is the new head alone; alpha = 0 the upsampled previous head; in between their
  blend, with the mask = sigmoid(blended logit)."""
  model, params = models[variant]
  z = latents(2)
  noise = fixed_noise(model, 100 + stage, stage)
  w = model.apply({"params": params}, z, method=G.LayeredGenerator.map)
  heads = {}
  for n in model.synthesis_names:
    sub = "synthesis" if n == "single" else f"{n}_synthesis"
    out_ch = {"single": 7, "background": 3, "object": 4}[n]
    heads[n] = manual_heads(params[sub], out_ch, [w[n]] * (stage + 1), noise[n], stage)
  for alpha in (0.0, 0.3, 1.0):
    out = model.apply({"params": params}, z, stage=stage, alpha=alpha, noise=noise)
    if alpha == 1.0:  # the new head alone
      blend = {n: new for n, (new, _) in heads.items()}
    else:
      blend = {
        n: (1 - alpha) * layers.upsample_nearest(old) + alpha * new
        for n, (new, old) in heads.items()
      }
    if variant == "single_generator":
      bg, fg, logit = blend["single"][..., :3], blend["single"][..., 3:6], blend["single"][..., 6:]
    else:
      bg, fg, logit = blend["background"], blend["object"][..., :3], blend["object"][..., 3:]
    _close(out["background"], bg)
    _close(out["foreground"], fg)
    _close(out["mask_logit"], logit)
    _close(out["mask"], jax.nn.sigmoid(logit), 1e-5)


def test_alpha_one_ignores_the_previous_head(models):
  model, params = models["two_generators"]
  z, stage = latents(3), 2
  noise = fixed_noise(model, 3, stage)
  other = jax.tree_util.tree_map(lambda a: a, params)
  for sub in ("background_synthesis", "object_synthesis"):
    other[sub] = dict(other[sub])
    other[sub]["head_1"] = jax.tree_util.tree_map(lambda a: a + 1.0, params[sub]["head_1"])
  run = lambda p, a: model.apply({"params": p}, z, stage=stage, alpha=a, noise=noise)
  for name, v in run(params, 1.0).items():
    np.testing.assert_array_equal(v, run(other, 1.0)[name])
  assert not np.allclose(run(params, 0.5)["background"], run(other, 0.5)["background"])


def test_resampling_forms_give_the_same_images(models):
  """model.resampling="efficient" (sub-pixel upsample-conv, used from 8 px inputs on, i.e. at
  stage 3 here) and "direct" compute the same generator with the same parameters."""
  _, params = models["two_generators"]
  z, stage = latents(4), 3
  outs = []
  for resampling in architecture.RESAMPLING:
    model = G.LayeredGenerator(
      channels=CHANNELS, style_dim=STYLE_DIM, mapping_layers=2, resampling=resampling
    )
    noise = fixed_noise(model, 7, stage)
    outs.append(model.apply({"params": params}, z, stage=stage, alpha=1.0, noise=noise))
  for key in ("background", "foreground", "mask_logit"):
    _close(outs[0][key], outs[1][key])


def test_stage_zero_and_validation(models):
  model, params = models["two_generators"]
  out = model.apply({"params": params}, latents(4), stage=0, noise=fixed_noise(model, 4, 0))
  assert out["background"].shape == (BATCH, 4, 4, 3) and out["mask"].shape == (BATCH, 4, 4, 1)
  with pytest.raises(ValueError):
    model.apply({"params": params}, latents(4), stage=6, noise=fixed_noise(model, 4, 6))
  with pytest.raises(ValueError):
    make("bogus").apply({"params": params}, latents(4), stage=0, rngs={"noise": KEY(0)})
  assert [architecture.resolution_of(s) for s in range(6)] == [4, 8, 16, 32, 64, 128]
  assert [architecture.stage_of(r) for r in (4, 8, 64, 128, 1024)] == [0, 1, 4, 5, 8]
  for bad in (3, 48, 2):
    with pytest.raises(ValueError):
      architecture.stage_of(bad)


# ----------------------------------------------------------------------------- variants


def test_single_generator_splits_a_seven_channel_head(models):
  model, params = models["single_generator"]
  assert set(params) == {"mapping", "synthesis"}
  assert params["synthesis"]["head_3"]["kernel"].shape == (1, 1, CHANNELS[3], 7)
  z, stage = latents(5), 3
  noise = fixed_noise(model, 5, stage)
  w = model.apply({"params": params}, z, method=G.LayeredGenerator.map)["single"]
  for alpha in (0.5, 1.0):
    out = model.apply({"params": params}, z, stage=stage, alpha=alpha, noise=noise)
    full = G.SynthesisNetwork(CHANNELS, 7).apply(
      {"params": params["synthesis"]}, [w] * (stage + 1), noise["single"], stage=stage, alpha=alpha
    )
    _close(out["background"], full[..., :3], 1e-5)
    _close(out["foreground"], full[..., 3:6], 1e-5)
    _close(out["mask_logit"], full[..., 6:7], 1e-5)
    _close(out["mask"], jax.nn.sigmoid(full[..., 6:7]), 1e-5)


class _Recorder:
  """Records the (styles, noise) every synthesis network is called with."""

  def __init__(self):
    self.calls = {}

  def __call__(self, next_fun, args, kwargs, context):
    if isinstance(context.module, G.SynthesisNetwork) and context.method_name == "__call__":
      styles, noise = args[0], args[1]
      self.calls[context.module.name] = (
        [np.asarray(s) for s in styles],
        [np.asarray(n) for n in noise],
      )
    return next_fun(*args, **kwargs)


def _record(model, params, z, stage, **kw):
  rec = _Recorder()
  with nn.intercept_methods(rec):
    out = model.apply({"params": params}, z, stage=stage, **kw)
  return rec.calls, out


def test_shared_style_shares_noise_and_style(models):
  model, params = models["shared_style"]
  assert set(params) == {"shared_mapping", "background_synthesis", "object_synthesis"}
  z, stage = latents(6), 3
  calls, out = _record(model, params, z, stage, rngs={"noise": KEY(6)})
  (bg_styles, bg_noise), (obj_styles, obj_noise) = (
    calls["background_synthesis"],
    calls["object_synthesis"],
  )
  assert len(bg_noise) == stage + 1
  for a, b in zip(bg_noise, obj_noise):
    np.testing.assert_array_equal(a, b)  # the same noise maps
    assert np.std(a) > 0.5
  for a, b in zip(bg_styles, obj_styles):
    np.testing.assert_array_equal(a, b)  # the same w, from the one mapping network
  # The sampled noise, passed explicitly to both networks, reproduces the output.
  shared = [jnp.asarray(a) for a in bg_noise]
  explicit = model.apply(
    {"params": params}, z, stage=stage, noise={"background": shared, "object": shared}
  )
  for name, v in out.items():
    np.testing.assert_array_equal(v, explicit[name])


def test_two_generators_draw_their_own_noise_and_style(models):
  model, params = models["two_generators"]
  assert set(params) == {
    "background_mapping",
    "object_mapping",
    "background_synthesis",
    "object_synthesis",
  }
  z, stage = latents(7), 2
  calls, out = _record(model, params, z, stage, rngs={"noise": KEY(7)})
  (bg_styles, bg_noise), (obj_styles, obj_noise) = (
    calls["background_synthesis"],
    calls["object_synthesis"],
  )
  for a, b in zip(bg_noise, obj_noise):
    assert a.shape == b.shape and not np.allclose(a, b)
  assert not np.allclose(bg_styles[0], obj_styles[0])  # own mapping networks, same z
  w = model.apply({"params": params}, z, method=G.LayeredGenerator.map)
  np.testing.assert_allclose(bg_styles[0], w["background"], rtol=1e-6)
  np.testing.assert_allclose(obj_styles[0], w["object"], rtol=1e-6)
  explicit = model.apply(
    {"params": params},
    z,
    stage=stage,
    noise={
      "background": [jnp.asarray(a) for a in bg_noise],
      "object": [jnp.asarray(a) for a in obj_noise],
    },
  )
  for name, v in out.items():
    np.testing.assert_array_equal(v, explicit[name])


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("variant", architecture.VARIANTS)
def test_determinism(models, variant):
  model, params = models[variant]
  z, stage = latents(8), 2
  run = lambda key: model.apply({"params": params}, z, stage=stage, alpha=0.5, rngs={"noise": key})
  a, b, c = run(KEY(8)), run(KEY(8)), run(KEY(9))
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])  # bit-identical
  assert not np.allclose(a["background"], c["background"])  # other noise, other image


def test_determinism_under_jit_with_default_key(models):
  model, params = models["two_generators"]
  z = latents(8)
  jitted = jax.jit(
    lambda p, z, k: model.apply({"params": p}, z, stage=1, alpha=0.5, rngs={"noise": k})
  )
  d, e = jitted(params, z, jax.random.PRNGKey(3)), jitted(params, z, jax.random.PRNGKey(3))
  for name in d:
    np.testing.assert_array_equal(d[name], e[name])


# ----------------------------------------------------------------------------- style mixing


@pytest.mark.parametrize("variant", ["two_generators", "shared_style"])
def test_style_mixing(models, variant):
  model, params = models[variant]
  z, z2, stage = latents(9), latents(10), 3
  noise = fixed_noise(model, 9, stage)
  groups = model.mixing_groups
  assert groups == (("background", "object") if variant == "two_generators" else ("background",))
  run = lambda **kw: model.apply({"params": params}, z, stage=stage, noise=noise, **kw)
  plain = run()
  # crossover >= stage: every block uses z's style, as without mixing.
  for c in (stage, stage + 2):
    mixed = run(z2=z2, crossover={g: jnp.asarray(c) for g in groups})
    for name in plain:
      np.testing.assert_array_equal(mixed[name], plain[name])
  # crossover c: blocks <= c use z's style, later blocks z2's.
  w = model.apply({"params": params}, z, method=G.LayeredGenerator.map)
  w2 = model.apply({"params": params}, z2, method=G.LayeredGenerator.map)
  for c in (0, 1):
    mixed = run(z2=z2, crossover={g: jnp.asarray(c) for g in groups})
    assert not np.allclose(mixed["background"], plain["background"], atol=1e-4)
    assert not np.allclose(mixed["mask_logit"], plain["mask_logit"], atol=1e-4)
    styles = {n: [w[n]] * (c + 1) + [w2[n]] * (stage - c) for n in model.synthesis_names}
    ref = model.apply(
      {"params": params}, styles, stage=stage, noise=noise, method=G.LayeredGenerator.synthesize
    )
    for name in plain:
      _close(mixed[name], ref[name], 1e-5)
  if variant == "two_generators":
    # Each network has its own crossover: mixing only the background leaves the object alone.
    mixed = run(z2=z2, crossover={"background": jnp.asarray(0), "object": jnp.asarray(stage)})
    assert not np.allclose(mixed["background"], plain["background"], atol=1e-4)
    np.testing.assert_array_equal(mixed["foreground"], plain["foreground"])
    np.testing.assert_array_equal(mixed["mask_logit"], plain["mask_logit"])
  with pytest.raises(ValueError):
    run(z2=z2)  # mixing needs a crossover


def test_style_mixing_crossover_is_traced(models):
  model, params = models["two_generators"]
  z, z2, stage = latents(11), latents(12), 2
  noise = fixed_noise(model, 11, stage)
  run = jax.jit(
    lambda c: model.apply(
      {"params": params},
      z,
      stage=stage,
      noise=noise,
      z2=z2,
      crossover={"background": c, "object": c},
    )
  )
  eager = lambda c: model.apply(
    {"params": params}, z, stage=stage, noise=noise, z2=z2, crossover={"background": c, "object": c}
  )
  for c in (0, 2):
    _close(run(jnp.asarray(c))["background"], eager(c)["background"], 1e-5)
  assert not np.allclose(run(jnp.asarray(0))["background"], run(jnp.asarray(2))["background"])


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("variant", ["two_generators", "single_generator"])
def test_truncation(models, variant):
  model, params = models[variant]
  stage = 2
  noise = fixed_noise(model, 13, stage)
  w_avg = G.mean_styles(model, params, KEY(13), num=256)
  z_all = jax.random.normal(KEY(13), (256, STYLE_DIM))
  w_all = model.apply({"params": params}, z_all, method=G.LayeredGenerator.map)
  for n in model.synthesis_names:
    assert w_avg[n].shape == (STYLE_DIM,)
    _close(w_avg[n], jnp.mean(w_all[n], axis=0), 1e-5)
  run = lambda z, **kw: model.apply({"params": params}, z, stage=stage, noise=noise, **kw)
  # psi = 0: every z gives the w_avg output (also with style mixing).
  a = run(latents(14), truncation=0.0, w_avg=w_avg)
  b = run(latents(15), truncation=0.0, w_avg=w_avg)
  c = run(
    latents(16),
    truncation=0.0,
    w_avg=w_avg,
    z2=latents(17),
    crossover={g: jnp.asarray(0) for g in model.mixing_groups},
  )
  ref = model.apply(
    {"params": params},
    {n: jnp.broadcast_to(w_avg[n], (BATCH, STYLE_DIM)) for n in model.synthesis_names},
    stage=stage,
    noise=noise,
    method=G.LayeredGenerator.synthesize,
  )
  for name in ref:
    _close(a[name], ref[name], 1e-5)
    _close(b[name], ref[name], 1e-5)
    _close(c[name], ref[name], 1e-5)
  # psi = 1: no truncation; psi = 0.5: halfway in w.
  z = latents(18)
  for name, v in run(z, truncation=1.0, w_avg=w_avg).items():
    _close(v, run(z)[name], 1e-5)
  w = model.apply({"params": params}, z, method=G.LayeredGenerator.map)
  half = model.apply(
    {"params": params},
    {n: w_avg[n] + 0.5 * (w[n] - w_avg[n]) for n in model.synthesis_names},
    stage=stage,
    noise=noise,
    method=G.LayeredGenerator.synthesize,
  )
  for name, v in run(z, truncation=0.5, w_avg=w_avg).items():
    _close(v, half[name], 1e-5)
  with pytest.raises(ValueError):
    run(z, truncation=0.5)  # needs w_avg
  np.testing.assert_allclose(G.truncate(jnp.array([3.0]), jnp.array([1.0]), 0.25), [1.5])


# ----------------------------------------------------------------------------- parameters


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _reference_shapes(variant):
  model = G.LayeredGenerator(variant=variant)  # reference widths, 4..1024 px, 8-layer mapping
  return jax.eval_shape(lambda k: G.init_generator(model, k), jax.random.PRNGKey(0))


def test_parameter_counts_match_official_model():
  shapes = _reference_shapes("two_generators")
  assert _count(shapes["background_mapping"]) == 2_101_248
  assert _count(shapes["object_mapping"]) == 2_101_248
  assert _count(shapes["background_mapping"]) + _count(shapes["background_synthesis"]) == 26_219_115
  assert _count(shapes["object_mapping"]) + _count(shapes["object_synthesis"]) == 26_221_668
  synth = shapes["background_synthesis"]
  assert set(synth) == {f"block_{i}" for i in range(9)} | {f"head_{i}" for i in range(9)}
  assert synth["block_0"]["const"]["const"].shape == (1, 4, 4, 512)
  assert synth["block_4"]["conv1"]["kernel"].shape == (3, 3, 512, 256)  # 64 px
  assert synth["block_8"]["conv2"]["kernel"].shape == (3, 3, 16, 16)  # 1024 px
  assert synth["block_5"]["adain1"]["style"]["kernel"].shape == (512, 256)
  assert synth["block_5"]["noise1"]["weight"].shape == (128,)
  assert shapes["object_synthesis"]["head_8"]["kernel"].shape == (1, 1, 16, 4)
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(shapes))


def test_parameter_counts_of_the_other_variants():
  """Derived from the same blocks: one mapping network for both syntheses (shared style); one
  synthesis with a 7-channel head (single generator: 4 more output channels on each of the 9
  heads, whose inputs have 2,544 channels in all, plus 4 biases each)."""
  shared = _reference_shapes("shared_style")
  assert _count(shared) == 2_101_248 + (26_219_115 - 2_101_248) + (26_221_668 - 2_101_248)
  single = _reference_shapes("single_generator")
  assert _count(single["mapping"]) == 2_101_248
  assert _count(single) == 26_219_115 + 4 * (2_544 + 9)


@pytest.mark.parametrize("variant", architecture.VARIANTS)
def test_mask_logit_offset_shifts_only_the_mask_logit(models, variant):
  model, params = models[variant]
  shifted = G.LayeredGenerator(
    channels=CHANNELS,
    variant=variant,
    style_dim=STYLE_DIM,
    mapping_layers=2,
    mask_logit_offset=-3.0,
  )
  z, stage = latents(11), 2
  run = lambda m: m.apply({"params": params}, z, stage=stage, alpha=0.5, rngs={"noise": KEY(11)})
  a, b = run(model), run(shifted)
  for name in ("background", "foreground"):
    np.testing.assert_array_equal(a[name], b[name])
  _close(b["mask_logit"], a["mask_logit"] - 3.0, tol=1e-5)
  _close(b["mask"], 1.0 / (1.0 + np.exp(-(np.asarray(a["mask_logit"]) - 3.0))), tol=1e-5)


def test_head_init_std_scales_only_the_output_heads():
  base = make("two_generators")
  small = G.LayeredGenerator(
    channels=CHANNELS,
    variant="two_generators",
    style_dim=STYLE_DIM,
    mapping_layers=2,
    head_init_std=0.1,
  )
  a = G.init_generator(base, jax.random.PRNGKey(4))
  b = G.init_generator(small, jax.random.PRNGKey(4))
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = dict(jax.tree_util.tree_leaves_with_path(b))
  heads = 0
  for path, value in flat_a:
    name = jax.tree_util.keystr(path)
    if "head_" in name and "kernel" in name:
      heads += 1
      _close(flat_b[path], 0.1 * np.asarray(value), tol=1e-6)
    else:
      np.testing.assert_array_equal(flat_b[path], value)
  assert heads == 2 * len(CHANNELS)  # one head per stage in each of the two networks
