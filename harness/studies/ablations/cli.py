"""Named ablations: `python -m harness.studies.ablate NAME [NAME ...] [--scale NAME]
[--out DIR] [--seed-offset K] [--workers N] [--reuse RUNS] [--debug]` (`all` runs every
one, `--list` lists them,
`--finish` only redoes the steps after training, `--commands CONFIG` prints the GPU
commands; also `tpdiff-ablate`, `nox -s ablate -- NAME`). Trains and scores each variant
at its seeds (`run`), then draws the report (`report`); `python -m harness.report DIR`
redraws it from the folder's files alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ablations import ABLATIONS
from harness.common.cli import add_debug_flag, guarded
from harness.pipeline.provenance import read_results
from harness.studies.ablations.commands import commands_table
from harness.studies.ablations.report import SHOWN
from harness.studies.ablations.run import run_all
from harness.studies.core.scale import SCALES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.studies.ablate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help="ablations to run, or all")
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    parser.add_argument("--out", type=Path, default=Path("results/runs/ablations"),
                        help="results folder (default results/runs/ablations; the committed "
                        "run is results/ablations)")  # fmt: skip
    parser.add_argument("--seed-offset", type=int, default=0, metavar="K",
                        help="shift every training seed by K (a replica of the study)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="runs trained side by side, one thread each (default: the "
                        "scale's, 2 at cpu)")  # fmt: skip
    parser.add_argument("--reuse", type=Path, default=None, metavar="RUNS",
                        help="a runs folder (e.g. results/runs/paper-cpu/runs) whose finished "
                        "runs of the same training config and seed are copied instead of "
                        "trained again")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the ablations and exit")
    parser.add_argument("--finish", action="store_true",
                        help="only measure speed, sample strips and redraw the report from the "
                        "trained variants in --out")  # fmt: skip
    parser.add_argument("--commands", type=Path, metavar="CONFIG",
                        help="print the commands that run the ablations on a GPU config (e.g. "
                        "baselines/gpu/wan-tpdiff.toml) with each variant's expected cost, "
                        "and exit")  # fmt: skip
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.list or not (args.names or args.finish or args.commands):
        for key, ab in ABLATIONS.items():
            seeds = f" [{ab.seeds} seed{'s' if ab.seeds > 1 else ''}]"
            print(f"{key:16s} {ab.about}: {', '.join(ab.variants)}{seeds}")
        return 0
    return guarded(parser.prog, args.debug, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    """The checks, then the run; a bad input raises a one-line ValueError (exit 2)."""
    names = list(ABLATIONS) if args.names in (["all"], []) else args.names
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; choose from {', '.join(ABLATIONS)} "
                         "or all")  # fmt: skip
    made = args.out / "ablations.json"
    if made.is_file():
        try:
            scale = json.loads(made.read_text())["scale"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{made} is unreadable (cut or edited); move it aside and rerun "
                             "with --finish to rewrite it") from None  # fmt: skip
        if scale != args.scale:
            raise ValueError(f"{args.out} holds ablations at scale {scale}, not {args.scale}: "
                             "pass another --out")  # fmt: skip
    if args.commands:
        rows = pd.DataFrame(commands_table(args.commands, names))
        print(rows.fillna("").to_markdown(index=False))
        return 0
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    summary = run_all(args.out, names, args.scale, train=not args.finish,
                      offset=args.seed_offset, workers=args.workers, reuse=args.reuse)  # fmt: skip
    rows = read_results(args.out / "summary.csv")
    print(rows[[c for c in SHOWN if c in rows]].to_string(index=False))
    print(f"report: {args.out / 'report.md'} ({len(summary['ablations'])} ablations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
