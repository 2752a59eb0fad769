"""The model's named choices and stage arithmetic, importable without JAX: the config files
and the checks read them, the networks build from them.

Stages: stage ``s`` works at resolution ``4 * 2**s``.
"""

from typing import Dict

# Generator variants: two generators (background; foreground + mask), one generator with a
# seven-channel head, or two generators sharing one style and noise.
VARIANTS = ("two_generators", "single_generator", "shared_style")
# Reference widths (StyleGAN-1): 512 channels at 4..32 px, 256 at 64, 128 at 128, then 64, 32, 16.
REFERENCE_CHANNELS = (512, 512, 512, 512, 256, 128, 64, 32, 16)

# How the up- and down-sampling around convolutions is computed; both give the same function.
#   "efficient": nearest-x2-upsampling + 3x3 conv in the sub-pixel form (``upsample_conv3x3``),
#       3x3 conv + 2x2 average pooling as one matrix product (``conv3x3_avg_pool2``), pooling as
#       four strided slices: fewer FLOPs and faster XLA:CPU kernels at the reference widths
#       (docs/performance.md).
#   "direct": upsample, then conv; conv, then pool as a mean over a reshaped window: the
#       literal form.
# They differ only by float rounding, which is enough to change a GAN's training trajectory.
RESAMPLING = ("efficient", "direct")


def resolution_of(stage: int) -> int:
  return 4 * 2**stage


def stage_of(resolution: int) -> int:
  stage = int(resolution).bit_length() - 3
  if resolution < 4 or resolution_of(stage) != resolution:
    raise ValueError(f"resolution {resolution} is not a power of two >= 4")
  return stage


def parse_resolution_map(text: str, cast=float) -> Dict[int, float]:
  """'8:256,16:128' -> {8: 256, 16: 128}. Empty string -> {}."""
  out = {}
  for item in filter(None, (t.strip() for t in str(text).split(","))):
    try:
      res, value = item.split(":")
      out[int(res)] = cast(value)
    except ValueError as e:
      raise ValueError(f"cannot parse {item!r} in {text!r}: expected 'RES:VALUE,RES:VALUE'") from e
  return out
