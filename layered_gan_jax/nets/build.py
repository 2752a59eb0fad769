"""Builds the generator, the critic and the distilled segmenter's U-Net described by a config."""

import jax.numpy as jnp

from layered_gan_jax.nets.architecture import stage_of
from layered_gan_jax.nets.critic import Critic
from layered_gan_jax.nets.generator import LayeredGenerator
from layered_gan_jax.nets.unet import UNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_channels(config) -> tuple:
  """The channel list up to the final training resolution."""
  n = stage_of(config.train.resolution) + 1
  channels = tuple(int(c) for c in config.model.channels)
  if len(channels) < n:
    raise ValueError(
      f"model.channels has {len(channels)} entries (4 px .. "
      f"{4 * 2 ** (len(channels) - 1)} px) but train.resolution is "
      f"{config.train.resolution}; give one width per resolution"
    )
  return channels[:n]


def build_generator(config, dtype=None) -> LayeredGenerator:
  m = config.model
  return LayeredGenerator(
    channels=model_channels(config),
    variant=m.variant,
    style_dim=m.style_dim,
    mapping_layers=m.mapping_layers,
    fused_resolution=m.fused_resolution,
    mask_logit_offset=float(m.get("mask_logit_offset", 0.0)),
    head_init_std=float(m.get("head_init_std", 1.0)),
    resampling=m.get("resampling", "efficient"),
    dtype=DTYPES[dtype or m.dtype],
  )


def build_critic(config, dtype=None) -> Critic:
  return Critic(
    channels=model_channels(config),
    fused_resolution=config.model.fused_resolution,
    resampling=config.model.get("resampling", "efficient"),
    dtype=DTYPES[dtype or config.model.dtype],
  )


def build_unet(segmenter_config) -> UNet:
  return UNet(width=segmenter_config.width, levels=segmenter_config.levels)


def init_unet(model: UNet, resolution: int, key):
  return model.init(key, jnp.zeros((1, resolution, resolution, 3)))["params"]
