"""Runs a project module or script on a machine without TensorFlow (e.g. lent GPU machines).

  python -m benchmarks.device.no_tf_launch -m benchmarks.throughput --config=configs/car.py ...
  python -m benchmarks.device.no_tf_launch path/to/script.py ARGS...

(run from the repository root, so that ``benchmarks`` and ``layered_gan_jax`` import).

clu imports TensorFlow when it is imported (its SummaryWriter, through tensorboard's hparams
plugin), and the GPU machines' Python has no TensorFlow, which is too large to carry there. Where
TensorFlow is missing (or FORCE_TF_STUB is set), this puts a minimal stand-in module in place
while clu is imported, makes every ``metric_writers.create_default_writer`` a logging-only writer
(no TensorBoard event files), removes the stand-in again (so ``etils.epath`` and others see no
TensorFlow), then runs the module or script as ``__main__``. Nothing else changes: the training
step, data and timing are its own. Where TensorFlow is installed this only runs it.
"""

import os
import runpy
import sys

if os.environ.get("FORCE_TF_STUB") or not __import__("importlib").util.find_spec("tensorflow"):
  import types  # pylint: disable=g-import-not-at-top

  from tensorboard.compat.proto import tensor_pb2  # pylint: disable=g-import-not-at-top

  stand_in = types.ModuleType("tensorflow")
  stand_in.make_tensor_proto = lambda *a, **k: tensor_pb2.TensorProto()  # Used at import only.
  stand_in.keras = types.SimpleNamespace(callbacks=types.SimpleNamespace(Callback=object))
  sys.modules["tensorflow"] = stand_in
  from clu import metric_writers  # pylint: disable=g-import-not-at-top

  _orig = metric_writers.create_default_writer

  def _logging_only(logdir=None, *, just_logging=False, **kwargs):
    del just_logging
    return _orig(logdir, just_logging=True, **kwargs)

  metric_writers.create_default_writer = _logging_only
  from clu import parameter_overview, periodic_actions  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  # Out of sys.modules again, so that nothing else (etils.epath) believes TensorFlow is there.
  del sys.modules["tensorflow"]
  print("no_tf_launch.py: TensorFlow stand-in, logging-only clu writers", flush=True)

if len(sys.argv) >= 3 and sys.argv[1] == "-m":
  sys.argv = sys.argv[2:]  # As python -m does: argv[0] is the module's, the rest its arguments.
  runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
elif len(sys.argv) >= 2 and sys.argv[1] != "-m":
  sys.argv = sys.argv[1:]
  runpy.run_path(sys.argv[0], run_name="__main__")
else:
  sys.exit("usage: python -m benchmarks.device.no_tf_launch (-m MODULE | SCRIPT) [ARGS...]")
