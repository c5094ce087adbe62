"""Execute the analysis notebook against a results folder (what `nox -s notebook` runs).

    python notebooks/execute.py [RESULTS_DIR] [--save OUT.ipynb | --in-place]

RESULTS_DIR defaults to results/paper. `--in-place` writes the executed notebook back to
notebooks/analysis.ipynb, outputs and all, so that its plots show where the repository is
read on the web; its metadata (`tpdiff`) records what the outputs came from: the hash of
the code cells, of the folder's summary.json and of every file the cells read
(`tests/test_notebook.py` checks them against the committed files). `--save` writes the
executed copy elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "analysis.ipynb"


def code_hash(nb: nbformat.NotebookNode) -> str:
    """sha256 of the notebook's code cells, in order (what produced its outputs)."""
    cells = "\n\x00".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(cells.encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    """sha256 of a JSON file's content (parsed: line endings and spacing do not count)."""
    content = json.dumps(json.loads(path.read_text()), sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def inputs_hash(nb: nbformat.NotebookNode, results: Path) -> dict[str, str]:
    """{name: sha256} of every file or folder of `results` the code cells read (each
    `RESULTS / 'name'` they name; a folder: all its files, in order), line endings aside."""
    names = sorted(set(re.findall(r"RESULTS / '([^']+)'", "\n".join(
        c.source for c in nb.cells if c.cell_type == "code"))))  # fmt: skip
    found = {}
    for name in names:
        path = results / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        h = hashlib.sha256()
        for file in files:
            h.update(str(file.relative_to(results)).encode())
            h.update(file.read_bytes().replace(b"\r\n", b"\n") if file.is_file() else b"")
        found[name] = h.hexdigest()[:16]
    return found


def execute(results: Path, save: Path | None = None, timeout: int = 300) -> nbformat.NotebookNode:
    results = results.resolve()
    if not (results / "summary.json").is_file():
        raise SystemExit(
            f"{results} has no summary.json: run python -m harness.run --suite paper "
            f"--out {results} (or python -m harness.report {results}) first"
        )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["TPDIFF_RESULTS"] = str(results)
    resources = {"metadata": {"path": str(HERE)}}
    NotebookClient(nb, timeout=timeout, resources=resources, record_timing=False).execute()
    try:
        where = str(results.relative_to(HERE.parent))
    except ValueError:  # a folder outside the repository
        where = results.name
    nb.metadata["tpdiff"] = dict(results=where, code_cells=code_hash(nb),
                                 summary=file_hash(results / "summary.json"),
                                 inputs=inputs_hash(nb, results))  # fmt: skip
    if save:
        nbformat.write(nb, save)
    return nb


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=HERE.parent / "results" / "paper")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--save", type=Path, help="write the executed notebook here")
    out.add_argument(
        "--in-place",
        action="store_true",
        help="write it back to notebooks/analysis.ipynb (committed with outputs)",
    )
    args = parser.parse_args()
    execute(args.results, NOTEBOOK if args.in_place else args.save)
    print(
        f"executed notebooks/analysis.ipynb against {args.results}"
        + (" and wrote it back" if args.in_place else "")
    )
