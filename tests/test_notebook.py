"""notebooks/quickstart.py, executed as a notebook (jupytext -> nbclient, an IPython kernel) on
the tiny settings: a cell that raises fails the test, with the cell's traceback."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.py")


@pytest.mark.slow
def test_the_quickstart_notebook_runs(tmp_path, monkeypatch):
  jupytext = pytest.importorskip("jupytext", reason="pip install -e .[test]")
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top

  notebook = jupytext.read(NOTEBOOK)
  assert [c.cell_type for c in notebook.cells].count("code") >= 6
  monkeypatch.setenv("WORKDIR", "")  # Train the tiny run in the notebook.
  monkeypatch.setenv("TMPDIR", str(tmp_path))
  client = NotebookClient(
    notebook,
    timeout=300,
    kernel_name="python3",
    resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
  )
  client.execute()
  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
  assert "GAN step 8, 16 px" in text
  assert "'masks': {'fg_iou'" in text
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 3  # The layers, the overlays, the curves (and the last grid).
