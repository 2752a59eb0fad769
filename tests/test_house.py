"""The package's floor plan, read from the code without importing it: rooms import only rooms
below them (``layered_gan_jax.ROOMS``), no import cycle, a small ground floor, every
``layered_gan_jax.*`` name the repository mentions exists, and the run folder's and the user's
names are written once."""

import ast
import os
import re

import pytest

import layered_gan_jax
from layered_gan_jax import names
from layered_gan_jax.run import layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "layered_gan_jax")
MAX_GROUND_FLOOR = 12
FRONT_DOOR = "layered_gan_jax.evaluation.api"


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for folder, _, filenames in os.walk(PACKAGE):
    for filename in filenames:
      if filename.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, filename), REPO)[:-3].replace(os.sep, ".")
        out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(
          folder, filename
        )
  return out


MODULES = _modules()
TREES = {name: ast.parse(open(path).read(), path) for name, path in MODULES.items()}


def _defined(module: str):
  """Top-level names of ``module`` (functions, classes, assignments, imports)."""
  found = set()
  for node in TREES[module].body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      found.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      found |= {(a.asname or a.name).split(".")[0] for a in node.names}
  return found


_IMPORT_IN_TEXT = re.compile(r"(?m)^\s*from (layered_gan_jax[\w.]*) import ([\w, ]+)")


def _imports(tree):
  """(line, imported module, name) of every import of the package in ``tree``, at any depth
  (the commands import their modules late), also in the code a test or benchmark runs from a
  string."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      for match in _IMPORT_IN_TEXT.finditer(node.value):
        yield from _imports(ast.parse(f"from {match.group(1)} import {match.group(2)}"))
    if (
      isinstance(node, ast.ImportFrom)
      and node.module
      and node.module.split(".")[0] == ("layered_gan_jax")
    ):
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        if full in MODULES:  # A module: ``from layered_gan_jax.nets import generator``.
          yield node.lineno, full, None
        else:  # A name in a module, or a module that does not exist.
          yield node.lineno, node.module, alias.name
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "layered_gan_jax":
          yield node.lineno, alias.name, None


def _room(module: str):
  """The room's index in ROOMS, or -1 for the ground floor (and the package itself)."""
  parts = module.split(".")
  if len(parts) > 2 or (len(parts) == 2 and parts[1] in layered_gan_jax.ROOMS):
    return layered_gan_jax.ROOMS.index(parts[1])
  return -1


def test_every_subpackage_is_a_room_and_the_ground_floor_is_small():
  subpackages = {m.split(".")[1] for m in MODULES if m.count(".") >= 2}
  assert subpackages == set(layered_gan_jax.ROOMS)
  ground = [m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in subpackages]
  assert len(ground) <= MAX_GROUND_FLOOR, sorted(ground)


def test_rooms_import_only_rooms_below_them():
  wrong = []
  for module, tree in TREES.items():
    for line, imported, _ in _imports(tree):
      if imported not in MODULES:
        continue  # Caught by test_every_import_of_the_package_resolves.
      here, there = _room(module), _room(imported)
      if module == "layered_gan_jax" and imported == FRONT_DOOR:
        continue  # The package's names of the Python API, imported when first used.
      if there > here or (here == -1 and there != -1):
        wrong.append(f"{MODULES[module]}:{line} ({module}) imports {imported}")
  assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
  graph = {m: {i for _, i, _ in _imports(t) if i in MODULES and i != m} for m, t in TREES.items()}
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
      if nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])


def _python_files():
  for top in ("layered_gan_jax", "tests", "benchmarks", "configs"):
    for folder, _, filenames in os.walk(os.path.join(REPO, top)):
      yield from (os.path.join(folder, f) for f in filenames if f.endswith(".py"))
  yield os.path.join(REPO, "main.py")


def test_every_import_of_the_package_resolves():
  """A module or name that moved but is still imported from its old place fails here, also
  where the import runs late (inside a function, in a benchmark or a test)."""
  wrong = []
  for path in _python_files():
    for line, imported, name in _imports(ast.parse(open(path).read(), path)):
      where = f"{os.path.relpath(path, REPO)}:{line}"
      if imported not in MODULES:
        wrong.append(f"{where}: no module {imported}")
      elif (
        name is not None and f"{imported}.{name}" not in MODULES and name not in _defined(imported)
      ):
        wrong.append(f"{where}: {imported} has no {name}")
  assert not wrong, "\n".join(wrong)


def _text_files():
  yield from _python_files()
  for top in ("docs", "benchmarks"):
    for folder, _, filenames in os.walk(os.path.join(REPO, top)):
      yield from (os.path.join(folder, f) for f in filenames if f.endswith((".md", ".sh")))
  yield from (os.path.join(REPO, f) for f in ("README.md", ".ci/run", "pyproject.toml"))


def test_every_mentioned_module_path_exists():
  """``layered_gan_jax.x.y`` and ``layered_gan_jax/x/y.py`` in code, docs and scripts name
  modules (or names in them) that exist."""
  wrong = []
  for path in _text_files():
    if path == os.path.abspath(__file__):
      continue
    text = open(path).read()
    for match in re.finditer(r"layered_gan_jax((?:\.\w+)+)", text):
      parts = ("layered_gan_jax" + match.group(1)).split(".")
      while len(parts) > 1 and ".".join(parts) not in MODULES:
        parts.pop()
      module = ".".join(parts)
      rest = match.group(1).split(".")[1:][len(parts) - 1 :]
      if (
        rest
        and rest[0] not in _defined(module)
        and not (module == "layered_gan_jax" and rest[0] in ("__version__",))
      ):
        wrong.append(f"{os.path.relpath(path, REPO)}: {match.group(0)}")
    for match in re.finditer(r"layered_gan_jax/[\w/]+\.py", text):
      if not os.path.exists(os.path.join(REPO, match.group(0))):
        wrong.append(f"{os.path.relpath(path, REPO)}: {match.group(0)}")
  assert not wrong, "\n".join(wrong)


def _constants(module):
  for node in ast.walk(TREES[module]):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      yield node.lineno, node.value
    elif isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) for e in node.elts):
      yield node.lineno, tuple(e.value for e in node.elts)


@pytest.mark.parametrize(
  "owner, values",
  [
    (
      "layered_gan_jax.run.layout",
      {
        layout.GAN_DIR,
        layout.ENCODER_DIR,
        layout.SEGMENTER_DIR,
        layout.COMMIT_MARKER,
        layout.DAMAGED_SUFFIX,
      },
    ),
    ("layered_gan_jax.names", {names.MODES, names.ROUTES, names.BASELINES}),
  ],
)
def test_names_written_once(owner, values):
  """The run folder's names live in run/layout.py, the modes, routes and baselines in names.py:
  a copy anywhere else in the package (or main.py) fails here."""
  copies = [
    f"{MODULES[m]}:{line}: {value!r}"
    for m in MODULES
    if m != owner
    for line, value in _constants(m)
    if value in values
  ]
  main = ast.parse(open(os.path.join(REPO, "main.py")).read())
  copies += [
    f"main.py:{n.lineno}: {n.value!r}"
    for n in ast.walk(main)
    if isinstance(n, ast.Constant) and n.value in values
  ]
  assert not copies, "\n".join(copies)
