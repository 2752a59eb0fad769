"""Progressive StyleGAN-1 / ProGAN critic with fade-in and its 4x4 features.

Indexing mirrors the generator: ``from_rgb_i`` reads an image of resolution ``4 * 2**i`` into
``channels[i]`` features; ``block_i`` (i >= 1) maps ``channels[i] -> channels[i-1]`` and halves
the resolution; the final 4x4 part appends the minibatch standard deviation, then a 3x3 conv, a
4x4 conv and a dense layer to one score.
"""

from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from layered_gan_jax.nets import layers
from layered_gan_jax.nets.architecture import resolution_of

Dtype = Any
Array = jax.Array


class CriticBlock(nn.Module):
  """3x3 conv + LReLU, then downsample: blur, 3x3 conv, 2x2 average pool, LReLU (or the fused
  stride-2 conv in place of conv + pool at 128 px and above)."""

  features: int
  fused: bool = False
  dtype: Dtype = jnp.float32
  resampling: str = "efficient"  # architecture.RESAMPLING

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = layers.leaky_relu(layers.EqualConv(self.features, dtype=self.dtype, name="conv1")(x))
    x = layers.blur(x)
    if self.fused:
      x = layers.FusedDownsampleConv(self.features, dtype=self.dtype, name="conv2")(x)
    else:
      x = layers.EqualConv(
        self.features, downsample=True, resampling=self.resampling, dtype=self.dtype, name="conv2"
      )(x)
    return layers.leaky_relu(x)


class Critic(nn.Module):
  channels: Sequence[int]
  fused_resolution: int = 128
  dtype: Dtype = jnp.float32
  resampling: str = "efficient"  # architecture.RESAMPLING

  @property
  def max_stage(self) -> int:
    return len(self.channels) - 1

  def _from_rgb(self, stage: int, x: Array) -> Array:
    conv = layers.EqualConv(
      self.channels[stage], kernel_size=1, dtype=self.dtype, name=f"from_rgb_{stage}"
    )
    return layers.leaky_relu(conv(x.astype(self.dtype)))

  @nn.compact
  def __call__(
    self, x: Array, *, stage: int, alpha: Union[float, Array] = 1.0, return_features: bool = False
  ):
    """Scores images [B, R, R, 3] (R = 4 * 2**stage). With ``return_features`` returns
    ``(scores [B], features [B, 4, 4, channels[0]])``; features are the activations just
    before the minibatch-stddev layer."""
    if not 0 <= stage <= self.max_stage:
      raise ValueError(f"stage {stage} outside [0, {self.max_stage}]")
    if x.shape[1] != resolution_of(stage) or x.shape[2] != resolution_of(stage):
      raise ValueError(
        f"critic at stage {stage} expects {resolution_of(stage)} px images, got shape {x.shape}"
      )
    h = self._from_rgb(stage, x)
    for i in range(stage, 0, -1):
      h = CriticBlock(
        self.channels[i - 1],
        fused=resolution_of(i) >= self.fused_resolution,
        dtype=self.dtype,
        resampling=self.resampling,
        name=f"block_{i}",
      )(h)
      if i == stage:
        skip = self._from_rgb(stage - 1, layers.avg_pool2(x, self.resampling))
        h = (1.0 - alpha) * skip + alpha * h
    features = h
    h = layers.minibatch_stddev(h)
    c0 = self.channels[0]
    h = layers.leaky_relu(layers.EqualConv(c0, dtype=self.dtype, name="final_conv1")(h))
    h = layers.leaky_relu(
      layers.EqualConv(c0, kernel_size=4, padding="VALID", dtype=self.dtype, name="final_conv2")(h)
    )
    scores = layers.EqualDense(1, dtype=self.dtype, name="output")(h.reshape(h.shape[0], -1))
    out_dtype = jnp.promote_types(self.dtype, jnp.float32)  # bf16 -> f32; f64 stays f64
    scores = scores[:, 0].astype(out_dtype)
    if return_features:
      return scores, features.astype(out_dtype)
    return scores

  def init_all(self, batch: int = 2):
    """Runs every stage once (with a fade-in) so that every block and from_rgb has parameters."""
    for stage in range(self.max_stage + 1):
      r = resolution_of(stage)
      out = self(jnp.zeros((batch, r, r, 3), jnp.float32), stage=stage, alpha=0.5)
    return out


def init_critic(model: Critic, key: Array, batch: int = 2):
  return model.init(key, batch, method=Critic.init_all)["params"]
