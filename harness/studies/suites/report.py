"""`python -m harness.report DIR [--reference DIR]`: redraw the report of a results folder
from its files alone, without retraining.

The study is picked from what the folder holds (`REPORTS`: `ablations.json`, an
ablations folder; `evals.csv`, a paper-suite folder; `recipe.csv`, a recipe-study folder;
`study.db`, a stage-boundary sweep).
Every input is checked first: a torn or inconsistent folder ends with one line naming the
file, the problem and the fix (exit 2), and nothing is written; the outputs are written all
or none.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.common.cli import add_debug_flag, guarded
from harness.studies.ablations import report as ablations
from harness.studies.paper import report as paper
from harness.studies.recipe import report as recipe
from harness.studies.sweep import report as sweep


@dataclass(frozen=True)
class Report:
    holds: str  # the file that marks a folder of the study
    redraw: Callable[[Path, Path | None], str]  # (folder, reference) -> what to print


# which study's report a folder takes: the first entry whose file it holds
REPORTS: dict[str, Report] = {
    "ablations": Report("ablations.json", ablations.redraw),
    "paper": Report("evals.csv", paper.redraw),
    "recipe": Report("recipe.csv", recipe.redraw),
    "sweep": Report("study.db", sweep.redraw),
}
DEFAULT_REPORT = "paper"  # a folder that holds none of the marks: say what a paper folder lacks


def report_for(folder: Path) -> Report:
    """The report of the study whose results `folder` holds."""
    for entry in REPORTS.values():
        if (folder / entry.holds).is_file():
            return entry
    return REPORTS[DEFAULT_REPORT]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder", type=Path, help="a paper-suite, ablations, recipe-study or sweep results folder"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="results to set beside a paper-suite folder's (default: results/paper, or for "
        "results/paper its replica results/paper-replica when that exists)",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    entry = report_for(args.folder)
    print(guarded(parser.prog, args.debug, lambda: entry.redraw(args.folder, args.reference)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
