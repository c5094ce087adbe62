"""Named ablations: `python -m harness.studies.ablate NAME [NAME ...] [--scale tiny|cpu|gpu]
[--out DIR]` (`all` runs every one, `--list` lists them, `--finish` only redoes the steps
after training; also `tpdiff-ablate`, `nox -s ablate -- NAME`).

Each variant of an ablation (`ablations.ABLATIONS`) is a config difference on the TPDiff
baseline of the scale; it is trained and scored by `harness.studies.trials.train_and_score`,
the same path as the sweep, so variants that differ only in sampling share a trained run and
a rerun reuses every finished run and score. A variant the scale cannot run (K = 5 needs a
multiple of 16 frames) is skipped with the reason. Writes `<out>/<name>/table.csv` (a row
per variant: config changes, the final FVD-md with its interval, PA-md, flicker, stutter and
the motion gap, training and sampling GFLOPs, training wall time) and `<name>/curves.csv`
(every scored snapshot); trained runs live in `<out>/runs/`. Then
`harness.studies.ablation_finish` measures speed and samples strips, and
`harness.studies.ablation_report` writes summary.csv / summary.json, plots and report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ablations import ABLATIONS  # noqa: E402
from harness.common.cli import guarded  # noqa: E402
from harness.common.io import write_csv  # noqa: E402
from harness.common.lock import owned  # noqa: E402
from harness.metrics import MetricOptions  # noqa: E402
from harness.pipeline.build import plan_for  # noqa: E402
from harness.studies.ablation_commands import commands_table  # noqa: E402
from harness.studies.ablation_finish import finish  # noqa: E402
from harness.studies.ablation_report import SHOWN, build  # noqa: E402
from harness.studies.trials import (  # noqa: E402
    ABLATION_METRICS,
    MOTION_COLUMNS,
    QUALITY,
    SCALES,
    SCORE_COLUMNS,
    train_and_score,
    trial_config,
)

COLUMNS = [QUALITY, *SCORE_COLUMNS, *MOTION_COLUMNS]


def ablate(
    name: str, scale_name: str, out: Path, options: MetricOptions | None = None
) -> pd.DataFrame:
    """Train and score every variant of ablation `name`; returns (and writes) its table."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)} or all")
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    options = options or MetricOptions(evaluator=scale.evaluator, device=scale.device)
    ablation = ABLATIONS[name]
    rows, curve = [], []
    for label, changes in tqdm(ablation.variants.items(), desc=name):
        cfg = trial_config(scale, out / "runs", **changes)
        try:
            plan_for(cfg)
        except ValueError as err:  # e.g. more stages than the frame count allows
            print(f"{name}/{label} skipped at scale {scale_name}: {err}")
            continue
        scored = train_and_score(cfg, scale, options, metrics=ABLATION_METRICS)
        for row in scored:  # every snapshot: the quality-against-cost curve
            head = dict(ablation=name, variant=label, changes=json.dumps(changes), run=cfg.name)
            curve.append(head | {k: row[k] for k in ("step", "n", "train_flops", "git", *COLUMNS)})
        rows.append(curve[-1])
    table = pd.DataFrame(rows)
    folder = out / name
    write_csv(folder / "curves.csv", pd.DataFrame(curve))
    write_csv(folder / "table.csv", table)
    return table


def run_all(names: list[str], args: argparse.Namespace) -> dict:
    """Train and score `names` into --out (held by this process for the whole study), then
    finish and report."""
    with owned(args.out, "ablation study folder"):
        for name in [] if args.finish else names:
            ablate(name, args.scale, args.out)
        finish(args.out, args.scale)
        return build(args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.studies.ablate", description=__doc__)
    parser.add_argument("names", nargs="*", help="ablations to run, or all")
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    parser.add_argument("--out", type=Path, default=Path("results/runs/ablations"),
                        help="results folder (default results/runs/ablations; the committed "
                        "run is results/ablations)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the ablations and exit")
    parser.add_argument("--finish", action="store_true",
                        help="only measure speed, sample strips and redraw the report from the "
                        "trained variants in --out")  # fmt: skip
    parser.add_argument("--commands", type=Path, metavar="CONFIG",
                        help="print the commands that run the ablations on a GPU config (e.g. "
                        "baselines/gpu/wan-tpdiff.toml) with each variant's expected cost, "
                        "and exit")  # fmt: skip
    args = parser.parse_args(argv)
    if args.list or not (args.names or args.finish or args.commands):
        for key, ab in ABLATIONS.items():
            print(f"{key:16s} {ab.about}: {', '.join(ab.variants)}")
        return 0
    names = list(ABLATIONS) if args.names in (["all"], []) else args.names
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        sys.exit(f"unknown ablation(s) {unknown}; choose from {', '.join(ABLATIONS)} or all")
    made = args.out / "ablations.json"
    if made.is_file() and json.loads(made.read_text())["scale"] != args.scale:
        sys.exit(f"{args.out} holds ablations at scale {json.loads(made.read_text())['scale']}, "
                 f"not {args.scale}: pass another --out")  # fmt: skip
    if args.commands:
        rows = pd.DataFrame(commands_table(args.commands, names))
        print(rows.fillna("").to_markdown(index=False))
        return 0
    summary = guarded(parser.prog, False, lambda: run_all(names, args))
    rows = pd.read_csv(args.out / "summary.csv")
    print(rows[[c for c in SHOWN if c in rows]].to_string(index=False))
    print(f"report: {args.out / 'report.md'} ({len(summary['ablations'])} ablations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
