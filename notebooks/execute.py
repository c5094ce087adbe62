"""Execute the analysis notebook against a results folder (what `nox -s notebook` runs).

    python notebooks/execute.py [RESULTS_DIR] [--save OUT.ipynb]

RESULTS_DIR defaults to results/paper. The executed copy is saved only with --save, so
the committed notebook stays free of outputs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(results: Path, save: Path | None = None, timeout: int = 300) -> nbformat.NotebookNode:
    results = results.resolve()
    if not (results / "summary.json").is_file():
        raise SystemExit(
            f"{results} has no summary.json: run python -m harness.run --suite paper "
            f"--out {results} (or python -m harness.report {results}) first"
        )
    nb = nbformat.read(HERE / "analysis.ipynb", as_version=4)
    os.environ["TPDIFF_RESULTS"] = str(results)
    NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(HERE)}}).execute()
    if save:
        nbformat.write(nb, save)
    return nb


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=HERE.parent / "results" / "paper")
    parser.add_argument("--save", type=Path, help="write the executed notebook here")
    args = parser.parse_args()
    execute(args.results, args.save)
    print(f"executed notebooks/analysis.ipynb against {args.results}")
