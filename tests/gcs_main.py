"""main.py as a user runs it, for the tests on the GCS server of tests/gcs_server.py, with two
stand-ins and one shortcut that the tests need:

* clu's event files go to the local folder ``$GCS_TEST_EVENTS/<bucket>/<path>`` instead of
  ``gs://<bucket>/<path>``: TensorFlow's GCS client, which writes them, cannot be pointed at
  the local server (docs/reliability.md says what this leaves unproven).
* with ``GCS_TEST_STAND_IN_FEATURES=1``, FID / KID use colour moments instead of the Inception
  network (the scores' numerics are tested in test_fid.py; here, the mode's files on a bucket).
* with ``GCS_TEST_NO_BACKOFF=1``, gcsfs retries a failed request without waiting in between
  (its own waits add up to about 30 s per request: minutes for a server that is gone).

  python -m tests.gcs_main --config=configs/tiny.py --workdir=gs://bucket/run --mode=train
"""

import os

import numpy as np
from absl import app

import main
from tests import gcs_server


class ColourMoments:
  """Stand-in features: the mean and mean square of each colour channel."""

  batch_size = 8

  def __call__(self, images):
    x = np.asarray(images, np.float64) / 255.0
    return np.concatenate([x.mean((1, 2)), (x**2).mean((1, 2))], axis=1)


class _NoBackoff:
  """``asyncio`` for gcsfs's retry loop, without the waits between its retries."""

  def __getattr__(self, name):
    import asyncio  # pylint: disable=g-import-not-at-top

    return getattr(asyncio, name)

  @staticmethod
  async def sleep(seconds):
    del seconds


if __name__ == "__main__":
  if os.environ.get("GCS_TEST_NO_BACKOFF") == "1":
    import gcsfs.retry  # pylint: disable=g-import-not-at-top

    gcsfs.retry.asyncio = _NoBackoff()
  gcs_server.write_events_locally()
  if os.environ.get("GCS_TEST_STAND_IN_FEATURES") == "1":
    from layered_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top

    fid.extractor_for = lambda path="": ColourMoments()
  app.run(main.main, flags_parser=main.parse_flags)
