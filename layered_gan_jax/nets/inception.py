"""The FID network: the TensorFlow Inception-v3 graph of 2015-12-05 (as NVIDIA ported it for
StyleGAN2-ADA and StyleGAN3), up to its 2,048-d pool3 features, with its input preprocessing.

``features(params, images_uint8)`` takes uint8 images [N, H, W, 3] of any size: they are
resized to 299 x 299 with NVIDIA's bilinear resampling (``nv_bilinear``: sample ``j`` reads the
input at ``j * H / 299``, clamped at the border), mapped to the network's input range
``x / 128 - 1`` and fed to the network. Its weights come from
:mod:`layered_gan_jax.nets.inception_weights`; docs/fid.md says what was checked against the
reference network.
"""

from typing import Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURES = 2048
BN_EPSILON = 1e-3
INPUT_RANGE = (-1.0, 0.9921875)  # x / 128 - 1 for x in [0, 255].

Padding = Union[int, Tuple[int, int]]


class ConvBN(nn.Module):
  """Convolution without bias, inference batch norm without scale (beta only), ReLU."""

  features: int
  kernel: Tuple[int, int]
  stride: int = 1
  padding: Padding = 0

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel
    weight = self.param("weight", nn.initializers.zeros, (kh, kw, x.shape[-1], self.features))
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    ph, pw = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
    y = jax.lax.conv_general_dilated(
      x,
      weight,
      (self.stride, self.stride),
      ((ph, ph), (pw, pw)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    y = (y - mean) * jax.lax.rsqrt(var + BN_EPSILON) + beta
    return jax.nn.relu(y)


def max_pool(x, stride: int, padding: int = 0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((padding, padding),) * 2)


def avg_pool_same(x):
  """3 x 3, stride 1, zero padding 1, the padding left out of each mean."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    a = ConvBN(64, (1, 1), name="conv")(x)
    b = ConvBN(48, (1, 1), name="tower_conv")(x)
    b = ConvBN(64, (5, 5), padding=2, name="tower_conv_1")(b)
    c = ConvBN(64, (1, 1), name="tower_1_conv")(x)
    c = ConvBN(96, (3, 3), padding=1, name="tower_1_conv_1")(c)
    c = ConvBN(96, (3, 3), padding=1, name="tower_1_conv_2")(c)
    d = ConvBN(self.pool_features, (1, 1), name="tower_2_conv")(avg_pool_same(x))
    return jnp.concatenate([a, b, c, d], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, (3, 3), stride=2, name="conv")(x)
    b = ConvBN(64, (1, 1), name="tower_conv")(x)
    b = ConvBN(96, (3, 3), padding=1, name="tower_conv_1")(b)
    b = ConvBN(96, (3, 3), stride=2, name="tower_conv_2")(b)
    return jnp.concatenate([a, b, max_pool(x, 2)], axis=-1)


class InceptionC(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    w = self.width
    a = ConvBN(192, (1, 1), name="conv")(x)
    b = ConvBN(w, (1, 1), name="tower_conv")(x)
    b = ConvBN(w, (1, 7), padding=(0, 3), name="tower_conv_1")(b)
    b = ConvBN(192, (7, 1), padding=(3, 0), name="tower_conv_2")(b)
    c = ConvBN(w, (1, 1), name="tower_1_conv")(x)
    c = ConvBN(w, (7, 1), padding=(3, 0), name="tower_1_conv_1")(c)
    c = ConvBN(w, (1, 7), padding=(0, 3), name="tower_1_conv_2")(c)
    c = ConvBN(w, (7, 1), padding=(3, 0), name="tower_1_conv_3")(c)
    c = ConvBN(192, (1, 7), padding=(0, 3), name="tower_1_conv_4")(c)
    d = ConvBN(192, (1, 1), name="tower_2_conv")(avg_pool_same(x))
    return jnp.concatenate([a, b, c, d], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = ConvBN(192, (1, 1), name="tower_conv")(x)
    a = ConvBN(320, (3, 3), stride=2, name="tower_conv_1")(a)
    b = ConvBN(192, (1, 1), name="tower_1_conv")(x)
    b = ConvBN(192, (1, 7), padding=(0, 3), name="tower_1_conv_1")(b)
    b = ConvBN(192, (7, 1), padding=(3, 0), name="tower_1_conv_2")(b)
    b = ConvBN(192, (3, 3), stride=2, name="tower_1_conv_3")(b)
    return jnp.concatenate([a, b, max_pool(x, 2)], axis=-1)


class InceptionE(nn.Module):
  max_pool_tower: bool  # The last block pools its fourth tower by max, the one before by mean.

  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, (1, 1), name="tower_conv")(x)
    b = ConvBN(448, (1, 1), name="tower_1_conv")(x)
    b = ConvBN(384, (3, 3), padding=1, name="tower_1_conv_1")(b)
    pooled = max_pool(x, 1, 1) if self.max_pool_tower else avg_pool_same(x)
    return jnp.concatenate(
      [
        ConvBN(320, (1, 1), name="conv")(x),
        ConvBN(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(a),
        ConvBN(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(a),
        ConvBN(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(b),
        ConvBN(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(b),
        ConvBN(192, (1, 1), name="tower_2_conv")(pooled),
      ],
      axis=-1,
    )


class InceptionV3(nn.Module):
  """[N, 299, 299, 3] in the input range -> pool3 features [N, 2048]."""

  @nn.compact
  def __call__(self, x):
    x = ConvBN(32, (3, 3), stride=2, name="conv")(x)
    x = ConvBN(32, (3, 3), name="conv_1")(x)
    x = ConvBN(64, (3, 3), padding=1, name="conv_2")(x)
    x = max_pool(x, 2)
    x = ConvBN(80, (1, 1), name="conv_3")(x)
    x = ConvBN(192, (3, 3), name="conv_4")(x)
    x = max_pool(x, 2)
    for i, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, name="mixed" if i == 0 else f"mixed_{i}")(x)
    x = InceptionB(name="mixed_3")(x)
    for i, width in enumerate((128, 160, 160, 192)):
      x = InceptionC(width, name=f"mixed_{4 + i}")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE(False, name="mixed_9")(x)
    x = InceptionE(True, name="mixed_10")(x)
    return jnp.mean(x, axis=(1, 2))  # The 8 x 8 average pool of a 299 px input.


def resize_matrix(size_in: int, size_out: int = INPUT_SIZE) -> np.ndarray:
  """[size_out, size_in] weights of ``nv_bilinear`` along one axis: output sample ``j`` is the
  linear interpolation at input position ``j * size_in / size_out``, clamped to the last
  pixel (``affine_grid`` + ``grid_sample``, bilinear, border padding, align_corners=False)."""
  pos = np.arange(size_out, dtype=np.float64) * size_in / size_out
  lo = np.floor(pos).astype(np.int64)
  frac = pos - lo
  m = np.zeros((size_out, size_in), np.float64)
  for j in range(size_out):
    m[j, min(lo[j], size_in - 1)] += 1.0 - frac[j]
    m[j, min(lo[j] + 1, size_in - 1)] += frac[j]
  return m.astype(np.float32)


def preprocess(images_uint8) -> jnp.ndarray:
  """uint8 [N, H, W, 3] -> float32 [N, 299, 299, 3] in the network's input range."""
  x = jnp.asarray(images_uint8, jnp.float32)
  h, w = x.shape[1:3]
  if (h, w) != (INPUT_SIZE, INPUT_SIZE):
    rows, cols = jnp.asarray(resize_matrix(h)), jnp.asarray(resize_matrix(w))
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("ih,nhwc->niwc", rows, x, precision=hp)
    x = jnp.einsum("jw,niwc->nijc", cols, x, precision=hp)
  x = jnp.clip(x / 255.0, 0.0, 1.0)
  lo, hi = INPUT_RANGE
  return jnp.clip(x * (hi - lo) + lo, lo, hi)


def features(params, images_uint8) -> jnp.ndarray:
  """Pool3 features [N, 2048] of uint8 images [N, H, W, 3] (jit it, or use ``fid``'s)."""
  return InceptionV3().apply({"params": params}, preprocess(images_uint8))


def parameter_shapes() -> Sequence:
  """The parameter tree's shapes, without weights (for checking a converted file)."""
  return jax.eval_shape(
    lambda: InceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))[
      "params"
    ]
  )
