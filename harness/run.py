"""`python -m harness.run --suite NAME [--scale cpu|gpu] [--out DIR]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.suites import SUITES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__)
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="suite to run")
    parser.add_argument(
        "--scale",
        default="cpu",
        choices=("cpu", "gpu"),
        help="cpu: embedded defaults (default); gpu: bigger sizes",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/<suite>/)"
    )
    args = parser.parse_args(argv)
    out = args.out or Path("results") / args.suite
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = SUITES[args.suite](out, args.scale)
    report = out / "report.md"
    if report.exists():
        print(report.read_text())
    print(json.dumps(summary, indent=2))
    print(f"suite {args.suite!r} finished in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0 if summary.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
