"""XLA:CPU kernel selection (layered_gan_jax/runtime.py): flags, precedence, and same numbers."""

import json
import os
import subprocess
import sys

import pytest

from layered_gan_jax import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flags_added_only_for_ynn_and_environment_wins(monkeypatch):
  monkeypatch.setattr(runtime, "_backends_initialized", lambda: False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  assert runtime.configure_xla_cpu("xla") == []
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
  added = runtime.configure_xla_cpu("ynn")
  assert sorted(added) == sorted(f"{k}={v}" for k, v in runtime.YNN_FLAGS.items())
  assert os.environ["XLA_FLAGS"].split() == (["--xla_force_host_platform_device_count=2"] + added)
  assert runtime.configure_xla_cpu("ynn") == []  # Idempotent.
  # A value the user chose is kept.
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")
  assert runtime.configure_xla_cpu("ynn") == [
    "--xla_cpu_enable_concurrency_optimized_scheduler=true"
  ]
  assert "--xla_cpu_experimental_ynn_fusion_type=dot " in os.environ["XLA_FLAGS"] + " "


def test_bad_choice_and_late_call(monkeypatch):
  with pytest.raises(ValueError, match="xla_cpu_kernels='mkl'"):
    runtime.configure_xla_cpu("mkl")
  monkeypatch.setattr(runtime, "_backends_initialized", lambda: True)
  monkeypatch.setenv("XLA_FLAGS", "")
  assert runtime.configure_xla_cpu("ynn") == []  # Too late: nothing changed, a warning logged.
  assert os.environ["XLA_FLAGS"] == ""


_STEP_SCRIPT = r"""
import json, sys
from layered_gan_jax import runtime
runtime.configure_xla_cpu(sys.argv[1])
import jax, jax.numpy as jnp, numpy as np
from configs import tiny
from layered_gan_jax import parallel
from layered_gan_jax.nets import build
from layered_gan_jax.training import gan_steps, train_gan
config = tiny.get_config()
r = config.train.start_resolution
g, d = build.build_generator(config), build.build_critic(config)
state = train_gan.init_state(g, d, config)
shape = (config.train.batch_size, r, r, 3)
compiled, _, _ = gan_steps.compile_train_step(g, d, config, 1, state, shape)
real = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
out = []
for _ in range(2):
  state, m = compiled(state, parallel.put_batch(real), jnp.float32(1.0), jnp.float32(1e-3))
  out.append({k: float(v) for k, v in m.items()})
print("METRICS" + json.dumps(out))
"""


def _run_steps(kernels):
  env = dict(os.environ)  # the suite's XLA_FLAGS, without YNNPACK's
  result = subprocess.run(
    [sys.executable, "-c", _STEP_SCRIPT, kernels],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("METRICS")][0]
  return json.loads(line[len("METRICS") :])


@pytest.mark.slow
def test_ynn_kernels_give_the_same_training_step():
  """Two GAN iterations (tiny config) with XLA's kernels and with YNNPACK's agree to fp32
  round-off: the faster kernels change nothing but speed."""
  xla, ynn = _run_steps("xla"), _run_steps("ynn")
  for a, b in zip(xla, ynn):
    assert a.keys() == b.keys()
    for key in ("critic_loss", "generator_loss", "gradient_penalty", "mask_coverage"):
      assert b[key] == pytest.approx(a[key], rel=2e-4, abs=2e-5), key
