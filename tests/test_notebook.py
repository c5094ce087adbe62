import importlib.util
from pathlib import Path

from test_report import _fake_suite

from harness.studies.paper.report import build

ROOT = Path(__file__).resolve().parent.parent


def _executor():
    spec = importlib.util.spec_from_file_location("execute", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_analysis_notebook_runs_on_a_results_folder(tmp_path):
    _fake_suite(tmp_path)
    build(tmp_path)
    nb = _executor().execute(tmp_path, save=tmp_path / "executed.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the redrawn Fig. 5, both saved Fig. 5 PNGs, the renoise strip
    assert "tpdiff-noalign" in (tmp_path / "executed.ipynb").read_text()


def test_the_committed_notebook_shows_its_outputs_and_they_are_current():
    """Committed executed (`nox -s notebook`), so that its plots show on the web; its
    outputs came from its code cells as they are and from results/paper as committed."""
    import nbformat

    execute = _executor()
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code), "a code cell has no output: run nox -s notebook"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    made = nb.metadata.get("tpdiff", {})
    assert made.get("results") == "results/paper"
    assert made.get("code_cells") == execute.code_hash(nb), "cells edited since: nox -s notebook"
    summary = ROOT / "results" / "paper" / "summary.json"
    assert made.get("summary") == execute.file_hash(summary), "results changed: nox -s notebook"
    inputs = execute.inputs_hash(nb, ROOT / "results" / "paper")
    assert len(inputs) >= 8  # the CSVs, PNGs and grids the cells read
    stale = sorted(k for k in inputs if made.get("inputs", {}).get(k) != inputs[k])
    assert not stale, f"{stale} changed since the notebook ran: nox -s notebook"
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4
