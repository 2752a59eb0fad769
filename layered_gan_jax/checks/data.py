"""The data a mode reads, checked cheaply before anything loads: the paths exist, the names and
options are valid, a tfds dataset is prepared. Imports no JAX.
"""

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import tfds_sources
from layered_gan_jax.errors import ConfigError, DataError


def validate_data(config, mode: str) -> None:
  """The data the mode reads: paths exist, names and options are valid (cheap checks only)."""
  checks = []
  if mode in ("train", "train_encoder", "pipeline"):
    checks.append(("data", config.data))
  if mode in ("evaluate", "pipeline"):
    where = (
      "eval.data"
      if config.eval.data.name or config.eval.data.get("sources")
      else "eval.data (unset: the training data's test split)"
    )
    checks.append((where, data_config.eval_data_config(config)))
  for where, data in checks:
    try:
      data_config.validate_data_config(data)
      if where.startswith("eval.data"):
        data_config.check_eval_data(data, where)
      for j, source in enumerate(data_config.data_sources(data)):
        try:
          tfds_sources.check_tfds_prepared(source.cfg)
        except DataError as e:
          if not data.get("sources"):
            raise
          raise DataError(f"sources[{j}] ({source.label}): {e}") from None
    except ValueError as e:
      if str(e).startswith("sources["):  # One source of several: say which field.
        text = f"{where}.{e}" if " " not in where else f"{where}: {e}"
        raise (DataError if isinstance(e, DataError) else ConfigError)(text) from None
      if isinstance(e, DataError):
        raise
      raise ConfigError(f"{where}: {e}") from None
