"""Segmentation encoders: a ResNet-style CNN mapping an image to the frozen generator's inputs.

What the encoder predicts (``config.encoder.target``):
  * ``z``: one latent shared by every generator (mapped by the generator's mapping networks);
  * ``z_per_generator``: one latent per synthesis network ("encoders", plural, on the poster);
  * ``w``: one style per synthesis network (the mapping networks are bypassed);
  * ``w_plus``: one style per block and synthesis network.
Style predictions are offsets from the generator's mean style ``w_avg``.

With ``config.encoder.predict_placement`` the encoder also predicts where the foreground goes:
a translation (up to half the frame along each axis) and a scale (``exp(±0.5)`` at most) of the
foreground and its mask about the frame's centre, applied by differentiable resampling
(``recompose.place``) before compositing. Its head starts at zero, i.e. at the identity.
"""

from typing import Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from layered_gan_jax.nets import compositing, recompose
from layered_gan_jax.nets import generator as generator_lib

Array = jax.Array
PLACEMENT = "placement"  # The prediction key of the placement head: (dy, dx, log scale) raw.
MAX_LOG_SCALE = 0.5


class ResidualBlock(nn.Module):
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    groups = lambda c: max(1, min(8, c // 4))
    h = nn.relu(nn.GroupNorm(groups(x.shape[-1]))(x))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), (self.stride, self.stride), use_bias=False)(h)
    h = nn.Conv(self.features, (3, 3), (self.stride, self.stride), use_bias=False)(h)
    h = nn.relu(nn.GroupNorm(groups(self.features))(h))
    h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(h)
    return shortcut + h


class Encoder(nn.Module):
  """Pre-activation ResNet down to 4x4, then linear heads, one per predicted quantity."""

  target: str
  synthesis_names: Sequence[str]
  num_blocks: int  # Synthesis blocks of the generator stage (for w_plus).
  style_dim: int
  width: int = 64
  max_width: int = 512
  blocks_per_stage: int = 1
  predict_placement: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Dict[str, Array]:
    h = nn.Conv(self.width, (3, 3))(x)
    c = self.width
    while h.shape[1] > 4:
      c = min(2 * c, self.max_width)
      h = ResidualBlock(c, stride=2)(h)
      for _ in range(self.blocks_per_stage - 1):
        h = ResidualBlock(c)(h)
    h = nn.relu(nn.GroupNorm(max(1, min(8, c // 4)))(h)).reshape(h.shape[0], -1)
    h = nn.relu(nn.Dense(max(self.style_dim, c))(h))
    head = lambda n, name: nn.Dense(
      n, kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "truncated_normal"), name=name
    )
    d = self.style_dim
    if self.target == "z":
      out = {"shared": head(d, "z")(h)}
    elif self.target in ("z_per_generator", "w"):
      out = {n: head(d, f"{self.target}_{n}")(h) for n in self.synthesis_names}
    elif self.target == "w_plus":
      out = {
        n: head(d * self.num_blocks, f"w_plus_{n}")(h).reshape(-1, self.num_blocks, d)
        for n in self.synthesis_names
      }
    else:
      raise ValueError(f"unknown encoder target {self.target!r}")
    if self.predict_placement:
      out[PLACEMENT] = nn.Dense(3, kernel_init=nn.initializers.zeros, name=PLACEMENT)(h)
    return out


def build_encoder(config, generator: generator_lib.LayeredGenerator, stage: int) -> Encoder:
  e = config.encoder
  return Encoder(
    target=e.target,
    synthesis_names=generator.synthesis_names,
    num_blocks=stage + 1,
    style_dim=generator.style_dim,
    width=e.width,
    max_width=e.max_width,
    blocks_per_stage=e.blocks_per_stage,
    predict_placement=e.predict_placement,
  )


def predictions_to_styles(
  pred: Dict[str, Array], target: str, generator, g_params, w_avg: Dict[str, Array], stage: int
) -> Dict[str, object]:
  """Encoder output -> the ``styles`` argument of ``LayeredGenerator.synthesize``."""
  pred = {k: v for k, v in pred.items() if k != PLACEMENT}
  if target == "z":
    return generator.apply(
      {"params": g_params}, pred["shared"], method=generator_lib.LayeredGenerator.map
    )
  if target == "z_per_generator":
    return generator.apply({"params": g_params}, pred, method=generator_lib.LayeredGenerator.map)
  if target == "w":
    return {n: w_avg[n] + v for n, v in pred.items()}
  return {n: [w_avg[n] + v[:, i] for i in range(stage + 1)] for n, v in pred.items()}


def fixed_noise(mode: str, generator, batch: int, stage: int, seed: int = 0):
  """Generator noise held fixed while encoding: all zeros, or one seeded sample shared by every
  image (``mode='fixed'``)."""
  names = generator.synthesis_names
  if mode == "zero":
    return {n: [jnp.zeros(s) for s in generator_lib.noise_shapes(batch, stage)] for n in names}
  out = {}
  for i, n in enumerate(names):
    sample = generator_lib.sample_noise(jax.random.fold_in(jax.random.PRNGKey(seed), i), 1, stage)
    out[n] = [jnp.broadcast_to(v, (batch,) + v.shape[1:]) for v in sample]
  return out


def place_foreground(layers: Dict[str, Array], raw: Array) -> Dict[str, Array]:
  """Moves and scales the foreground and mask by the placement head's raw output [B, 3]:
  translation ``0.5 * tanh(raw[:, :2])`` of the frame, scale ``exp(0.5 * tanh(raw[:, 2]))``,
  about the frame's centre."""
  r = layers["mask"].shape[1]
  centre = jnp.full((raw.shape[0], 2), r / 2.0)
  placement = {
    "scale": jnp.exp(MAX_LOG_SCALE * jnp.tanh(raw[:, 2])),
    "flip": jnp.zeros(raw.shape[:1], bool),
    "source": centre,
    "target": centre + 0.5 * r * jnp.tanh(raw[:, :2]),
  }
  moved = recompose.place(jnp.concatenate([layers["foreground"], layers["mask"]], -1), placement)
  return dict(layers, foreground=moved[..., :3], mask=moved[..., 3:])


def make_decode_fn(gan, target: str, noise_mode: str, seed: int = 0):
  """``decode(pred, frozen) -> (layers, composite)``: the frozen generator on an encoder's
  predictions, without perturbation, with its noise held fixed (and the predicted placement
  applied, if any). ``frozen`` holds the EMA generator parameters (``'g'``) and the mean styles
  (``'w_avg'``); it is an argument, not a constant, so large generators are not baked into the
  compiled program."""
  generator, stage = gan.generator, gan.stage

  def decode(pred, frozen):
    styles = predictions_to_styles(pred, target, generator, frozen["g"], frozen["w_avg"], stage)
    batch = jax.tree.leaves(pred)[0].shape[0]
    noise = fixed_noise(noise_mode, generator, batch, stage, seed)
    layers = generator.apply(
      {"params": frozen["g"]},
      styles,
      stage=stage,
      alpha=gan.alpha,
      noise=noise,
      method=generator_lib.LayeredGenerator.synthesize,
    )
    if PLACEMENT in pred:
      layers = place_foreground(layers, pred[PLACEMENT])
    return layers, compositing.composite(layers["background"], layers["foreground"], layers["mask"])

  return decode


def make_reconstruct_fn(encoder: Encoder, gan, target: str, noise_mode: str, seed: int = 0):
  """``reconstruct(enc_params, frozen, images) -> (layers, composite)``: G(E(x)) decoded by
  :func:`make_decode_fn`."""
  decode = make_decode_fn(gan, target, noise_mode, seed)

  def reconstruct(enc_params, frozen, images):
    return decode(encoder.apply({"params": enc_params}, images), frozen)

  return reconstruct
