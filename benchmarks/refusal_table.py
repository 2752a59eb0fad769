"""The bad-input table of docs/reliability.md: each refusal of tests/test_main.py's table run as a
user runs it, with its exit status, seconds, stderr lines and the scene's hash before and after.

  python -m benchmarks.refusal_table [--cases="workdir is a file,a second writer"]

The scene is the test's own (a GAN checkpoint of configs/tiny.py, the data of the cases, a
folder whose GAN lease this process holds); ``S`` stands for its folder in the printed rows.
"""

import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import test_main  # noqa: E402  pylint: disable=wrong-import-position


class _TmpPaths:
  """The part of pytest's tmp_path_factory that the scene uses."""

  def __init__(self, root: str):
    self._root = pathlib.Path(root)

  def mktemp(self, name: str) -> pathlib.Path:
    path = self._root / name
    path.mkdir()
    return path


def _hash(root) -> tuple:
  tree = test_main._tree_hashes(root)  # pylint: disable=protected-access
  files = sum(1 for k in tree if not k.endswith("/"))
  return files, hashlib.sha256(repr(sorted(tree.items())).encode()).hexdigest()[:12]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cases", default="", help="comma-separated case names (default: all)")
  args = p.parse_args(argv)
  wanted = [c for c in args.cases.split(",") if c]
  with tempfile.TemporaryDirectory() as tmp:
    root = test_main.scene.__wrapped__(_TmpPaths(tmp))
    print(
      "| # | input | arguments | exit | s | stderr lines | the line printed | files, sha256 "
      "before = after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, (case, case_args, _) in enumerate(test_main.REFUSALS, 1):
      if wanted and case not in wanted:
        continue
      filled = [a.format(run=root / "run", root=root) for a in case_args]
      env = dict(os.environ, **(test_main.FOUR_DEVICES if case == "batch vs devices" else {}))
      files, before = _hash(root)
      start = time.time()
      result = subprocess.run(
        [sys.executable, "main.py", *filled], capture_output=True, text=True, cwd=REPO, env=env
      )
      seconds = time.time() - start
      _, after = _hash(root)
      shown = lambda text: text.replace(str(root), "S")
      line = shown(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
      print(
        f"| {i} | {case} | `{shown(' '.join(filled))}` | {result.returncode} | "
        f"{seconds:.2f} | {len(result.stderr.splitlines())} | {line} | {files} files, "
        f"{before} = {after} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
