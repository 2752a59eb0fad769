"""The README's layout section names every module of the package and of benchmarks/, and only
files that exist."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _layout_block() -> str:
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  section = text[text.index("## Layout") :]
  return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def _named_files(block: str):
  """(folder, file) pairs of the block: indentation gives the folder of each .py name."""
  folders, found = {}, set()
  for line in block.splitlines():
    if not line.strip():
      continue
    depth = (len(line) - len(line.lstrip())) // 2
    head = line.strip().split("  ")[0]
    folders = {d: f for d, f in folders.items() if d < depth}
    if head.endswith("/"):
      folders[depth] = head.rstrip("/")
      continue
    prefix = "/".join(folders[d] for d in sorted(folders))
    first_dir = ""
    for name in re.findall(r"[\w/]+\.py", head):
      if "/" in name:
        first_dir = os.path.dirname(name)
      elif first_dir:
        name = f"{first_dir}/{name}"
      found.add(os.path.join(prefix, name))
  return found


def test_readme_layout_matches_the_tree():
  named = _named_files(_layout_block())
  missing_files = sorted(p for p in named if not os.path.isfile(os.path.join(REPO, p)))
  assert not missing_files, f"the README's layout names files that do not exist: {missing_files}"
  actual = set()
  for root in ("layered_gan_jax", "benchmarks"):
    for folder, _, names in os.walk(os.path.join(REPO, root)):
      rel = os.path.relpath(folder, REPO)
      if "device" in rel.split(os.sep) or "__pycache__" in rel:
        continue
      actual |= {os.path.join(rel, n) for n in names if n.endswith(".py") and n != "__init__.py"}
  unnamed = sorted(actual - named)
  assert not unnamed, f"modules missing from the README's layout: {unnamed}"
