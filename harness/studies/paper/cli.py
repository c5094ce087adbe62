"""The paper suite's commands: `python -m harness.run --suite paper|smoke` (`suite`,
`smoke`); `python -m harness.report DIR` redraws a paper-suite folder (`report.redraw`)."""

from __future__ import annotations

from pathlib import Path

from harness.studies.paper.run import paper


def suite(out: Path, scale: str, fresh: bool = False, **design) -> dict:
    """Tables 1 and 3 and Figures 5 and 6 analogues from matched runs at S paired seeds
    (`run.paper`; `design`: seeds, seed_offset, workers)."""
    return paper(out, scale, fresh, **design)


def smoke(out: Path, scale: str, fresh: bool = False, **design) -> dict:
    """Every stage of the paper suite at tiny size (minutes on 2 CPU cores; used by CI)."""
    return paper(out, "smoke", fresh, **design)
