"""Tables, plots, summary.json and report.md of a paper-suite folder, drawn from its files
alone: `python -m harness.report DIR` redraws everything without retraining.

Reads `evals.csv` (quality per run, step and renoise setting, with the training FLOPs and
compute time at that step), `cost_plans.csv` and `cost_stages.csv` (Table 1 and the
per-stage costs), `renoise_strip.pt`, `grids/` and `job.json` (what produced the folder);
the run folders are not needed, so committed results redraw on a fresh clone. With a
committed reference folder given, the report sets this folder's figures beside its.
Never imports the training code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from harness.io import save_figure, write_csv, write_json, write_text  # noqa: E402

STYLE = {  # method -> matplotlib style; colour, line and marker all differ
    "vanilla": dict(color="#1f77b4", linestyle="-", marker="o", label="vanilla"),
    "tpdiff": dict(color="#d62728", linestyle="--", marker="s", label="TPDiff"),
    "tpdiff-noalign": dict(
        color="#2ca02c", linestyle=":", marker="^", label="TPDiff, no alignment"
    ),
}
# arXiv 2503.09566 (METHOD.md sec. 7), per backbone role, quoted beside ours
PAPER = pd.DataFrame(
    [
        dict(backbone="dit", role="MiniFlux-vid (flow DiT)", inference_speedup=1.71,
             training_cost_ratio=round(1 / 2.13, 3), fvd_no_align=602.1, fvd_align=562.6,
             clipsim_no_align=29.34, clipsim_align=29.76),
        dict(backbone="unet", role="AnimateDiff (DDIM UNet)", inference_speedup=1.49,
             training_cost_ratio=0.5, fvd_no_align=834.5, fvd_align=782.6,
             clipsim_no_align=28.21, clipsim_align=28.91),
    ]
)  # fmt: skip


CURVE_COLUMNS = ("run", "backbone", "form", "variant", "step", "renoise", "train_flops",
                 "train_wall_s")  # fmt: skip


def load_curves(out: Path) -> pd.DataFrame:
    """evals.csv with training hours, sorted by backbone, variant, renoise and step."""
    evals = pd.read_csv(out / "evals.csv")
    missing = [c for c in CURVE_COLUMNS if c not in evals]
    if missing:
        raise ValueError(
            f"{out / 'evals.csv'} lacks the columns {missing} (written by an older harness); "
            "rerun the suite into a new folder (python -m harness.run --suite paper --out DIR)"
        )
    evals["train_hours"] = evals["train_wall_s"] / 3600
    return evals.sort_values(["backbone", "variant", "renoise", "step"]).reset_index(drop=True)


def quality_column(frame: pd.DataFrame) -> str:
    """The FVD column present: I3D when it was measured, else the embedded FVD-md."""
    for col in ("FVD-I3D", "FVD-md"):
        if col in frame:
            return col
    raise ValueError("evals.csv has no FVD column (FVD-I3D or FVD-md)")


def cost_to_reach(curve: pd.DataFrame, target: float, x: str) -> float | None:
    """`x` (cumulative cost) at which `curve` (sorted by step) first reaches quality
    <= target, linearly interpolated between evaluations; None if never."""
    q, c = curve["quality"].to_numpy(), curve[x].to_numpy()
    hits = np.flatnonzero(q <= target)
    if not len(hits):
        return None
    i = int(hits[0])
    if i == 0:
        return float(c[0])
    frac = (q[i - 1] - target) / (q[i - 1] - q[i])
    return float(c[i - 1] + frac * (c[i] - c[i - 1]))


def training_cost(curves: pd.DataFrame) -> pd.DataFrame:
    """Per backbone: TPDiff's cost to reach vanilla's final quality / vanilla's total cost,
    in training FLOPs and in compute hours ("not reached" as NaN + reached=False)."""
    rows = []
    for (backbone, form), g in curves[curves.renoise].groupby(["backbone", "form"]):
        van, tp = g[g.variant == "vanilla"], g[g.variant == "tpdiff"]
        if van.empty or tp.empty:
            continue
        target = float(van.quality.iloc[-1])
        row = dict(backbone=backbone, form=form, vanilla_final_quality=target)
        for x in ("train_flops", "train_hours"):
            reach = cost_to_reach(tp, target, x)
            row[f"tpdiff_{x}_to_reach"] = reach
            row[f"vanilla_{x}"] = float(van[x].iloc[-1])
            row[f"{x}_ratio"] = reach / row[f"vanilla_{x}"] if reach is not None else None
        row["reached"] = row["train_flops_ratio"] is not None
        row["tpdiff_final_quality"] = float(tp.quality.iloc[-1])
        rows.append(row)
    return pd.DataFrame(rows)


def _unit(values: np.ndarray, units: list[tuple[float, str]]) -> tuple[float, str]:
    top = float(np.nanmax(values)) if len(values) else 1.0
    for scale, name in units:
        if top >= scale:
            return scale, name
    return units[-1]


def plot_quality(curves: pd.DataFrame, x: str, path: Path, quality: str) -> None:
    """Quality vs cumulative training cost, a panel per backbone/form, a line per variant."""
    pairs = sorted(curves[["backbone", "form"]].drop_duplicates().itertuples(index=False))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4), squeeze=False)
    if x == "train_flops":
        scale, unit = _unit(
            curves[x].to_numpy(), [(1e15, "PFLOPs"), (1e12, "TFLOPs"), (1, "GFLOPs")]
        )
        scale = scale if unit != "GFLOPs" else 1e9
        xlabel = f"cumulative training compute ({unit}; fvcore, attention incl., fwd+bwd = 3x fwd)"
    else:
        scale, unit = _unit(curves[x].to_numpy(), [(1.0, "hours"), (0.0, "minutes")])
        scale = 1.0 if unit == "hours" else 1 / 60
        xlabel = f"training wall-clock ({unit}; compute only, data loading excluded)"
    for ax, (backbone, form) in zip(axes[0], pairs):
        g = curves[(curves.backbone == backbone) & (curves.form == form) & curves.renoise]
        for variant, style in STYLE.items():
            v = g[g.variant == variant]
            if not v.empty:
                ax.plot(v[x] / scale, v.quality, markersize=6, linewidth=2, **style)
        ax.set_title(f"{backbone} + {form}")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(f"{quality} (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Quality vs training cost (Fig. 5 analogue; {quality})")
    fig.tight_layout()
    save_figure(fig, path)


def plot_renoise_strip(strip: dict, path: Path) -> None:
    """Rows: each prompt with and without renoising; columns: frames."""
    rows = []
    for i, caption in enumerate(strip["captions"]):
        for key, label in (("renoise", "renoise on"), ("no_renoise", "renoise off")):
            rows.append((f"{caption}\n{label}", strip[key][i]))
    frames = rows[0][1].shape[1]
    fig, axes = plt.subplots(len(rows), frames, figsize=(0.8 * frames + 1.6, 0.95 * len(rows)))
    for r, (label, video) in enumerate(rows):
        for f in range(frames):
            ax = axes[r, f]
            img = ((video[:, f].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if f == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=7)
    fig.suptitle("Renoising on vs off (Fig. 6 analogue): same prompts, same seeds", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def _final(curves: pd.DataFrame) -> pd.DataFrame:
    last = curves.groupby("run").step.transform("max")
    return curves[curves.step == last]


def _md(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt) if not frame.empty else "(none)"


def build(out: str | Path, reference: str | Path | None = None) -> dict:
    """Write every table, plot, summary.json and report.md of `out`; returns the summary.
    `reference`: a committed results folder whose summary.json is set beside this one's."""
    out = Path(out)
    curves = load_curves(out)
    quality = quality_column(curves)
    curves["quality"] = curves[quality]
    write_csv(out / "curves.csv", curves)
    plot_quality(curves, "train_flops", out / "fig5_quality_vs_flops.png", quality)
    plot_quality(curves, "train_hours", out / "fig5_quality_vs_time.png", quality)
    costs = training_cost(curves)
    write_csv(out / "training_cost.csv", costs)

    final = _final(curves)
    agreement = "CLIPSIM" if "CLIPSIM" in final else "PA-md"
    on = final[final.renoise & final.variant.str.startswith("tpdiff")]
    align = on[["backbone", "form", "variant", quality, agreement]].assign(
        alignment=lambda d: np.where(d.variant == "tpdiff", "on", "off")
    )
    write_csv(out / "table3_alignment.csv", align)
    tp = final[final.variant == "tpdiff"]
    renoise = tp[["backbone", "form", "renoise", "flicker", "flicker-real", quality, agreement]]
    write_csv(out / "fig6_renoise.csv", renoise)
    if (out / "renoise_strip.pt").exists():
        strip = torch.load(out / "renoise_strip.pt", weights_only=False)
        plot_renoise_strip(strip, out / "fig6_renoise_strip.png")

    plans = pd.read_csv(out / "cost_plans.csv")
    stages = pd.read_csv(out / "cost_stages.csv")
    table1 = plans[
        ["backbone", "form", "vanilla_sampling_s", "tpdiff_sampling_s", "inference_speedup",
         "flop_ratio_bound", "measured_over_bound"]
    ]  # fmt: skip
    write_csv(out / "table1_latency.csv", table1)

    job = json.loads((out / "job.json").read_text()) if (out / "job.json").is_file() else {}
    summary: dict = {
        "suite": job.get("suite"),
        "scale": job.get("scale"),
        "code": job.get("code"),
        "n": job.get("n"),
        "quality_metric": quality,
        "agreement_metric": agreement,
        "backbones": {},
    }
    for p in plans.to_dict("records"):
        b = p["backbone"]
        entry = {k: p[k] for k in ("form", "inference_speedup", "flop_ratio_bound",
                                   "measured_over_bound", "training_step_cost_ratio",
                                   "training_step_flop_ratio")}  # fmt: skip
        c = costs[costs.backbone == b]
        if not c.empty:
            for key, col in (("training_cost_ratio", "train_flops_ratio"),
                             ("training_time_ratio", "train_hours_ratio")):  # fmt: skip
                value = c[col].iloc[0]
                entry[key] = "not reached" if pd.isna(value) else float(value)
        for variant in ("vanilla", "tpdiff", "tpdiff-noalign"):
            v = final[(final.backbone == b) & (final.variant == variant) & final.renoise]
            if not v.empty:
                entry[f"{variant}_final_{quality}"] = float(v[quality].iloc[0])
        r = tp[(tp.backbone == b) & ~tp.renoise]
        if not r.empty:
            entry[f"no_renoise_final_{quality}"] = float(r[quality].iloc[0])
            entry["no_renoise_flicker"] = float(r.flicker.iloc[0])
        summary["backbones"][b] = {k: _plain(v) for k, v in entry.items()}
    write_json(out / "summary.json", summary)
    beside = compare_with_reference(summary, Path(reference)) if reference else []
    write_text(out / "report.md", _report_md(out, quality, agreement, table1, stages, costs,
                                             align, renoise, summary, beside))  # fmt: skip
    return summary


def compare_with_reference(summary: dict, reference: Path) -> list[str]:
    """Markdown lines setting this summary's per-backbone figures beside those of the
    committed `reference` folder, with what produced each and whether they are comparable."""
    path = reference / "summary.json"
    if not path.is_file():
        return [f"No committed reference at `{reference}` to compare with."]
    ref = json.loads(path.read_text())
    rows = []
    for backbone, mine in summary["backbones"].items():
        theirs = ref.get("backbones", {}).get(backbone, {})
        for key in sorted(set(mine) | set(theirs)):
            if key == "form":
                continue
            rows.append(dict(backbone=backbone, figure=key, this_run=mine.get(key),
                             committed=theirs.get(key)))  # fmt: skip
    lines = [
        f"This run: scale `{summary.get('scale')}`, code `{summary.get('code')}`, "
        f"n = {summary.get('n')}. Committed reference `{reference.name}/`: scale "
        f"`{ref.get('scale', 'not recorded')}`, code `{ref.get('code', 'not recorded')}`, "
        f"n = {ref.get('n', 'not recorded')}.",
        "",
    ]
    if ref.get("scale") != summary.get("scale"):
        lines += [
            "**Not comparable as they stand:** the two were made at different or unrecorded "
            "scales; differences below say nothing about either method.",
            "",
        ]
    return lines + [_md(pd.DataFrame(rows), ".4g"), ""]


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _report_md(out, quality, agreement, table1, stages, costs, align, renoise, summary,
               beside) -> str:  # fmt: skip
    grids = sorted((out / "grids").glob("*.png")) if (out / "grids").is_dir() else []
    lines = [
        "# TPDiff vs vanilla: paper-suite report",
        "",
        f"Quality: **{quality}** (lower is better); prompt agreement: **{agreement}** "
        "(higher is better). `-md` metrics use the harness's own moving-digits evaluator and "
        "are not comparable with published FVD / CLIPSIM. FLOPs: 2 x fvcore MACs, attention "
        "included, training = 3 x forward. Files: `curves.csv`, `evals.csv`, `runs/*/log.jsonl`.",
        "",
        "## Table 1 analogue: sampling latency at 30 steps (batch 1)",
        "",
        _md(table1),
        "",
        "The paper's figures (MSR-VTT zero-shot FVD / CLIPSIM, 30 steps on GPUs) beside ours:",
        "",
        _md(PAPER),
        "",
        "## Figure 5 analogue: quality vs training cost",
        "",
        "![quality vs FLOPs](fig5_quality_vs_flops.png)",
        "",
        "![quality vs time](fig5_quality_vs_time.png)",
        "",
        "Training cost ratio = TPDiff's cost to reach vanilla's final quality / vanilla's "
        "total cost (`training_cost.csv`; empty = not reached). Paper: 1/2.13 = 0.47 "
        "(flow DiT) and 1/2 (DDIM UNet) in GPU hours.",
        "",
        _md(costs),
        "",
        "## Table 3 analogue: data-noise alignment",
        "",
        _md(align),
        "",
        "## Figure 6 analogue: renoising",
        "",
        _md(renoise),
        "",
        "![renoise strip](fig6_renoise_strip.png)",
        "",
        "## Per-stage cost",
        "",
        _md(stages, ".4g"),
        "",
        "## Samples",
        "",
        *[f"**{g.stem}**\n\n![{g.stem}](grids/{g.name})\n" for g in grids],
        *(["## Beside the committed reference", "", *beside] if beside else []),
        "## Summary",
        "",
        "```json",
        json.dumps(summary, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


COMMITTED = Path(__file__).resolve().parent.parent / "results" / "paper"


def main(argv: list[str] | None = None) -> int:
    from harness.cli import add_debug_flag, guarded

    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__)
    parser.add_argument("folder", type=Path, help="a paper-suite results folder")
    parser.add_argument(
        "--reference",
        type=Path,
        default=COMMITTED,
        help="committed results to set beside this folder's (default results/paper; "
        "skipped when FOLDER is that folder)",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    missing = [n for n in ("evals.csv", "cost_plans.csv") if not (args.folder / n).exists()]
    if missing:
        parser.error(
            f"{args.folder} lacks {missing}: run python -m harness.run --suite paper "
            f"--out {args.folder} first"
        )
    same = args.folder.resolve() == args.reference.resolve()
    reference = None if same else args.reference
    summary = guarded("python -m harness.report", args.debug, lambda: build(args.folder, reference))
    print(json.dumps(summary, indent=2))
    print(f"report: {args.folder / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
