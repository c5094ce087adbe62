"""Named ablations: `python -m harness.studies.ablate NAME [NAME ...] [--scale tiny|cpu|gpu]
[--out DIR]` (`all` runs every one, `--list` lists them; also `tpdiff-ablate`, `nox -s ablate
-- NAME`).

Each variant of an ablation (`ablations.ABLATIONS`) is a config difference on the TPDiff
baseline of the scale; it is trained and scored by `harness.studies.trials.train_and_score`, the
same path as the sweep, so variants that differ only in sampling share a trained run and
a rerun reuses every finished run and score. Writes `<out>/<name>/table.csv` (a row per
variant: its config changes, FVD-md, PA-md, flicker, training and sampling GFLOPs,
training wall time), `<name>.png` and `report.md`; trained runs live in `<out>/runs/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ablations import ABLATIONS, PAPER  # noqa: E402
from harness.common.io import save_figure, write_csv, write_json, write_text  # noqa: E402
from harness.metrics import MetricOptions  # noqa: E402
from harness.studies.trials import (  # noqa: E402
    METRICS,
    QUALITY,
    SCALES,
    SCORE_COLUMNS,
    train_and_score,
    trial_config,
)

# the sweep's metrics and the motion metric: stutter and the motion gap show stage-boundary
# artifacts (repeated frames), the renoise question
ABLATION_METRICS = [*METRICS, "motion"]
MOTION_COLUMNS = ("motion-gap", "motion-gap-lo", "motion-gap-hi", "stutter", "stutter-real")
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
        scored = train_and_score(cfg, scale, options, metrics=ABLATION_METRICS)
        for row in scored:  # every snapshot: the quality-against-cost curve
            head = dict(ablation=name, variant=label, changes=json.dumps(changes), run=cfg.name)
            curve.append(head | {k: row[k] for k in ("step", "n", "train_flops", "git", *COLUMNS)})
        rows.append(curve[-1])
    table = pd.DataFrame(rows)
    folder = out / name
    write_csv(folder / "curves.csv", pd.DataFrame(curve))
    write_csv(folder / "table.csv", table)
    plot_ablation(table, ablation.about, folder / f"{name}.png")
    write_text(folder / "report.md", _report_md(name, ablation.about, table, scale_name))
    return table


def plot_ablation(table: pd.DataFrame, about: str, path: Path) -> None:
    """Quality and the two costs per variant, the paper's setting in a darker colour."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), constrained_layout=True)
    colours = ["#444444" if v == PAPER else "#4c9be8" for v in table["variant"]]
    panels = [
        (QUALITY, f"{QUALITY} (lower is better)"),
        ("train_gflops", "training GFLOPs / sample-step"),
        ("infer_gflops", "sampling GFLOPs / video"),
    ]
    for ax, (column, label) in zip(axes, panels):
        ax.barh(table["variant"], table[column], color=colours)
        ax.set_xlabel(label)
        ax.invert_yaxis()
    axes[0].set_ylabel("variant")
    fig.suptitle(about, fontsize=10)
    save_figure(fig, path)


def _report_md(name: str, about: str, table: pd.DataFrame, scale: str) -> str:
    shown = table.drop(columns=["ablation", "run"])
    return "\n".join(
        [
            f"# Ablation `{name}`: {about}",
            "",
            f"Scale `{scale}`; scores of the last snapshot (step {int(table['step'].max())}, "
            f"n = {int(table['n'].max())} generated and real videos). Row `{PAPER}` is the "
            "paper's setting; `changes` is each variant's config difference.",
            "",
            shown.to_markdown(index=False, floatfmt=".4g"),
            "",
            f"![{name}]({name}.png)",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.studies.ablate", description=__doc__)
    parser.add_argument("names", nargs="*", help="ablations to run, or all")
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    parser.add_argument("--out", type=Path, default=Path("results/ablations"))
    parser.add_argument("--list", action="store_true", help="list the ablations and exit")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for key, ab in ABLATIONS.items():
            print(f"{key:16s} {ab.about}: {', '.join(ab.variants)}")
        return 0
    names = list(ABLATIONS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        sys.exit(f"unknown ablation(s) {unknown}; choose from {', '.join(ABLATIONS)} or all")
    for name in names:
        ablate(name, args.scale, args.out)
    # every ablation run so far in this folder, not only this call's
    tables = sorted(args.out.glob("*/table.csv"))
    summary = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    write_csv(args.out / "summary.csv", summary)
    write_json(args.out / "summary.json", {"scale": args.scale, "ran": names})
    print(summary.drop(columns=["run", "changes"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
