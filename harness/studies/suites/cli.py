"""`python -m harness.run --suite NAME [--scale tiny|smoke|cpu|gpu] [--seeds S]
[--seed-offset K] [--workers W] [--dry-run] [--out DIR] [--fresh] [--debug]`.

Results go to `results/runs/<suite>-<scale>/` by default (git-ignored), never into the
committed reference results (`results/paper/`, ...): a newcomer's run sits beside them,
and its report compares its figures with theirs. Rerunning the same command resumes the
folder; a folder that holds another job's results (other code, configs or settings) is
refused with the way out: `--out` another folder, or `--fresh` to move it aside first. One
suite at a time writes a folder: a second one on the same `--out` is refused with one line
naming the first one's pid and host.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.common.cli import add_debug_flag, guarded
from harness.common.io import check_output_folder
from harness.common.lock import owned
from harness.studies.core.scale import SCALES
from harness.studies.suites.registry import DRY_RUN, SEEDED, SUITES

RUNS = Path("results") / "runs"  # ignored by git: every run's own folder lives here


def default_out(suite: str, scale: str) -> Path:
    return RUNS / f"{suite}-{scale}"


def run_suite(args: argparse.Namespace, out: Path) -> dict:
    """The suite into `out`, which this process holds for the whole run (a second suite on
    the same folder is refused, naming this one; harness.common.lock)."""
    check_output_folder(out)
    design = dict(seeds=args.seeds, seed_offset=args.seed_offset, workers=args.workers)
    if args.suite not in SEEDED:
        unset = dict(seeds=None, seed_offset=0, workers=None)
        given = [f"--{k.replace('_', '-')}" for k, v in design.items() if v != unset[k]]
        if given:
            raise ValueError(f"{', '.join(given)} apply to the suites {sorted(SEEDED)} only, "
                             f"not to {args.suite!r}: drop them")  # fmt: skip
        design = {}
    if args.dry_run:
        if args.suite not in DRY_RUN:
            raise ValueError(f"--dry-run applies to the suites {sorted(DRY_RUN)} only, not to "
                             f"{args.suite!r}: drop it")  # fmt: skip
        design["dry_run"] = True
    with owned(out, f"{args.suite} suite folder"):
        return SUITES[args.suite](out, args.scale, args.fresh, **design)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="suite to run")
    parser.add_argument(
        "--scale",
        default="cpu",
        choices=sorted(SCALES),
        help="a row of the scale table (harness.studies.core.scale): cpu, the embedded "
        "defaults (default); gpu, bigger sizes; smoke and tiny, the tests' sizes",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default results/runs/<suite>-<scale>/)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="training seeds of every main arm, paired between vanilla and TPDiff (default: "
        "the scale's, 3 at cpu; fewer than 3 marks every quality verdict provisional)",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="shift every seed of the job by K (a replica: the same design on other seeds)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs trained side by side, one thread each (default: the scale's, 2 at cpu)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="gpu-check: the same plumbing on this CPU (device tests on cpu, small shapes)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="if --out holds another job's results, move them to <out>.superseded-<time>/ first",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    out = args.out or default_out(args.suite, args.scale)
    t0 = time.perf_counter()
    summary = guarded("python -m harness.run", args.debug, lambda: run_suite(args, out))
    report = Path(summary.get("folder", out)) / "report.md"  # gpu-check: <out>/<device>/
    if report.exists():
        print(report.read_text())
    print(json.dumps(summary, indent=2))
    print(f"suite {args.suite!r} finished in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0 if summary.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
