"""Plain registries of the named jobs.

`SUITES`: `python -m harness.run --suite NAME`; a suite is `fn(out: Path, scale: str,
fresh: bool) -> dict` that writes its tables to `out` and returns a JSON-able summary
(`fresh`: move an occupied folder aside first, for suites that resume; see
`harness.pipeline.provenance.claim_folder`). Its keys are the only names the CLI and
result folders use.

`REPORTS`: which study's report `python -m harness.report DIR` draws, picked by the file
that marks the study's folders (the first entry whose file DIR holds); each `redraw(folder,
reference)` draws from the folder's files alone and returns what to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.studies.ablations import cli as ablations
from harness.studies.checks import cli as checks
from harness.studies.paper import cli as paper
from harness.studies.recipe import cli as recipe

Suite = Callable[[Path, str, bool], dict]

SUITES: dict[str, Suite] = {
    "engine": checks.engine,
    "cost": checks.cost,
    "smoke": paper.smoke,
    "paper": paper.suite,
}


@dataclass(frozen=True)
class Report:
    holds: str  # the file that marks a folder of the study
    redraw: Callable[[Path, Path | None], str]


REPORTS: dict[str, Report] = {
    "ablations": Report("ablations.json", ablations.redraw),
    "paper": Report("evals.csv", paper.redraw),
    "recipe": Report("recipe.csv", recipe.redraw),
}
DEFAULT_REPORT = "paper"  # a folder that holds none of the marks: say what a paper folder lacks


def report_for(folder: Path) -> Report:
    """The report of the study whose results `folder` holds."""
    for entry in REPORTS.values():
        if (folder / entry.holds).is_file():
            return entry
    return REPORTS[DEFAULT_REPORT]
