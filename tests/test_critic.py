"""The progressive critic: shapes, fade-in, the fused path, parameter count, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from params import random_params

from layered_gan_jax.nets import architecture, layers
from layered_gan_jax.nets import critic as critic_lib

CHANNELS = (8, 8, 8, 4, 4, 4)  # stages 0..5: 4..128 px
BATCH = 3


@pytest.fixture(scope="module")
def critic():
  model = critic_lib.Critic(channels=CHANNELS)
  return model, random_params(lambda k: critic_lib.init_critic(model, k), 0)


def _images(seed, stage, batch=BATCH):
  r = architecture.resolution_of(stage)
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batch, r, r, 3)), jnp.float32)


def manual_critic(params, x, stage, alpha, channels=CHANNELS, fused_resolution=128):
  """The critic rebuilt from its parts, applied one sub-module at a time."""

  def from_rgb(i, img):
    conv = layers.EqualConv(channels[i], kernel_size=1)
    return layers.leaky_relu(conv.apply({"params": params[f"from_rgb_{i}"]}, img))

  h = from_rgb(stage, x)
  for i in range(stage, 0, -1):
    block = critic_lib.CriticBlock(
      channels[i - 1], fused=architecture.resolution_of(i) >= fused_resolution
    )
    h = block.apply({"params": params[f"block_{i}"]}, h)
    if i == stage and alpha != 1.0:  # alpha = 1: the path without the skip
      h = (1 - alpha) * from_rgb(stage - 1, layers.avg_pool2(x)) + alpha * h
  features = h
  h = layers.minibatch_stddev(h)
  c0 = channels[0]
  h = layers.leaky_relu(layers.EqualConv(c0).apply({"params": params["final_conv1"]}, h))
  h = layers.leaky_relu(
    layers.EqualConv(c0, kernel_size=4, padding="VALID").apply({"params": params["final_conv2"]}, h)
  )
  scores = layers.EqualDense(1).apply({"params": params["output"]}, h.reshape(h.shape[0], -1))
  return scores[:, 0], features


@pytest.mark.parametrize("stage", [1, 2, 3, 4, 5])
def test_shapes_finiteness_and_fade_in(critic, stage):
  model, params = critic
  x = _images(stage, stage)
  outs = {}
  for alpha in (0.0, 0.5, 1.0):
    scores, feats = model.apply(
      {"params": params}, x, stage=stage, alpha=alpha, return_features=True
    )
    assert scores.shape == (BATCH,) and scores.dtype == jnp.float32
    assert feats.shape == (BATCH, 4, 4, CHANNELS[0])
    assert np.all(np.isfinite(scores)) and np.all(np.isfinite(feats))
    # Same as the critic assembled by hand from its sub-modules (fused at 128 px).
    ref_scores, ref_feats = manual_critic(params, x, stage, alpha)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(feats, ref_feats, rtol=1e-4, atol=1e-4)
    outs[alpha] = scores
  # Without features, the same scores.
  np.testing.assert_array_equal(
    model.apply({"params": params}, x, stage=stage, alpha=1.0), outs[1.0]
  )
  # alpha = 0: from_rgb_{s-1} on avgpool2(x), then the path of stage s - 1.
  prev = model.apply({"params": params}, layers.avg_pool2(x), stage=stage - 1)
  np.testing.assert_allclose(outs[0.0], prev, rtol=1e-5, atol=1e-5)
  assert not np.allclose(outs[0.0], outs[1.0], atol=1e-3)
  assert not np.allclose(outs[0.5], outs[1.0], atol=1e-3)


def test_alpha_one_is_the_path_without_the_skip(critic):
  """alpha = 1 ignores from_rgb_{s-1} entirely: changing its parameters changes nothing, while
  at alpha < 1 it matters."""
  model, params = critic
  stage = 2
  x = _images(20, stage)
  other = dict(params)
  other["from_rgb_1"] = jax.tree_util.tree_map(lambda a: a + 1.0, params["from_rgb_1"])
  np.testing.assert_array_equal(
    model.apply({"params": params}, x, stage=stage, alpha=1.0),
    model.apply({"params": other}, x, stage=stage, alpha=1.0),
  )
  assert not np.allclose(
    model.apply({"params": params}, x, stage=stage, alpha=0.5),
    model.apply({"params": other}, x, stage=stage, alpha=0.5),
    atol=1e-4,
  )


def test_fade_in_blend_at_stage_one_features():
  """At stage 1 the blend is the 4x4 feature map: (1 - a) * skip + a * block_1(from_rgb_1(x))."""
  model = critic_lib.Critic(channels=(4, 4))
  params = random_params(lambda k: critic_lib.init_critic(model, k), 1)
  x = _images(21, 1)
  f0 = model.apply({"params": params}, x, stage=1, alpha=0.0, return_features=True)[1]
  f1 = model.apply({"params": params}, x, stage=1, alpha=1.0, return_features=True)[1]
  f3 = model.apply({"params": params}, x, stage=1, alpha=0.3, return_features=True)[1]
  np.testing.assert_allclose(f3, 0.7 * f0 + 0.3 * f1, rtol=1e-5, atol=1e-6)
  skip = layers.leaky_relu(
    layers.EqualConv(4, kernel_size=1).apply({"params": params["from_rgb_0"]}, layers.avg_pool2(x))
  )
  np.testing.assert_allclose(f0, skip, rtol=1e-5, atol=1e-6)


def _assert_same_scores(a, b, params, x, stage):
  for alpha in (0.4, 1.0):
    np.testing.assert_allclose(
      a.apply({"params": params}, x, stage=stage, alpha=alpha),
      b.apply({"params": params}, x, stage=stage, alpha=alpha),
      rtol=1e-5,
      atol=1e-5,
    )


def test_fused_and_unfused_paths_agree():
  """The fused stride-2 conv equals conv + avg pool, so with the same parameters a critic that
  fuses from 8 px gives the scores of one that never fuses."""
  fused = critic_lib.Critic(channels=(4, 4, 4), fused_resolution=8)
  plain = critic_lib.Critic(channels=(4, 4, 4), fused_resolution=1024)
  params = random_params(lambda k: critic_lib.init_critic(fused, k), 2)
  x = _images(22, 2)
  _assert_same_scores(fused, plain, params, x, 2)
  for alpha in (0.4, 1.0):
    np.testing.assert_allclose(
      fused.apply({"params": params}, x, stage=2, alpha=alpha),
      manual_critic(params, x, 2, alpha, channels=(4, 4, 4), fused_resolution=8)[0],
      rtol=1e-5,
      atol=1e-5,
    )


def test_resampling_forms_give_the_same_scores():
  """model.resampling changes how the average pooling is computed, not what."""
  efficient = critic_lib.Critic(channels=(4, 4, 4, 4), resampling="efficient")
  direct = critic_lib.Critic(channels=(4, 4, 4, 4), resampling="direct")
  params = random_params(lambda k: critic_lib.init_critic(efficient, k), 3)
  _assert_same_scores(efficient, direct, params, _images(23, 3), 3)


def test_stage_zero_and_input_validation(critic):
  model, params = critic
  x = _images(23, 0)
  scores, feats = model.apply({"params": params}, x, stage=0, return_features=True)
  assert scores.shape == (BATCH,) and feats.shape == (BATCH, 4, 4, CHANNELS[0])
  with pytest.raises(ValueError):
    model.apply({"params": params}, _images(24, 2), stage=1)
  with pytest.raises(ValueError):
    model.apply({"params": params}, _images(25, 2), stage=6)


def test_determinism(critic):
  model, params = critic
  x = _images(26, 3)
  run = lambda: np.asarray(model.apply({"params": params}, x, stage=3, alpha=0.25))
  a, b = run(), run()
  np.testing.assert_array_equal(a, b)
  jitted = jax.jit(lambda p, x: model.apply({"params": p}, x, stage=3, alpha=0.25))
  np.testing.assert_array_equal(np.asarray(jitted(params, x)), np.asarray(jitted(params, x)))


def test_minibatch_stddev_couples_the_batch(critic):
  """The score of one image depends on the rest of the batch only through the minibatch-stddev
  channel: with a constant batch (zero variance) the scores are all equal."""
  model, params = critic
  x = jnp.broadcast_to(_images(27, 2, batch=1), (BATCH, 16, 16, 3))
  scores = np.asarray(model.apply({"params": params}, x, stage=2))
  np.testing.assert_allclose(scores, np.full(BATCH, scores[0]), rtol=1e-6)
  y = x.at[1].set(_images(28, 2, batch=1)[0])
  assert not np.isclose(model.apply({"params": params}, y, stage=2)[0], scores[0])


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def test_parameter_count_matches_reference_model():
  """Reference widths up to 1024 px: 25,444,737 parameters, as the official PyTorch critic."""
  model = critic_lib.Critic(channels=architecture.REFERENCE_CHANNELS)
  shapes = jax.eval_shape(lambda k: critic_lib.init_critic(model, k), jax.random.PRNGKey(0))
  assert _count(shapes) == 25_444_737
  assert set(shapes) == (
    {f"from_rgb_{i}" for i in range(9)}
    | {f"block_{i}" for i in range(1, 9)}
    | {"final_conv1", "final_conv2", "output"}
  )
  assert shapes["final_conv1"]["kernel"].shape == (3, 3, 513, 512)  # + minibatch-stddev channel
  assert shapes["final_conv2"]["kernel"].shape == (4, 4, 512, 512)
  assert shapes["output"]["kernel"].shape == (512, 1)
  assert shapes["block_5"]["conv1"]["kernel"].shape == (3, 3, 128, 256)  # 128 px -> 64 px
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(shapes))


def test_init_critic_values():
  """Equalized lr: kernels stored N(0, 1), biases 0."""
  model = critic_lib.Critic(channels=(16, 8))
  params = jax.jit(lambda k: critic_lib.init_critic(model, k))(
    jax.random.key(3, impl="rbg")
  )  # rbg: the threefry init compiles slowly on CPU
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if "bias" in name:
      np.testing.assert_array_equal(leaf, np.zeros_like(leaf), err_msg=name)
  kernel = np.asarray(params["final_conv1"]["kernel"])  # 3*3*17*16 = 2448 values
  assert abs(kernel.mean()) < 0.1 and abs(kernel.std() - 1.0) < 0.05
