"""StyleGAN-1 building blocks as Flax linen modules and pure functions (NHWC layout).

Equalized learning rate: every weight is stored as N(0, 1) and multiplied at run time by
``sqrt(2 / fan_in)``; biases are stored unscaled and start at 0 (or a given constant). Parameters
are kept in float32; ``dtype`` sets the computation dtype (bfloat16 for mixed precision).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any
LRELU_SLOPE = 0.2
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, padding="SAME") -> jax.Array:
  """Stride-1 NHWC / HWIO convolution."""
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_CONV_DIMS)


def he_scale(fan_in: int) -> float:
  """The equalized-learning-rate multiplier ``sqrt(2 / fan_in)``."""
  return math.sqrt(2.0 / fan_in)


def leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, LRELU_SLOPE)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """``x / sqrt(mean(x^2) + eps)`` over the feature axis."""
  return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def blur(x: jax.Array) -> jax.Array:
  """Depthwise [1,2,1] x [1,2,1] / 16 filter with zero padding 1, done as two separable passes.

  Written with shifted slices instead of a grouped convolution: it is cheap, exact, and
  differentiable to any order.
  """
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  v = (p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]) * 0.25
  return (v[:, :, :-2] + 2.0 * v[:, :, 1:-1] + v[:, :, 2:]) * 0.25


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
  return x.reshape(b, h * factor, w * factor, c)


# The resampling forms ("efficient", "direct"): architecture.RESAMPLING.


def avg_pool2(x: jax.Array, resampling: str = "efficient") -> jax.Array:
  """2x2 average pooling, stride 2.

  "efficient": the sum of four strided slices, an elementwise fusion. As a reduction over a
  reshaped window axis ("direct"), XLA:CPU's YNNPACK path fused it into the preceding
  convolution and ran that ~35 % slower (32 px, 512 channels, batch 16).
  """
  if resampling == "direct":
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25


RESAMPLING_MIN_SIZE = 8


def _phase_taps(k: jax.Array, axis: int) -> jax.Array:
  """Along a size-3 kernel axis, the 2-tap kernels of the two output phases of
  ``conv3x3(upsample_nearest(x))``: output pixel 2i takes ``k0 x[i-1] + (k1 + k2) x[i]``, pixel
  2i+1 takes ``(k0 + k1) x[i] + k2 x[i+1]``. Returns ``[phase, tap, ...]`` with ``axis``
  removed."""
  k0, k1, k2 = (jnp.take(k, i, axis=axis) for i in range(3))
  return jnp.stack([jnp.stack([k0, k1 + k2]), jnp.stack([k0 + k1, k2])])


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``conv3x3(upsample_nearest(x))`` (zero padding 1) computed at the input resolution.

  The sub-pixel form: each of the four output phases (even / odd row and column) is a 2x2 conv
  of ``x``, with taps that are sums of the 3x3 kernel's taps. The four phases run as one 2x2
  conv with 4x the output channels, then interleave. It is the same linear map (equal up to
  float rounding; the tests check values and gradients against the direct form) with
  ``16 (h+1)^2`` instead of ``36 h^2`` multiply-adds per input/output channel pair, ~0.5x at
  h = 16 and no upsampled input tensor.

  Inputs smaller than ``RESAMPLING_MIN_SIZE`` use the direct form: there the fixed costs (the
  phase kernels, the interleave) outweigh the saved multiply-adds (docs/performance.md).
  """
  b, h, w, _ = x.shape
  if min(h, w) < RESAMPLING_MIN_SIZE:
    return _conv(upsample_nearest(x), kernel)
  cout = kernel.shape[-1]
  k = _phase_taps(_phase_taps(kernel, 1), 2)  # [p, t, q, s, cin, cout]
  # -> [t, s, cin, p, q, cout]: a 2x2 kernel with 4 * cout outputs, phase-major.
  k = k.transpose(1, 3, 4, 0, 2, 5).reshape(2, 2, kernel.shape[2], 4 * cout)
  # Explicit padding + VALID: with the padding inside the conv, XLA:CPU turned its weight
  # gradient into a reversed-kernel convolution that ran 100-300x slower.
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = _conv(xp, k, "VALID")
  z = z.reshape(b, h + 1, w + 1, 2, 2, cout)  # z[:, r, s, p, q] = phase (p, q) at (r-p, s-q)
  rows = [jnp.stack([z[:, p : p + h, q : q + w, p, q] for q in (0, 1)], axis=3) for p in (0, 1)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, cout)


def conv3x3_avg_pool2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``avg_pool2(conv3x3(x))`` (zero padding 1) computed at the output resolution.

  It is the stride-2 4x4 conv with the average of the four shifted 3x3 kernels (what
  ``FusedDownsampleConv`` computes), done as one matrix product: the zero-padded input is
  rearranged into 2x2 blocks (space-to-depth), four neighbouring blocks form a patch of 16
  pixels, and the patches multiply the 4x4 kernel reshaped to ``[16 * cin, cout]``. That is
  ``16 (h/2)^2`` instead of ``9 h^2`` multiply-adds per channel pair (0.44x), and, unlike a
  strided convolution, its gradients and the gradient penalty's second derivatives stay
  matrix products: XLA:CPU ran the second derivative of the strided conv ~50x slower.

  Inputs smaller than ``RESAMPLING_MIN_SIZE`` use the direct form (timings per size:
  docs/performance.md).
  """
  b, h, w, c = x.shape
  if min(h, w) < RESAMPLING_MIN_SIZE:
    return avg_pool2(_conv(x, kernel))
  cout = kernel.shape[-1]
  k4 = _sum_of_shifts(kernel) * 0.25  # y[i, j] = sum_{a, b} k4[a, b] . xp[2i + a, 2j + b]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  hb, wb = h // 2 + 1, w // 2 + 1
  # z[:, r, s, (p, q, c)] = xp[:, 2r + p, 2s + q, c]
  z = xp.reshape(b, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hb, wb, 4 * c)
  patches = jnp.concatenate(
    [z[:, u : u + h // 2, v : v + w // 2] for u in (0, 1) for v in (0, 1)], axis=-1
  )  # channel order (u, v, p, q, c), with a = 2u + p, b = 2v + q
  k = k4.reshape(2, 2, 2, 2, c, cout).transpose(0, 2, 1, 3, 4, 5).reshape(16 * c, cout)
  return jnp.dot(patches, k)


def _sum_of_shifts(kernel: jax.Array) -> jax.Array:
  """(k, k, I, O) -> (k+1, k+1, I, O): the sum of the four one-pixel shifts of the kernel."""
  k = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
  return k[1:, 1:] + k[:-1, 1:] + k[1:, :-1] + k[:-1, :-1]


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Per-sample, per-channel normalisation over H and W (biased variance), no affine part."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  centered = x - mean
  var = jnp.mean(jnp.square(centered), axis=(1, 2), keepdims=True)
  return centered * lax.rsqrt(var + eps)


def minibatch_stddev(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Appends one channel holding the mean over features of the batch standard deviation.

  The statistic is a single scalar over the whole (global) batch, as in the reference critic.
  """
  stat_dtype = jnp.promote_types(x.dtype, jnp.float32)  # at least float32; float64 stays float64
  std = jnp.sqrt(jnp.var(x.astype(stat_dtype), axis=0) + eps)
  stat = jnp.mean(std).astype(x.dtype)
  return jnp.concatenate([x, jnp.full(x.shape[:-1] + (1,), stat, x.dtype)], axis=-1)


class EqualDense(nn.Module):
  """Dense layer with equalized learning rate."""

  features: int
  bias_init: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
    scale = he_scale(x.shape[-1])
    y = jnp.dot(x.astype(self.dtype), (kernel * scale).astype(self.dtype))
    return y + bias.astype(self.dtype)


class EqualConv(nn.Module):
  """2-D convolution with equalized learning rate (stride 1)."""

  features: int
  kernel_size: int = 3
  padding: str = "SAME"
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_std: float = 1.0  # Std of the stored kernel at init (1 = equalized-lr reference).
  # Nearest x2 upsampling of the input first (3x3 SAME only). With resampling="efficient" it is
  # computed without the upsampled input (``upsample_conv3x3``). Same parameters either way.
  upsample: bool = False
  # 2x2 average pooling of the output (3x3 SAME only). With resampling="efficient" it is
  # computed at the output resolution (``conv3x3_avg_pool2``). Same parameters either way.
  downsample: bool = False
  resampling: str = "efficient"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(self.init_std), (k, k, cin, self.features))
    scale = he_scale(cin * k * k)
    if (self.upsample or self.downsample) and (k != 3 or self.padding != "SAME"):
      raise ValueError(
        "EqualConv(upsample=True) or (downsample=True) supports only kernel_size=3, padding='SAME'"
      )
    if self.upsample and self.downsample:
      raise ValueError("EqualConv: upsample and downsample are exclusive")
    x, kernel = x.astype(self.dtype), (kernel * scale).astype(self.dtype)
    pool_after_bias = self.downsample and self.resampling == "direct"
    if self.downsample and not pool_after_bias:
      y = conv3x3_avg_pool2(x, kernel)
    elif self.upsample and self.resampling != "direct":
      y = upsample_conv3x3(x, kernel)
    else:
      y = _conv(upsample_nearest(x) if self.upsample else x, kernel, self.padding)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,))
      y = y + bias.astype(self.dtype)
    if pool_after_bias:  # The literal order: conv, bias, pool.
      y = avg_pool2(y, "direct")
    return y


class FusedUpsampleConv(nn.Module):
  """x2 upsampling fused with a 3x3 conv: a stride-2 transposed conv whose 4x4 kernel is the
  average of the four shifted 3x3 kernels.

  It equals ``conv3x3(upsample_nearest(x)) / 4`` exactly (zero padding), which the tests check.
  The parameter count equals that of the 3x3 conv it replaces.
  """

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _fused_conv(self, x, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2))


class FusedDownsampleConv(nn.Module):
  """A 3x3 conv fused with 2x2 average pooling: a stride-2 conv whose 4x4 kernel is the average
  of the four shifted 3x3 kernels. Equals ``avg_pool2(conv3x3(x))`` exactly (zero padding)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _fused_conv(self, x, (2, 2), ((1, 1), (1, 1)))


def _fused_conv(module: nn.Module, x: jax.Array, strides, padding, **kwargs) -> jax.Array:
  """A fused up/down-sampling conv of ``module`` (its ``features`` and ``dtype``): parameters of
  a 3x3 equalized-lr kernel (stored, so the count equals the plain conv's) and a bias, applied
  as the 4x4 average-of-shifts kernel."""
  cin = x.shape[-1]
  kernel = module.param("kernel", nn.initializers.normal(1.0), (3, 3, cin, module.features))
  bias = module.param("bias", nn.initializers.zeros, (module.features,))
  fused = _sum_of_shifts(kernel * he_scale(cin * 9)) * 0.25
  y = lax.conv_general_dilated(
    x.astype(module.dtype),
    fused.astype(module.dtype),
    strides,
    padding,
    dimension_numbers=_CONV_DIMS,
    **kwargs,
  )
  return y + bias.astype(module.dtype)


class NoiseInjection(nn.Module):
  """``x + weight * noise`` with one weight per channel (equalized lr, fan_in = channels, init 0).

  ``noise`` has shape [B, H, W, 1] and is broadcast over channels.
  """

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, noise: jax.Array) -> jax.Array:
    c = x.shape[-1]
    weight = self.param("weight", nn.initializers.zeros, (c,))
    return x + (weight * he_scale(c)).astype(self.dtype) * noise.astype(self.dtype)


class AdaIN(nn.Module):
  """Adaptive instance norm: instance-normalise, then ``gamma * x + beta`` from a style vector."""

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    c = x.shape[-1]
    style = EqualDenseAffine(c, dtype=self.dtype, name="style")(w)
    gamma, beta = style[:, None, None, :c], style[:, None, None, c:]
    x = instance_norm(x.astype(jnp.float32)).astype(self.dtype)
    return gamma * x + beta


class EqualDenseAffine(nn.Module):
  """The AdaIN style projection: EqualDense to 2C with the gamma half of the bias starting at 1."""

  channels: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, w: jax.Array) -> jax.Array:
    c = self.channels

    def bias_init(key, shape, dtype=jnp.float32):
      del key
      return jnp.concatenate([jnp.ones((c,), dtype), jnp.zeros((shape[0] - c,), dtype)])

    kernel = self.param("kernel", nn.initializers.normal(1.0), (w.shape[-1], 2 * c))
    bias = self.param("bias", bias_init, (2 * c,))
    y = jnp.dot(w.astype(self.dtype), (kernel * he_scale(w.shape[-1])).astype(self.dtype))
    return y + bias.astype(self.dtype)


class ConstantInput(nn.Module):
  """The learned 4x4 constant that starts the synthesis network."""

  channels: int
  size: int = 4

  @nn.compact
  def __call__(self, batch: int, dtype: Dtype = jnp.float32) -> jax.Array:
    const = self.param(
      "const", nn.initializers.normal(1.0), (1, self.size, self.size, self.channels)
    )
    return jnp.broadcast_to(const.astype(dtype), (batch,) + const.shape[1:])
