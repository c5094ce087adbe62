"""`python -m harness.sweep` (console script `tpdiff-sweep`): run, resume or redraw a
stage-boundary sweep (`run`), its outputs drawn by `report`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna

from harness.common.cli import add_debug_flag, guarded
from harness.common.io import (
    check_output_folder,
)
from harness.studies.core.scale import SCALES
from harness.studies.sweep.report import write_report
from harness.studies.sweep.run import COSTS, RUNS, SweepSettings, sweep
from harness.studies.sweep.storage import open_storage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harness.sweep",
        description="Optuna sweep over TPDiff stage boundaries (quality vs cost).",
        epilog="Workers on other machines: start each with the same --storage, --study and "
        "--trials.",
    )
    p.add_argument("--trials", type=int, default=12, help="trials to spend in all (default 12)")
    p.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    p.add_argument("--stages", type=int, default=3, help="K, the number of stages (default 3)")
    p.add_argument("--cost", default="train", choices=sorted(COSTS), help="cost objective")
    p.add_argument("--search-steps", action="store_true", help="also search steps per stage")
    p.add_argument("--min-gap", type=float, default=0.05, help="shortest stage in u")
    p.add_argument("--prune-margin", type=float, default=0.1)
    p.add_argument("--prune-after", type=int, default=4, help="finished trials before pruning")
    p.add_argument("--storage", default="", help="RDB URL or journal:PATH (default SQLite)")
    p.add_argument("--study", default="", help="study name (default from the settings)")
    p.add_argument("--out", type=Path, default=None, help="default results/runs/sweep/<study>/")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="if --out holds a study of other settings or code, move it aside first",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="sampler seed, for a reproducible single-worker study (several workers: give "
        "each its own seed or none, else they draw the same trials)",
    )
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="trials trained side by side in N processes on this machine, one "
                   "thread each (default: the scale's, 2 at cpu; each worker's sampler seed "
                   "is --seed + its index)")  # fmt: skip
    p.add_argument("--reuse", type=Path, default=None, metavar="RUNS",
                   help="adopt the finished runs of this runs folder (e.g. results/runs/"
                   "paper-cpu/runs) that a trial would train with the same config and seed, "
                   "instead of training them again")  # fmt: skip
    p.add_argument("--heartbeat", type=int, default=60, help="RDB heartbeat, seconds")
    p.add_argument("--report-only", action="store_true", help="redraw outputs, run no trial")
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded("python -m harness.sweep", args.debug, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    settings = SweepSettings(
        args.scale, args.stages, args.cost, args.search_steps, args.min_gap,
        args.prune_margin, args.prune_after,
    )  # fmt: skip
    name = args.study or settings.study_name
    out = args.out or RUNS / name
    check_output_folder(out, "--out")
    if args.report_only:
        if not (args.storage or (out / "study.db").is_file()):
            raise FileNotFoundError(f"no study at {out / 'study.db'}; pass --out or --storage")
        store = open_storage(args.storage or f"sqlite:///{(out / 'study.db').resolve()}", 60)
        summary = write_report(optuna.load_study(study_name=name, storage=store), out)
    else:
        workers = SCALES[args.scale].workers if args.workers is None else args.workers
        summary = sweep(
            settings, args.trials, out, args.storage, name, args.seed, args.heartbeat,
            fresh=args.fresh, workers=workers, reuse=args.reuse,
        )  # fmt: skip
    print((out / "report.md").read_text())
    print(json.dumps(summary["trials"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
