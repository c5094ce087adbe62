"""`python -m harness.studies.recipe [CANDIDATE ...] [--out DIR] [--n N] [--evals E]
[--report]` (console script `tpdiff-recipe`): the CPU recipe study (`run`), its report
drawn from recipe.csv (`report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from harness.common.cli import add_debug_flag, guarded
from harness.common.lock import owned
from harness.studies.recipe import run
from harness.studies.recipe.report import redraw
from harness.studies.recipe.run import CANDIDATES, OUT, study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.studies.recipe",
        description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("candidates", nargs="*", help=f"default: all of {list(CANDIDATES)}")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    parser.add_argument("--n", type=int, default=128, help="videos per score (default 128)")
    parser.add_argument("--evals", type=int, default=3, help="scored points per run")
    parser.add_argument(
        "--report", action="store_true", help="only redraw report.md from --out's recipe.csv"
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    unknown = set(args.candidates) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {list(CANDIDATES)}")
    if args.report:
        print(guarded(parser.prog, args.debug, lambda: redraw(args.out)))
        return 0
    names = args.candidates or list(CANDIDATES)

    def held() -> pd.DataFrame:
        with owned(args.out, "recipe study folder"):
            return study(args.out, names, args.n, args.evals)

    guarded(parser.prog, args.debug, held)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
