"""Numerical checks of the StyleGAN-1 building blocks in ``layered_gan_jax.nets.layers``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from layered_gan_jax.nets import architecture, layers

DIMS = ("NHWC", "HWIO", "NHWC")


def KEY(seed):
  # Parameter initialisation does not depend on the PRNG implementation; "rbg" keys compile
  # much faster on CPU than threefry ones.
  return jax.random.key(seed, impl="rbg")


def _normal(seed, shape, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale)


def _conv3x3(x, kernel):
  """Plain SAME (zero padding 1) 3x3 correlation, NHWC / HWIO."""
  return lax.conv_general_dilated(
    x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DIMS, precision=lax.Precision.HIGHEST
  )


# ----------------------------------------------------------------------------- pure functions


def test_he_scale_and_leaky_relu():
  assert layers.he_scale(512) == pytest.approx(math.sqrt(2 / 512))
  assert layers.he_scale(4608) == pytest.approx(math.sqrt(2 / (512 * 9)))
  x = jnp.array([-2.0, -0.5, 0.0, 1.5])
  np.testing.assert_allclose(layers.leaky_relu(x), [-0.4, -0.1, 0.0, 1.5], rtol=1e-6)


def test_pixel_norm_matches_numpy():
  x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32) * 3.0
  ref = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-8)
  np.testing.assert_allclose(layers.pixel_norm(jnp.asarray(x)), ref, rtol=1e-5, atol=1e-6)
  # Zero input stays finite (the epsilon) and maps to zero.
  np.testing.assert_array_equal(layers.pixel_norm(jnp.zeros((2, 4))), np.zeros((2, 4)))


def test_instance_norm_matches_numpy():
  x = np.random.default_rng(1).standard_normal((3, 6, 5, 4)).astype(np.float64) * 2.0 + 0.7
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)  # biased, as InstanceNorm2d
  ref = (x - mean) / np.sqrt(var + 1e-5)
  np.testing.assert_allclose(
    layers.instance_norm(jnp.asarray(x, jnp.float32)), ref, rtol=1e-4, atol=1e-5
  )


def test_minibatch_stddev_matches_numpy():
  x = np.random.default_rng(2).standard_normal((6, 4, 4, 5)).astype(np.float32)
  out = np.asarray(layers.minibatch_stddev(jnp.asarray(x)))
  assert out.shape == (6, 4, 4, 6)
  np.testing.assert_array_equal(out[..., :5], x)
  xd = x.astype(np.float64)
  stat = np.mean(np.sqrt(xd.var(axis=0) + 1e-8))  # one scalar over the whole batch
  np.testing.assert_allclose(out[..., 5], np.full((6, 4, 4), stat), rtol=1e-5)


def test_upsample_nearest_and_avg_pool_match_numpy():
  x = np.random.default_rng(3).standard_normal((2, 3, 5, 4)).astype(np.float32)
  up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  np.testing.assert_array_equal(layers.upsample_nearest(jnp.asarray(x)), up)
  y = np.random.default_rng(4).standard_normal((2, 6, 8, 3)).astype(np.float32)
  pooled = y.reshape(2, 3, 2, 4, 2, 3).mean(axis=(2, 4))
  for resampling in architecture.RESAMPLING:
    np.testing.assert_allclose(
      layers.avg_pool2(jnp.asarray(y), resampling), pooled, rtol=1e-6, atol=1e-6
    )
    # avg_pool2 undoes upsample_nearest.
    np.testing.assert_allclose(layers.avg_pool2(jnp.asarray(up), resampling), x, rtol=1e-6)


def _numpy_conv3x3_of_upsample(x, kernel):
  """Naive float64 reference: nearest x2 upsampling, zero padding 1, 3x3 correlation."""
  up = np.repeat(np.repeat(x.astype(np.float64), 2, axis=1), 2, axis=2)
  b, h, w, _ = up.shape
  p = np.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((b, h, w, kernel.shape[-1]))
  for dy in range(3):
    for dx in range(3):
      out += p[:, dy : dy + h, dx : dx + w] @ kernel[dy, dx].astype(np.float64)
  return out


@pytest.mark.parametrize("shape", [(2, 9, 8, 3), (1, 8, 12, 5), (2, 3, 5, 4)])
def test_upsample_conv3x3_equals_conv_of_nearest_upsample(shape):
  """The sub-pixel form (inputs >= RESAMPLING_MIN_SIZE; the last shape takes the direct path) is
  conv3x3(upsample_nearest(x)): values against NumPy, gradients against the direct form."""
  rng = np.random.default_rng(sum(shape))
  x = rng.standard_normal(shape).astype(np.float32)
  kernel = rng.standard_normal((3, 3, shape[-1], 6)).astype(np.float32)
  out = layers.upsample_conv3x3(jnp.asarray(x), jnp.asarray(kernel))
  assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
  np.testing.assert_allclose(out, _numpy_conv3x3_of_upsample(x, kernel), rtol=1e-5, atol=1e-4)
  direct = lambda a, k: _conv3x3(layers.upsample_nearest(a), k)
  cot = jnp.asarray(rng.standard_normal(out.shape).astype(np.float32))
  grads = jax.vjp(layers.upsample_conv3x3, jnp.asarray(x), jnp.asarray(kernel))[1](cot)
  grads_ref = jax.vjp(direct, jnp.asarray(x), jnp.asarray(kernel))[1](cot)
  for g, r in zip(grads, grads_ref):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3 * float(jnp.max(jnp.abs(r))))


def _numpy_avg_pool_of_conv3x3(x, kernel):
  """Naive float64 reference: 3x3 correlation with zero padding 1, then 2x2 mean pooling."""
  b, h, w, _ = x.shape
  p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = np.zeros((b, h, w, kernel.shape[-1]))
  for dy in range(3):
    for dx in range(3):
      y += p[:, dy : dy + h, dx : dx + w] @ kernel[dy, dx].astype(np.float64)
  return y.reshape(b, h // 2, 2, w // 2, 2, -1).mean(axis=(2, 4))


@pytest.mark.parametrize("shape", [(2, 8, 12, 3), (1, 16, 8, 5), (2, 6, 6, 4)])
def test_conv3x3_avg_pool2_equals_pooled_conv(shape):
  """The space-to-depth matrix-product form (inputs >= RESAMPLING_MIN_SIZE; the last shape takes
  the direct path) is avg_pool2(conv3x3(x)): values against NumPy; first and second
  derivatives (the gradient penalty's) against the direct form."""
  rng = np.random.default_rng(sum(shape) + 1)
  x = rng.standard_normal(shape).astype(np.float32)
  kernel = (rng.standard_normal((3, 3, shape[-1], 6)) / 3).astype(np.float32)
  out = layers.conv3x3_avg_pool2(jnp.asarray(x), jnp.asarray(kernel))
  assert out.shape == (shape[0], shape[1] // 2, shape[2] // 2, 6)
  np.testing.assert_allclose(out, _numpy_avg_pool_of_conv3x3(x, kernel), rtol=1e-5, atol=1e-5)
  direct = lambda a, k: layers.avg_pool2(_conv3x3(a, k), "direct")
  cot = jnp.asarray(rng.standard_normal(out.shape).astype(np.float32))
  grads = jax.vjp(layers.conv3x3_avg_pool2, jnp.asarray(x), jnp.asarray(kernel))[1](cot)
  grads_ref = jax.vjp(direct, jnp.asarray(x), jnp.asarray(kernel))[1](cot)
  for g, r in zip(grads, grads_ref):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(r))))

  def penalty(f):  # d/dkernel of |d/dx <f(x, k), cot>|^2, as in the gradient penalty
    return jax.grad(
      lambda k: jnp.sum(jnp.square(jax.grad(lambda a: jnp.sum(f(a, k) * cot))(jnp.asarray(x))))
    )(jnp.asarray(kernel))

  second, second_ref = penalty(layers.conv3x3_avg_pool2), penalty(direct)
  np.testing.assert_allclose(
    second, second_ref, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(second_ref)))
  )


def test_equal_conv_downsample_both_resamplings_agree():
  x = _normal(13, (2, 8, 10, 4))
  params = layers.EqualConv(5, downsample=True).init(KEY(3), x)["params"]
  params = {"kernel": params["kernel"], "bias": _normal(14, (5,))}
  ref = layers.avg_pool2(layers.EqualConv(5).apply({"params": params}, x), "direct")
  for resampling in architecture.RESAMPLING:
    out = layers.EqualConv(5, downsample=True, resampling=resampling).apply({"params": params}, x)
    assert out.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="exclusive"):
    layers.EqualConv(5, upsample=True, downsample=True).init(KEY(4), x)


def test_equal_conv_upsample_both_resamplings_agree_and_validate():
  x = _normal(11, (2, 8, 9, 4))
  conv = layers.EqualConv(5, upsample=True)
  params = conv.init(KEY(1), x)["params"]
  assert params["kernel"].shape == (3, 3, 4, 5)  # the plain conv's parameters
  params = {"kernel": params["kernel"], "bias": _normal(12, (5,))}
  ref = layers.EqualConv(5).apply({"params": params}, layers.upsample_nearest(x))
  for resampling in architecture.RESAMPLING:
    out = layers.EqualConv(5, upsample=True, resampling=resampling).apply({"params": params}, x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="upsample=True"):
    layers.EqualConv(5, kernel_size=1, upsample=True).init(KEY(2), x)


def test_blur_equals_depthwise_conv_with_121_kernel():
  channels = 5
  x = _normal(5, (2, 9, 7, channels))
  k1 = np.array([1.0, 2.0, 1.0], np.float32)
  k2 = np.outer(k1, k1) / 16.0
  kernel = np.tile(k2[:, :, None, None], (1, 1, 1, channels))  # HWIO with I = 1 per group
  ref = lax.conv_general_dilated(
    x,
    jnp.asarray(kernel),
    (1, 1),
    ((1, 1), (1, 1)),
    dimension_numbers=DIMS,
    feature_group_count=channels,
    precision=lax.Precision.HIGHEST,
  )
  out = layers.blur(x)
  assert out.shape == x.shape
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
  # Zero padding (not reflect / edge): a constant image loses mass at the border.
  ones = layers.blur(jnp.ones((1, 4, 4, 1)))
  assert float(ones[0, 0, 0, 0]) == pytest.approx(9 / 16)
  assert float(ones[0, 1, 1, 0]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- modules


def test_equal_dense_init_and_output_variance_is_he():
  fan_in, features = 256, 256
  layer = layers.EqualDense(features)
  params = layer.init(KEY(0), jnp.zeros((1, fan_in)))["params"]
  assert params["kernel"].shape == (fan_in, features)
  np.testing.assert_array_equal(params["bias"], np.zeros(features))
  assert float(jnp.std(params["kernel"])) == pytest.approx(1.0, rel=0.02)  # stored as N(0, 1)
  x = _normal(1, (4096, fan_in))
  y = layer.apply({"params": params}, x)
  np.testing.assert_allclose(
    y, x @ (params["kernel"] * math.sqrt(2 / fan_in)), rtol=1e-4, atol=1e-4
  )
  # Unit-variance input -> output variance 2 (He). The estimate averages 65,536 weights and
  # 4096 samples: its relative standard error is ~1%, so 6% is a > 5-sigma tolerance.
  assert float(jnp.var(y)) == pytest.approx(2.0, rel=0.06)
  # The bias initialiser constant is honoured and added unscaled.
  layer_b = layers.EqualDense(3, bias_init=0.5)
  pb = layer_b.init(KEY(1), jnp.zeros((1, 4)))["params"]
  np.testing.assert_array_equal(pb["bias"], np.full(3, 0.5))


def test_equal_conv_init_and_output_variance_is_he():
  cin, features = 32, 64
  layer = layers.EqualConv(features)
  params = layer.init(KEY(2), jnp.zeros((1, 8, 8, cin)))["params"]
  assert params["kernel"].shape == (3, 3, cin, features)
  np.testing.assert_array_equal(params["bias"], np.zeros(features))
  x = _normal(3, (16, 16, 16, cin))
  y = layer.apply({"params": params}, x)
  assert y.shape == (16, 16, 16, features)
  ref = _conv3x3(x, params["kernel"] * math.sqrt(2 / (cin * 9)))
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
  # Interior pixels only (zero padding lowers the variance at the border). Relative standard
  # error of the estimate ~1.5%; tolerance 8%.
  assert float(jnp.var(y[:, 1:-1, 1:-1])) == pytest.approx(2.0, rel=0.08)
  # 1x1 conv: fan_in = channels.
  layer1 = layers.EqualConv(4, kernel_size=1)
  p1 = layer1.init(KEY(4), jnp.zeros((1, 2, 2, 6)))["params"]
  x1 = _normal(5, (2, 3, 3, 6))
  np.testing.assert_allclose(
    layer1.apply({"params": p1}, x1),
    jnp.einsum("bhwi,io->bhwo", x1, p1["kernel"][0, 0]) * math.sqrt(2 / 6),
    rtol=1e-5,
    atol=1e-5,
  )


def test_fused_upsample_conv_equals_quarter_conv_of_nearest_upsample():
  cin, features = 5, 6
  layer = layers.FusedUpsampleConv(features)
  x = _normal(6, (2, 7, 6, cin))
  params = layer.init(KEY(3), x)["params"]
  assert params["kernel"].shape == (3, 3, cin, features)  # same parameters as the 3x3 conv
  params = {"kernel": params["kernel"], "bias": _normal(7, (features,))}
  out = layer.apply({"params": params}, x)
  assert out.shape == (2, 14, 12, features)
  kernel = params["kernel"] * math.sqrt(2 / (cin * 9))
  ref = _conv3x3(layers.upsample_nearest(x), kernel) / 4.0 + params["bias"]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  # The same through the EqualConv module with the same kernel (bias zero there).
  conv = layers.EqualConv(features).apply(
    {"params": {"kernel": params["kernel"], "bias": jnp.zeros(features)}},
    layers.upsample_nearest(x),
  )
  np.testing.assert_allclose(out, conv / 4.0 + params["bias"], rtol=1e-5, atol=1e-5)


def test_fused_downsample_conv_equals_avg_pool_of_conv():
  cin, features = 4, 3
  layer = layers.FusedDownsampleConv(features)
  x = _normal(8, (2, 12, 8, cin))
  params = layer.init(KEY(5), x)["params"]
  assert params["kernel"].shape == (3, 3, cin, features)
  params = {"kernel": params["kernel"], "bias": _normal(9, (features,))}
  out = layer.apply({"params": params}, x)
  assert out.shape == (2, 6, 4, features)
  kernel = params["kernel"] * math.sqrt(2 / (cin * 9))
  ref = layers.avg_pool2(_conv3x3(x, kernel)) + params["bias"]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  conv = layers.EqualConv(features).apply({"params": params}, x)
  np.testing.assert_allclose(out, layers.avg_pool2(conv), rtol=1e-5, atol=1e-5)


def test_noise_injection_per_channel_weight():
  layer = layers.NoiseInjection()
  x = _normal(10, (2, 4, 4, 3))
  noise = _normal(11, (2, 4, 4, 1))
  params = layer.init(KEY(0), x, noise)["params"]
  np.testing.assert_array_equal(params["weight"], np.zeros(3))  # init 0: no noise at start
  np.testing.assert_array_equal(layer.apply({"params": params}, x, noise), x)
  weight = jnp.array([0.5, -1.0, 2.0])
  out = layer.apply({"params": {"weight": weight}}, x, noise)
  np.testing.assert_allclose(out, x + weight * math.sqrt(2 / 3) * noise, rtol=1e-6, atol=1e-6)


def test_adain_matches_numpy():
  c, d = 4, 6
  layer = layers.AdaIN()
  x = _normal(12, (3, 5, 5, c)) * 2.0 + 1.0
  w = _normal(13, (3, d))
  params = layer.init(KEY(1), x, w)["params"]
  bias = np.asarray(params["style"]["bias"])
  np.testing.assert_array_equal(bias, np.concatenate([np.ones(c), np.zeros(c)]))  # gamma 1
  params = {"style": {"kernel": params["style"]["kernel"], "bias": _normal(14, (2 * c,))}}
  out = np.asarray(layer.apply({"params": params}, x, w))
  xn, wn = np.asarray(x, np.float64), np.asarray(w, np.float64)
  style = wn @ (np.asarray(params["style"]["kernel"], np.float64) * math.sqrt(2 / d))
  style = style + np.asarray(params["style"]["bias"])
  gamma, beta = style[:, None, None, :c], style[:, None, None, c:]
  mean = xn.mean(axis=(1, 2), keepdims=True)
  var = xn.var(axis=(1, 2), keepdims=True)
  ref = gamma * (xn - mean) / np.sqrt(var + 1e-5) + beta
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_constant_input_broadcasts_learned_constant():
  layer = layers.ConstantInput(6)
  params = layer.init(KEY(2), 1)["params"]
  assert params["const"].shape == (1, 4, 4, 6)
  out = layer.apply({"params": params}, 3)
  assert out.shape == (3, 4, 4, 6)
  for b in range(3):
    np.testing.assert_array_equal(out[b], params["const"][0])
