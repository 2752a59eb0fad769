"""The README's layout section names every module of the package and of benchmarks/, and only
files that exist; every figure of the README's results tables and of docs/results.md is in the
results file its row cites."""

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


# ------------------------------------------------------------------ figures and their sources
#
# The results tables of the README (the sections named below) and every table of
# docs/results.md end with a "source" column naming the results files each row's figures come
# from: `benchmarks/results/FILE`, optionally with a JSON pointer to the part of the file
# (`benchmarks/results/main_job_metrics.json#/routes/distilled`). Every number of a row's other
# cells (not its first, the row's name) must be one of the numbers of its sources, as printed:
# 0.541 matches 0.54149 (3 decimals), 8.2e-6 matches 8.24e-6, "+205 %" a ratio of 2.049,
# "0.41M" 413,504, "11 min 34 s" 694.2 seconds. Code spans and link targets in a cell are not
# figures (commands, file names, anchors).

RESULTS_SECTIONS = {
  "README.md": ("What it scored", "Results at a glance"),
  os.path.join("docs", "results.md"): None,  # Every table.
}
_SOURCE = re.compile(r"`(benchmarks/results/[^`#\s]+)(#[^`\s]*)?`")
_DURATION = re.compile(
  r"(?<![\w.])(?:(\d+) h )?(?:(\d+) min)(?: (\d+) s)?(?!\w)|(?<![\w.])(\d+(?:\.\d+)?) s(?!\w)"
)
_NUMBER = re.compile(
  r"(?<![\w.,/])([-+\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:e([-+]?\d+))?(?: ?(%|x|M|k)(?!\w))?"
)
_FILE_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _tables(text: str, sections):
  """``(heading, header cells, [(line number, cells), ...])`` of every pipe table of ``text``
  under a heading named in ``sections`` (None: all), each section up to the next heading."""
  heading, wanted, rows, header, found, fenced = "", sections is None, [], None, [], False
  lines = text.splitlines() + [""]
  for number, line in enumerate(lines, 1):
    if line.lstrip().startswith("```"):
      fenced = not fenced
    if fenced:
      continue
    if line.startswith("#"):
      heading = line.lstrip("#").strip()
      wanted = sections is None or any(heading.startswith(s) for s in sections)
    if line.startswith("|") and wanted:
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if header is None:
        header = cells
      elif not all(set(c) <= set("-: ") for c in cells):
        rows.append((number, cells))
      continue
    if header is not None:
      found.append((heading, header, rows))
      header, rows = None, []
  return found


def _figures(cell: str):
  """``(printed, value, tolerance, kind)`` of each figure of a table cell; kind is '%', 'M',
  'k' (a share or a count printed in those units) or 's' (a duration in seconds)."""
  cell = re.sub(r"`[^`]*`", " ", cell)  # Commands, paths, config fields.
  cell = re.sub(r"\]\([^)]*\)", "]", cell)  # Link targets (anchors hold dates).
  cell = cell.replace("*", "")
  found = []
  for m in _DURATION.finditer(cell):
    if m.group(4) is not None:
      text = m.group(4)
      decimals = len(text.split(".")[1]) if "." in text else 0
      found.append((m.group(0), float(text), 0.5 * 10**-decimals, "s"))
    else:
      hours, minutes, seconds = (int(g or 0) for g in m.group(1, 2, 3))
      tolerance = 0.5 if m.group(3) else 30.0
      found.append((m.group(0), 3600 * hours + 60 * minutes + seconds, tolerance, "s"))
  cell = _DURATION.sub(" ", cell)
  for m in _NUMBER.finditer(cell):
    sign, whole, fraction, exponent, unit = m.groups()
    value = float(whole.replace(",", "") + (fraction or ""))
    decimals = len(fraction) - 1 if fraction else 0
    scale = 10 ** int(exponent) if exponent else 1
    value *= -scale if sign in ("-", "\u2212") else scale
    found.append((m.group(0).strip(), value, 0.5 * 10**-decimals * scale, unit or ""))
  return found


def _pointer(tree, pointer: str):
  for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]:
    tree = tree[int(part)] if isinstance(tree, list) else tree[part]
  return tree


def _numbers(tree):
  """Every number of a JSON tree: its numeric leaves and the numbers written in its strings."""
  if isinstance(tree, dict):
    return [n for v in tree.values() for n in _numbers(v)]
  if isinstance(tree, list):
    return [n for v in tree for n in _numbers(v)]
  if isinstance(tree, bool) or tree is None:
    return []
  if isinstance(tree, (int, float)):
    return [float(tree)]
  out = []
  for token in _FILE_NUMBER.findall(str(tree).replace(",", "")):
    try:
      out.append(float(token))
    except ValueError:
      pass
  return out


def _source_numbers(cell: str, where: str, problems: list):
  """The numbers of the results files (and JSON pointers) a source cell names; what cannot be
  read is added to ``problems``."""
  import json  # pylint: disable=g-import-not-at-top

  cited = _SOURCE.findall(cell)
  numbers = []
  for path, pointer in cited:
    full = os.path.join(REPO, path)
    if not os.path.isfile(full):
      problems.append(f"{where}: cites {path}, which does not exist")
      continue
    with open(full) as f:
      text = f.read()
    if not path.endswith(".json"):
      numbers += _numbers(text)
      continue
    tree = json.loads(text)
    try:
      tree = _pointer(tree, pointer[1:]) if pointer else tree
    except (KeyError, IndexError, ValueError, TypeError):
      problems.append(f"{where}: {path} has no {pointer[1:]}")
      continue
    numbers += _numbers(tree)
  return cited, numbers


def _matches(value, tolerance, kind, numbers):
  candidates = {
    "%": lambda v: (100 * v, v),
    "M": lambda v: (v / 1e6,),  # A count printed in millions.
    "k": lambda v: (v / 1e3,),
    "s": lambda v: (v, 60 * v),  # Seconds, or minutes where a file keeps minutes.
  }.get(kind, lambda v: (v,))
  slack = tolerance + 1e-9 * abs(value)
  return any(abs(c - value) <= slack for v in numbers for c in candidates(v))


def _results_rows():
  """``(where, row cells without the first, source cell)`` of every checked table row."""
  for name, sections in RESULTS_SECTIONS.items():
    with open(os.path.join(REPO, name)) as f:
      text = f.read()
    tables = _tables(text, sections)
    assert tables, f"{name}: no results table under {sections}"
    for heading, header, rows in tables:
      assert header[-1].lower() == "source", (
        f"{name}, table under {heading!r}: its last column must be 'source' (the results "
        f"files its figures come from), not {header[-1]!r}"
      )
      for number, cells in rows:
        yield f"{name}:{number}", cells[1:-1], cells[-1]


def test_every_figure_of_the_results_tables_is_in_the_file_it_cites():
  problems, checked = [], 0
  for where, cells, source in _results_rows():
    figures = [f for cell in cells for f in _figures(cell)]
    if not figures:
      continue
    cited, numbers = _source_numbers(source, where, problems)
    if not cited:
      problems.append(f"{where}: figures {[f[0] for f in figures]} cite no results file")
      continue
    for printed, value, tolerance, kind in figures:
      checked += 1
      if not _matches(value, tolerance, kind, numbers):
        names = ", ".join(p + q for p, q in cited)
        problems.append(f"{where}: {printed!r} is not in {names} (as printed)")
  assert not problems, "\n".join(problems)
  assert checked >= 100, checked  # The tables are there and were read.


def test_the_figure_reader_reads_what_the_docs_print():
  read = lambda cell: [(p, v, k) for p, v, _, k in _figures(cell)]
  assert read("**0.541** (mIoU 0.589)") == [("0.541", 0.541, ""), ("0.589", 0.589, "")]
  assert read("1.8-2.05x, `--config.loss.max_mask_coverage=0.3`") == [
    ("1.8", 1.8, ""),
    ("2.05x", 2.05, "x"),
  ]
  assert read("from +205 % to -7 %; 2,558 img/s; 0.41M") == [
    ("+205 %", 205.0, "%"),
    ("-7 %", -7.0, "%"),
    ("2,558", 2558.0, ""),
    ("0.41M", 0.41, "M"),
  ]
  assert read("11 min 34 s, then 23 s and 8.2e-6 [link 2026](x.md#run-2026-12-05)") == [
    ("11 min 34 s", 694, "s"),
    ("23 s", 23.0, "s"),
    ("8.2e-6", 8.2e-6, ""),
    ("2026", 2026.0, ""),
  ]
  assert _matches(0.541, 0.0005, "", [0.54149]) and not _matches(0.541, 0.0005, "", [0.5416])
  assert _matches(205, 0.5, "%", [2.0490741709175886]) and _matches(0.41, 0.005, "M", [413504])
  assert not _matches(0.40, 0.005, "M", [0.401])  # A count in millions is not a share.
  assert _matches(694, 0.5, "s", [694.2]) and not _matches(694, 0.5, "s", [695.0])
