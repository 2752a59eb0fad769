"""StyleGAN-1 mapping and synthesis networks, and the layered generator variants.

Stages: stage ``s`` works at resolution ``4 * 2**s``. The stage is a static Python int (one
compile per stage); the fade-in ``alpha`` and the style-mixing crossover are traced.

Every module keeps the parameters of all stages up to ``len(channels) - 1``; call
``init_all`` (see :func:`init_generator`) so the heads of every stage exist from the start.
"""

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from layered_gan_jax.nets import layers
from layered_gan_jax.nets.architecture import REFERENCE_CHANNELS, VARIANTS, resolution_of

Dtype = Any
Array = jax.Array


class MappingNetwork(nn.Module):
  """PixelNorm, then ``num_layers`` x (EqualDense, LeakyReLU 0.2)."""

  style_dim: int = 512
  num_layers: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: Array) -> Array:
    x = layers.pixel_norm(z.astype(jnp.float32))
    for i in range(self.num_layers):
      x = layers.leaky_relu(
        layers.EqualDense(self.style_dim, dtype=self.dtype, name=f"dense_{i}")(x)
      )
    return x.astype(jnp.float32)


class SynthesisBlock(nn.Module):
  """``conv1 -> noise -> LReLU -> AdaIN -> conv2 -> noise -> LReLU -> AdaIN``.

  Block 0 starts from the learned constant; later blocks upsample x2 first (nearest + 3x3 conv
  + blur, or the fused transposed conv + blur). One noise map feeds both noise injections.
  """

  features: int
  initial: bool = False
  fused: bool = False
  dtype: Dtype = jnp.float32
  resampling: str = "efficient"  # architecture.RESAMPLING

  @nn.compact
  def __call__(self, x: Optional[Array], w: Array, noise: Array) -> Array:
    if self.initial:
      x = layers.ConstantInput(self.features, name="const")(w.shape[0], self.dtype)
    elif self.fused:
      x = layers.blur(layers.FusedUpsampleConv(self.features, dtype=self.dtype, name="conv1")(x))
    else:
      x = layers.blur(
        layers.EqualConv(
          self.features, upsample=True, resampling=self.resampling, dtype=self.dtype, name="conv1"
        )(x)
      )
    x = layers.NoiseInjection(dtype=self.dtype, name="noise1")(x, noise)
    x = layers.AdaIN(dtype=self.dtype, name="adain1")(layers.leaky_relu(x), w)
    x = layers.EqualConv(self.features, dtype=self.dtype, name="conv2")(x)
    x = layers.NoiseInjection(dtype=self.dtype, name="noise2")(x, noise)
    return layers.AdaIN(dtype=self.dtype, name="adain2")(layers.leaky_relu(x), w)


class SynthesisNetwork(nn.Module):
  """Progressive StyleGAN-1 synthesis network with one linear 1x1 output head per stage."""

  channels: Sequence[int]
  out_channels: int
  fused_resolution: int = 128
  dtype: Dtype = jnp.float32
  head_init_std: float = 1.0
  resampling: str = "efficient"  # architecture.RESAMPLING

  @property
  def max_stage(self) -> int:
    return len(self.channels) - 1

  @nn.compact
  def __call__(
    self,
    styles: Sequence[Array],
    noise: Sequence[Array],
    *,
    stage: int,
    alpha: Union[float, Array] = 1.0,
  ) -> Array:
    """Runs blocks 0..stage. ``styles[i]``/``noise[i]`` feed block i. Returns [B, R, R, out]."""
    if not 0 <= stage <= self.max_stage:
      raise ValueError(f"stage {stage} outside [0, {self.max_stage}]")
    x, prev = None, None
    for i in range(stage + 1):
      prev = x
      x = SynthesisBlock(
        self.channels[i],
        initial=i == 0,
        fused=i > 0 and resolution_of(i) >= self.fused_resolution,
        dtype=self.dtype,
        resampling=self.resampling,
        name=f"block_{i}",
      )(x, styles[i], noise[i])
    out = self._head(stage, x)
    if stage > 0:
      skip = layers.upsample_nearest(self._head(stage - 1, prev))
      out = (1.0 - alpha) * skip + alpha * out
    return out

  def _head(self, stage: int, x: Array) -> Array:
    head = layers.EqualConv(
      self.out_channels,
      kernel_size=1,
      dtype=self.dtype,
      init_std=self.head_init_std,
      name=f"head_{stage}",
    )
    return head(x).astype(jnp.float32)


def truncate(w: Array, w_avg: Array, psi: float) -> Array:
  """The truncation trick: ``w_avg + psi * (w - w_avg)``."""
  return w_avg + psi * (w - w_avg)


def noise_shapes(batch: int, stage: int):
  return [(batch, resolution_of(i), resolution_of(i), 1) for i in range(stage + 1)]


def sample_noise(key: Array, batch: int, stage: int) -> list:
  """One standard-normal noise map per block, [B, R_i, R_i, 1]."""
  keys = jax.random.split(key, stage + 1)
  return [jax.random.normal(k, s) for k, s in zip(keys, noise_shapes(batch, stage))]


class LayeredGenerator(nn.Module):
  """Background + foreground + mask generator.

  Variants:
    * ``two_generators``: a background StyleGAN (3 channels) and an object StyleGAN (3 fg + 1
      mask logit), each with its own mapping network, both fed the same z; each samples its own
      noise and its own style-mixing crossover.
    * ``single_generator``: one StyleGAN with a 7-channel head (bg, fg, mask logit).
    * ``shared_style``: one mapping network feeding both synthesis networks, shared noise.

  Output: dict with ``background`` [B,R,R,3], ``foreground`` [B,R,R,3], ``mask_logit`` and
  ``mask`` [B,R,R,1] (mask = sigmoid(logit), computed after the fade-in blend of the logit).

  ``mask_logit_offset`` (not in the paper; 0 = off) is a constant added to the mask logit: a
  negative value starts training with a nearly empty mask, so that the background generator
  first models whole images and the object layer has to grow from the mask losses.
  ``head_init_std`` (not in the paper; 1 = reference) is the init std of the stored 1x1 output
  head kernels: below 1, the layers start closer to the data's contrast.
  """

  channels: Sequence[int] = REFERENCE_CHANNELS
  variant: str = "two_generators"
  style_dim: int = 512
  mapping_layers: int = 8
  fused_resolution: int = 128
  dtype: Dtype = jnp.float32
  mask_logit_offset: float = 0.0
  head_init_std: float = 1.0
  resampling: str = "efficient"  # architecture.RESAMPLING

  def setup(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"unknown generator variant {self.variant!r}; choose one of {VARIANTS}")
    mapping = lambda: MappingNetwork(self.style_dim, self.mapping_layers, self.dtype)
    synth = lambda out: SynthesisNetwork(
      tuple(self.channels),
      out,
      self.fused_resolution,
      self.dtype,
      self.head_init_std,
      self.resampling,
    )
    if self.variant == "two_generators":
      self.background_mapping = mapping()
      self.object_mapping = mapping()
    elif self.variant == "shared_style":
      self.shared_mapping = mapping()
    else:
      self.mapping = mapping()
    if self.variant == "single_generator":
      self.synthesis = synth(7)
    else:
      self.background_synthesis = synth(3)
      self.object_synthesis = synth(4)

  def _mapping(self, name: str) -> MappingNetwork:
    if self.variant == "two_generators":
      return getattr(self, f"{name}_mapping")
    return self.shared_mapping if self.variant == "shared_style" else self.mapping

  def _synthesis(self, name: str) -> SynthesisNetwork:
    return self.synthesis if name == "single" else getattr(self, f"{name}_synthesis")

  @property
  def max_stage(self) -> int:
    return len(self.channels) - 1

  @property
  def synthesis_names(self) -> tuple:
    return ("single",) if self.variant == "single_generator" else ("background", "object")

  @property
  def mixing_groups(self) -> tuple:
    """Names of the synthesis networks that draw their own style-mixing crossover."""
    return ("background",) if self.variant == "shared_style" else self.synthesis_names

  def map(self, z: Union[Array, Mapping[str, Array]]) -> Dict[str, Array]:
    """Latent(s) -> w per synthesis network. ``z`` is one array (shared by all) or a dict."""
    zs = z if isinstance(z, Mapping) else {n: z for n in self.synthesis_names}
    return {n: self._mapping(n)(zs[n]) for n in self.synthesis_names}

  def synthesize(
    self,
    styles: Mapping[str, Any],
    *,
    stage: int,
    alpha=1.0,
    noise: Optional[Mapping[str, Sequence[Array]]] = None,
  ) -> Dict[str, Array]:
    """Per-network styles -> layers. ``styles[name]`` is [B, D] (same for every block) or a
    per-block sequence of [B, D]. ``noise[name]`` is a per-block list of [B, R, R, 1]; when
    ``None`` it is drawn from the ``noise`` RNG stream (shared in the shared-style variant)."""
    styles = {
      n: (s if isinstance(s, (list, tuple)) else [s] * (stage + 1)) for n, s in styles.items()
    }
    batch = styles[self.synthesis_names[0]][0].shape[0]
    if noise is None:
      noise = self.draw_noise(batch, stage)
    outs = {
      n: self._synthesis(n)(styles[n], noise[n], stage=stage, alpha=alpha)
      for n in self.synthesis_names
    }
    if self.variant == "single_generator":
      out = outs["single"]
      bg, fg, logit = out[..., :3], out[..., 3:6], out[..., 6:7]
    else:
      bg, fg, logit = outs["background"], outs["object"][..., :3], outs["object"][..., 3:4]
    if self.mask_logit_offset:
      logit = logit + self.mask_logit_offset
    return {"background": bg, "foreground": fg, "mask_logit": logit, "mask": jax.nn.sigmoid(logit)}

  def draw_noise(self, batch: int, stage: int) -> Dict[str, list]:
    """Per-network noise maps from the ``noise`` RNG stream, as ``synthesize`` draws them when
    none are given (one draw shared by both networks in the shared-style variant)."""
    if self.variant == "shared_style":
      shared = sample_noise(self.make_rng("noise"), batch, stage)
      return {n: shared for n in self.synthesis_names}
    return {n: sample_noise(self.make_rng("noise"), batch, stage) for n in self.synthesis_names}

  def __call__(
    self,
    z,
    *,
    stage: int,
    alpha=1.0,
    z2=None,
    crossover: Optional[Mapping[str, Array]] = None,
    noise=None,
    truncation: Optional[float] = None,
    w_avg: Optional[Mapping[str, Array]] = None,
  ) -> Dict[str, Array]:
    """z -> layers, with optional style mixing and truncation.

    Style mixing: with ``z2`` given, blocks ``i <= crossover[group]`` use the style of ``z``,
    later blocks the style of ``z2``; ``crossover`` is a traced int per mixing group
    (``mixing_groups``). ``crossover >= stage`` means no mixing.
    """
    w = self.map(z)
    if truncation is not None:
      if w_avg is None:
        raise ValueError("truncation needs w_avg (see generator.mean_styles)")
      w = {n: truncate(v, w_avg[n], truncation) for n, v in w.items()}
    styles = dict(w)
    if z2 is not None:
      if crossover is None:
        raise ValueError("style mixing with z2 needs a crossover index per mixing group")
      w2 = self.map(z2)
      if truncation is not None:
        w2 = {n: truncate(v, w_avg[n], truncation) for n, v in w2.items()}
      group = lambda n: "background" if self.variant == "shared_style" else n
      styles = {
        n: [jnp.where(i <= crossover[group(n)], w[n], w2[n]) for i in range(stage + 1)]
        for n in self.synthesis_names
      }
    return self.synthesize(styles, stage=stage, alpha=alpha, noise=noise)

  def init_all(self, z: Array):
    """Runs every stage once (with a fade-in) so that every block and head has parameters."""
    for stage in range(self.max_stage + 1):
      out = self(z, stage=stage, alpha=0.5)
    return out


def init_generator(model: LayeredGenerator, key: Array, batch: int = 2):
  """Initialises the parameters of every stage. Returns the ``params`` collection."""
  pkey, nkey = jax.random.split(key)
  z = jnp.zeros((batch, model.style_dim), jnp.float32)
  variables = model.init({"params": pkey, "noise": nkey}, z, method=LayeredGenerator.init_all)
  return variables["params"]


def mean_styles(model: LayeredGenerator, params, key: Array, num: int = 4096) -> Dict[str, Array]:
  """w_avg per synthesis network: the mean of the mapping network output over ``num`` latents."""
  z = jax.random.normal(key, (num, model.style_dim))
  w = model.apply({"params": params}, z, method=LayeredGenerator.map)
  return {n: jnp.mean(v, axis=0) for n, v in w.items()}
