"""The paper suite's commands: `python -m harness.run --suite paper|smoke` (`suite`,
`smoke`) and `python -m harness.report DIR` on a paper-suite folder (`redraw`)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.studies.paper import report
from harness.studies.paper.run import paper

HOLDS = ("evals.csv", "cost_plans.csv")  # what a paper-suite folder holds


def suite(out: Path, scale: str, fresh: bool = False) -> dict:
    """Tables 1 and 3 and Figures 5 and 6 analogues from matched runs (`run.paper`)."""
    return paper(out, scale, fresh)


def smoke(out: Path, scale: str, fresh: bool = False) -> dict:
    """Every stage of the paper suite at tiny size (minutes on 2 CPU cores; used by CI)."""
    return paper(out, "smoke", fresh)


def redraw(folder: Path, reference: Path | None) -> str:
    """Redraw the report of a paper-suite `folder` (beside the committed `reference`,
    skipped when it is that folder); returns what to print."""
    missing = [n for n in HOLDS if not (folder / n).exists()]
    if missing:
        raise ValueError(f"{folder} lacks {missing}: run python -m harness.run --suite paper "
                         f"--out {folder} first")  # fmt: skip
    same = reference is not None and folder.resolve() == reference.resolve()
    summary = report.build(folder, None if same else reference)
    return f"{json.dumps(summary, indent=2)}\nreport: {folder / 'report.md'}"
