"""Tables, plots, verdicts, summary.json and report.md of a paper-suite folder, drawn from
its files alone: `python -m harness.report DIR` redraws everything without retraining.

Reads `evals.csv` (one row per score: run, backbone, variant, role `curve` or `final`,
step, renoise, n, training FLOPs and compute time at that step, its identity and the metric
columns with their bootstrap intervals), `references.csv` (real vs real, noise vs real and
chance agreement at each n), `cost_plans.csv` and `cost_stages.csv`, `renoise_strip.pt`,
`grids/` and `job.json` (what produced the folder). The run folders are not needed, so a
results folder redraws on a fresh clone. Curves use the curve metric (KVD-md: unbiased at
the small n of a curve point); final figures use FVD-md at the final n. The verdict rules
are in `harness.studies.core.verdicts`. With a committed reference folder given, the report
sets this folder's figures beside its. Never imports the training code.

It refuses a torn or inconsistent folder and writes all its outputs or none: every input is
read whole and checked first (`load`, `harness.studies.core.inputs`: a file cut mid-line, a row
with the wrong number of fields, a non-number where a number belongs, an empty identity cell,
two rows for the same score, JSON that does not parse, an n of evals.csv without its
references), and one bad file ends the command with one line naming it, the problem and the
fix (exit 2), before anything is written. The outputs are drawn into a staging folder beside
the folder and renamed into it only once all of them are written (`harness.studies.core.staging`);
the inputs are never rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.common.io import plain, write_csv, write_json, write_text
from harness.studies.core import verdicts
from harness.studies.core.inputs import load_torch_strict, read_csv_strict, read_json_strict
from harness.studies.core.plots import plot_quality, plot_renoise_strip
from harness.studies.core.staging import staged
from harness.studies.core.verdicts import Curve, Estimate

# arXiv 2503.09566 (docs/method.md sec. 9), per backbone role, quoted beside ours
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

EVAL_COLUMNS = ("run", "backbone", "form", "variant", "role", "seed", "step", "renoise", "n",
                "train_flops", "train_wall_s")  # fmt: skip
FINAL = "FVD-md"  # the final-point quality metric (at a sound n)
AGREEMENT = "PA-md-digit"
SCORES = tuple(f"{m}{s}" for m in ("FVD-md", "KVD-md", "motion-gap", "CLIPSIM")
               for s in ("", "-lo", "-hi")) + ("PA-md", "PA-md-digit", "stutter",
                                             "stutter-real", "flicker", "flicker-real")  # fmt: skip
PLAN_COLUMNS = ("backbone", "form", "vanilla_sampling_s", "tpdiff_sampling_s",
                "inference_speedup", "flop_ratio_bound", "measured_over_bound",
                "training_step_cost_ratio", "training_step_flop_ratio")  # fmt: skip
REFERENCE_KINDS = ("real", "noise", "chance")
FIX = ("restore the file from git (a committed folder) or rerun the suite into a new folder "
       "(python -m harness.run --suite paper --out NEW)")  # fmt: skip


@dataclass(frozen=True)
class Inputs:
    """Everything a paper-suite report reads, checked whole and consistent before anything
    is written (`load`)."""

    evals: pd.DataFrame  # one row per score, sorted; + train_hours
    refs: dict[tuple[str, int], pd.Series]  # (kind, n) -> references.csv row
    plans: pd.DataFrame  # cost_plans.csv
    stages: pd.DataFrame  # cost_stages.csv
    job: dict  # job.json ({} when absent)
    strip: dict | None  # renoise_strip.pt
    reference: dict | None  # the committed reference folder's summary.json


def load_evals(out: Path) -> pd.DataFrame:
    """evals.csv with training hours, sorted by backbone, variant, role, renoise and step."""
    path = out / "evals.csv"
    evals = read_csv_strict(path, FIX, filled=EVAL_COLUMNS,
                            numeric=("seed", "step", "n", "train_flops", "train_wall_s", *SCORES),
                            flags=("renoise",), key=("run", "role", "step", "renoise"))  # fmt: skip
    odd = sorted(set(evals["role"]) - {"curve", "final"})
    if odd:
        raise ValueError(f"{path} holds the roles {odd}, neither curve nor final: {FIX}")
    evals["train_hours"] = evals["train_wall_s"] / 3600
    order = ["backbone", "variant", "seed", "role", "renoise", "step"]
    return evals.sort_values(order).reset_index(drop=True)


def load_references(out: Path, ns: Iterable[int] = ()) -> dict[tuple[str, int], pd.Series]:
    """(kind, n) -> the reference row (kind: real, noise, chance); each n of `ns` (those
    evals.csv scores at) must have all three kinds."""
    path = out / "references.csv"
    if not path.is_file():
        return {}
    frame = read_csv_strict(path, FIX, filled=("kind", "n"), numeric=("n", *SCORES),
                            key=("kind", "n"))  # fmt: skip
    refs = {(r.kind, int(r.n)): r for _, r in frame.iterrows()}
    for n in sorted(ns):
        lacking = [k for k in REFERENCE_KINDS if (k, n) not in refs]
        if lacking:
            raise ValueError(
                f"{path} has no {lacking} rows at n = {n}, where evals.csv scores at that n: "
                "rerun the suite into the folder (python -m harness.run --suite paper --out "
                f"{out} scores what is missing) or restore the file from git"
            )
    return refs


def load(out: Path, reference: Path | None = None) -> Inputs:
    """Read and check every input of the report of `out` (and `reference`/summary.json);
    raises ValueError / FileNotFoundError naming the file, the problem and the fix."""
    evals = load_evals(out)
    plans = read_csv_strict(out / "cost_plans.csv", FIX, filled=PLAN_COLUMNS,
                            numeric=PLAN_COLUMNS[2:], key=("backbone",))  # fmt: skip
    stages = read_csv_strict(out / "cost_stages.csv", FIX, filled=("backbone",))
    job = read_json_strict(out / "job.json", FIX) if (out / "job.json").is_file() else {}
    strip_path = out / "renoise_strip.pt"
    strip = load_torch_strict(strip_path, FIX) if strip_path.is_file() else None
    committed = reference / "summary.json" if reference else None
    ref = None
    if committed is not None and committed.is_file():
        ref = read_json_strict(committed, "restore it from git or pass another --reference")
    refs = load_references(out, {int(n) for n in evals["n"]})
    return Inputs(evals, refs, plans, stages, job, strip, ref)


def curve_metric(curves: pd.DataFrame) -> str:
    """KVD-md when the curve points have it (unbiased at small n), else FVD-md."""
    return "KVD-md" if "KVD-md" in curves and curves["KVD-md"].notna().all() else FINAL


def as_curve(rows: pd.DataFrame, metric: str, x: str) -> Curve:
    rows = rows.sort_values(x)
    q = rows[metric].to_numpy(float)
    lo = rows[f"{metric}-lo"].to_numpy(float) if f"{metric}-lo" in rows else q
    hi = rows[f"{metric}-hi"].to_numpy(float) if f"{metric}-hi" in rows else q
    return Curve(rows[x].to_numpy(float), q, lo, hi)


def estimate(row: pd.Series | None, metric: str) -> Estimate | None:
    if row is None or metric not in row or pd.isna(row[metric]):
        return None
    lo = row.get(f"{metric}-lo", row[metric])
    hi = row.get(f"{metric}-hi", row[metric])
    return Estimate(float(row[metric]), float(lo), float(hi))


def pick(finals: pd.DataFrame, backbone: str, variant: str, renoise: bool = True,
         seed: int = 0) -> pd.Series | None:  # fmt: skip
    """The final score of one run (seed) and sampling setting, or None."""
    hit = finals[(finals.backbone == backbone) & (finals.variant == variant)
                 & (finals.renoise == renoise) & (finals.seed == seed)]  # fmt: skip
    return hit.iloc[-1] if len(hit) else None


def seed_spread(finals: pd.DataFrame, backbone: str) -> float | None:
    """Largest |final FVD-md(seed s) - final FVD-md(seed 0)| over the variants of `backbone`
    trained again with another seed, or None when none was."""
    gaps = []
    for variant in ("vanilla", "tpdiff"):
        base = pick(finals, backbone, variant)
        for seed in sorted(set(finals.seed) - {0}):
            other = pick(finals, backbone, variant, seed=seed)
            if base is not None and other is not None:
                gaps.append(abs(float(other[FINAL]) - float(base[FINAL])))
    return max(gaps) if gaps else None


def training_cost(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per backbone and cost axis: the time-to-target figures (harness.studies.core.verdicts)."""
    rows = []
    for (backbone, form), g in curves.groupby(["backbone", "form"]):
        van, tp = g[g.variant == "vanilla"], g[g.variant == "tpdiff"]
        if len(van) < 3 or len(tp) < 3:
            continue
        for x in ("train_flops", "train_hours"):
            t = verdicts.time_to_target(as_curve(van, metric, x), as_curve(tp, metric, x))
            rows.append(dict(backbone=backbone, form=form, axis=x, metric=metric,
                             vanilla_budget=float(van[x].max()),
                             tpdiff_budget=float(tp[x].max()), **t))  # fmt: skip
    return pd.DataFrame(rows)


def _noise(row: pd.Series | None, refs: dict, name: str) -> str | None:
    if row is None:
        return f"{name} has no final score"
    n = int(row["n"])
    noise, chance = refs.get(("noise", n)), refs.get(("chance", n))
    if noise is None or chance is None:
        return f"no noise / chance reference at n = {n} to judge {name} against"
    return verdicts.noise_level(float(row[FINAL]), float(noise[FINAL]),
                                float(row[AGREEMENT]), float(chance[AGREEMENT]), name,
                                n)  # fmt: skip


def judge(curves, finals, refs, plans, metric) -> list[dict]:
    """One verdict per claim of the paper and backbone (harness.studies.core.verdicts)."""
    out = []
    for plan in plans.to_dict("records"):
        b = plan["backbone"]
        van, tp = pick(finals, b, "vanilla"), pick(finals, b, "tpdiff")
        noise_van, noise_tp = _noise(van, refs, f"{b} vanilla"), _noise(tp, refs, f"{b} TPDiff")
        out.append(verdicts.inference(b, float(plan["inference_speedup"]), noise_tp))
        g = curves[curves.backbone == b]
        v_rows, t_rows = g[g.variant == "vanilla"], g[g.variant == "tpdiff"]
        if len(v_rows) >= 3 and len(t_rows) >= 3:
            out.append(verdicts.training(b, as_curve(v_rows, metric, "train_flops"),
                                         as_curve(t_rows, metric, "train_flops"),
                                         [noise_van, noise_tp]))  # fmt: skip
        else:
            out.append(verdicts.Verdict("training", b, "inconclusive", {},
                                        "fewer than 3 curve points per run"))  # fmt: skip
        noalign = pick(finals, b, "tpdiff-noalign")
        out.append(verdicts.alignment(
            b, estimate(tp, FINAL), estimate(noalign, FINAL), seed_spread(finals, b),
            [noise_tp, _noise(noalign, refs, f"{b} TPDiff without alignment")
             if noalign is not None else None]))  # fmt: skip
        off = pick(finals, b, "tpdiff", renoise=False)
        on_est, off_est = estimate(tp, "motion-gap"), estimate(off, "motion-gap")
        if on_est is None or off_est is None:
            missing = "no motion-gap scores with and without renoising"
            out.append(verdicts.Verdict("renoise", b, "inconclusive", {}, missing))
        else:
            out.append(verdicts.renoise(b, on_est, off_est, [noise_tp]))
    return [plain(v.row() | {"claim_text": verdicts.CLAIMS[v.claim]}) for v in out]


def build(out: str | Path, reference: str | Path | None = None) -> dict:
    """Write every table, plot, summary.json and report.md of `out`; returns the summary.
    `reference`: a committed results folder whose summary.json is set beside this one's.
    Every input is checked first (`load`); the outputs are drawn into a staging folder and
    moved into `out` only when all of them are written (harness.studies.core.staging)."""
    out = Path(out)
    inputs = load(out, Path(reference) if reference else None)
    with staged(out) as stage:
        summary = draw(inputs, out, stage, Path(reference) if reference else None)
    return summary


def draw(inputs: Inputs, out: Path, stage: Path, reference: Path | None) -> dict:
    """Write the outputs of the folder `out` into `stage` from its checked `inputs`."""
    evals, refs, plans = inputs.evals, inputs.refs, inputs.plans
    curves = evals[(evals.role == "curve") & evals.renoise & (evals.seed == 0)]
    finals = evals[evals.role == "final"]
    metric = curve_metric(curves)
    write_csv(stage / "curves.csv", curves)
    costs = training_cost(curves, metric)
    write_csv(stage / "training_cost.csv", costs)
    flops = costs[costs.axis == "train_flops"] if len(costs) else costs
    targets = {r.backbone: r.target for r in flops.itertuples()} if len(flops) else {}
    plot_quality(curves, "train_flops", stage / "fig5_quality_vs_flops.png", metric, targets)
    plot_quality(curves, "train_hours", stage / "fig5_quality_vs_time.png", metric, targets)

    agreement = "CLIPSIM" if "CLIPSIM" in finals else AGREEMENT
    main = finals[(finals.seed == 0) & finals.renoise]
    keep = [c for c in ("backbone", "form", "variant", "n", FINAL, f"{FINAL}-lo", f"{FINAL}-hi",
                        agreement) if c in main]  # fmt: skip
    align = main[main.variant.str.startswith("tpdiff")][keep].assign(
        alignment=lambda d: np.where(d.variant == "tpdiff", "on", "off")
    )
    write_csv(stage / "table3_alignment.csv", align)
    tp = finals[(finals.variant == "tpdiff") & (finals.seed == 0)]
    renoise_cols = [c for c in ("backbone", "form", "renoise", "n", "motion-gap", "motion-gap-lo",
                                "motion-gap-hi", "stutter", "stutter-real", "flicker",
                                "flicker-real", FINAL, agreement) if c in tp]  # fmt: skip
    renoise = tp[renoise_cols]
    write_csv(stage / "fig6_renoise.csv", renoise)
    if inputs.strip is not None:
        plot_renoise_strip(inputs.strip, stage / "fig6_renoise_strip.png")

    table1 = plans[
        ["backbone", "form", "vanilla_sampling_s", "tpdiff_sampling_s", "inference_speedup",
         "flop_ratio_bound", "measured_over_bound"]
    ]  # fmt: skip
    write_csv(stage / "table1_latency.csv", table1)
    found = judge(curves, finals, refs, plans, metric)
    write_csv(stage / "verdicts.csv", pd.DataFrame(found).drop(columns=["numbers"]))

    summary = _summary(inputs.job, metric, agreement, plans, costs, finals, refs, found)
    write_json(stage / "summary.json", summary)
    beside = compare_with_reference(summary, reference, inputs.reference) if reference else []
    write_text(stage / "report.md", _report_md(out, metric, agreement, table1, inputs.stages,
                                               costs, align, renoise, summary,
                                               beside))  # fmt: skip
    return summary


def _summary(job, metric, agreement, plans, costs, finals, refs, found) -> dict:
    n_final = int(finals.n.max()) if len(finals) else None
    n_curve = job.get("curve_n")
    summary: dict = {
        "suite": job.get("suite"),
        "scale": job.get("scale"),
        "code": job.get("code"),
        "n": n_final,
        "n_curve": n_curve,
        "curve_metric": metric,
        "quality_metric": FINAL,
        "agreement_metric": agreement,
    }
    for kind in ("real", "noise"):
        row = refs.get((kind, n_final))
        for col in (FINAL, f"{FINAL}-lo", f"{FINAL}-hi"):
            summary[f"{kind}_{col}"] = float(row[col]) if row is not None else None
        curve_row = refs.get((kind, n_curve)) if n_curve else None
        if curve_row is not None and "KVD-md" in curve_row:
            summary[f"{kind}_KVD-md_at_n_curve"] = float(curve_row["KVD-md"])
    chance = refs.get(("chance", n_final))
    summary[f"chance_{AGREEMENT}"] = float(chance[AGREEMENT]) if chance is not None else None
    summary["verdicts"] = found
    summary["backbones"] = {}
    for p in plans.to_dict("records"):
        b = p["backbone"]
        entry = {k: p[k] for k in ("form", "inference_speedup", "flop_ratio_bound",
                                   "measured_over_bound", "training_step_cost_ratio",
                                   "training_step_flop_ratio")}  # fmt: skip
        for axis, key in (("train_flops", "training_cost_ratio"),
                          ("train_hours", "training_time_ratio")):  # fmt: skip
            c = costs[(costs.backbone == b) & (costs.axis == axis)] if len(costs) else costs
            if len(c):
                ratio = c["ratio"].iloc[0]
                entry[key] = "not reached" if ratio is None or pd.isna(ratio) else float(ratio)
                entry[f"{key}_lo"], entry[f"{key}_hi"] = (
                    c["ratio_lo"].iloc[0],
                    c["ratio_hi"].iloc[0],
                )
        for variant in ("vanilla", "tpdiff", "tpdiff-noalign"):
            row = pick(finals, b, variant)
            if row is None:
                continue
            for col in (FINAL, f"{FINAL}-lo", f"{FINAL}-hi", "KVD-md", AGREEMENT, "motion-gap"):
                if col in row and pd.notna(row[col]):
                    entry[f"{variant}_final_{col}"] = float(row[col])
        off = pick(finals, b, "tpdiff", renoise=False)
        if off is not None:
            for col in (FINAL, "motion-gap", "motion-gap-lo", "motion-gap-hi", "flicker"):
                if col in off and pd.notna(off[col]):
                    entry[f"no_renoise_final_{col}"] = float(off[col])
        entry["seed_spread_FVD-md"] = seed_spread(finals, b)
        summary["backbones"][b] = {k: plain(v) for k, v in entry.items()}
    return summary


def _md(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt) if not frame.empty else "(none)"


def compare_with_reference(summary: dict, reference: Path, ref: dict | None) -> list[str]:
    """Markdown lines setting this summary's per-backbone figures beside those of the
    committed `reference` folder (`ref`: its summary.json, None when it has none), with what
    produced each and whether they are comparable."""
    if ref is None:
        return [f"No committed reference at `{reference}` to compare with."]
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


def verdict_table(found: list[dict]) -> pd.DataFrame:
    rows = [dict(claim=v["claim_text"], backbone=v["backbone"], verdict=f"**{v['verdict']}**",
                 rule=v["rule"]) for v in found]  # fmt: skip
    return pd.DataFrame(rows)


def quality_bar(summary: dict) -> pd.DataFrame:
    """Each matched run's final quality against the bar a model that learns must clear
    (verdicts.QUALITY_BAR_*: FVD-md at most that multiple of real vs real at the same n,
    PA-md-digit at least that share), with how far it misses."""
    real = summary.get("real_FVD-md")
    rows = []
    for b, entry in summary["backbones"].items():
        for variant in ("vanilla", "tpdiff"):
            fvd = entry.get(f"{variant}_final_{FINAL}")
            pa = entry.get(f"{variant}_final_{AGREEMENT}")
            if fvd is None or pa is None or not real:
                continue
            ratio = fvd / real
            misses = verdicts.bar_misses(fvd, pa, real)
            rows.append(dict(backbone=b, variant=variant, **{FINAL: fvd}, fvd_over_real=ratio,
                             **{AGREEMENT: pa}, meets_bar=not misses,
                             misses="; ".join(misses) or "-"))  # fmt: skip
    return pd.DataFrame(rows)


def _references_md(summary: dict) -> list[str]:
    n, nc = summary.get("n"), summary.get("n_curve")
    fmt = lambda k: "n/a" if summary.get(k) is None else f"{summary[k]:.4g}"  # noqa: E731
    return [
        f"At the final n = {n}: FVD-md of real vs real (disjoint seeds) {fmt('real_FVD-md')} "
        f"[{fmt('real_FVD-md-lo')}, {fmt('real_FVD-md-hi')}], of uniform noise vs real "
        f"{fmt('noise_FVD-md')}; chance PA-md-digit {fmt('chance_PA-md-digit')}. "
        f"At the curve n = {nc}: KVD-md real vs real {fmt('real_KVD-md_at_n_curve')}, noise "
        f"vs real {fmt('noise_KVD-md_at_n_curve')}. A run is at noise level (and shows "
        f"nothing) when its final FVD-md is above {verdicts.NOISE_SHARE:g} x the noise "
        f"figure or its PA-md-digit is within {verdicts.CHANCE_MARGIN} of chance.",
        "",
    ]


def _head_md(summary: dict, metric: str, agreement: str) -> list[str]:
    """The report's first part: verdicts, references, the quality bar and the metrics' key."""
    return [
        "# TPDiff vs vanilla: paper-suite report",
        "",
        f"Scale `{summary.get('scale')}`, code `{summary.get('code')}`.",
        "",
        "## Verdicts",
        "",
        "Each claim of the paper, per backbone, decided by the fixed rules of "
        "`harness/studies/core/verdicts.py` (numbers in `summary.json` under `verdicts`).",
        "",
        _md(verdict_table(summary["verdicts"])),
        "",
        *_references_md(summary),
        "## Do the models learn?",
        "",
        f"The bar of a CPU recipe whose quality can be compared: final {FINAL} at most "
        f"{verdicts.QUALITY_BAR_FVD:g} x real vs real at the same n, and {AGREEMENT} at least "
        f"{verdicts.QUALITY_BAR_PA}.",
        "",
        _md(quality_bar(summary)),
        "",
        f"Curves: **{metric}** at the curve n (lower is better; an unbiased kernel distance "
        f"when it is KVD-md). Final points: **{FINAL}** at the final n, with 90 % bootstrap "
        f"intervals (`-lo`, `-hi`); prompt agreement **{agreement}** (higher is better). `-md` "
        "metrics use the harness's own moving-digits evaluator and are not comparable with "
        "published FVD / CLIPSIM. FLOPs: 2 x fvcore MACs, attention included, training = 3 x "
        "forward. Files: `evals.csv`, `references.csv`, `curves.csv`, `verdicts.csv`.",
        "",
    ]


def _report_md(out, metric, agreement, table1, stages, costs, align, renoise, summary,
               beside) -> str:  # fmt: skip
    grids = sorted((out / "grids").glob("*.png")) if (out / "grids").is_dir() else []
    cost_cols = [c for c in ("backbone", "axis", "metric", "target", "vanilla_to_target",
                             "tpdiff_to_target", "tpdiff_to_target_lo", "tpdiff_to_target_hi",
                             "ratio", "ratio_lo", "ratio_hi", "overlap", "vanilla_budget",
                             "tpdiff_budget") if c in costs]  # fmt: skip
    lines = [
        *_head_md(summary, metric, agreement),
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
        "Time to target, AlgoPerf style (`training_cost.csv`): the target is the median of "
        "vanilla's last 3 curve points; each run's cost to reach it is interpolated on its "
        "curve, TPDiff's interval from the bootstrap bands; ratio = TPDiff's / vanilla's. "
        "Paper: 1/2.13 = 0.47 (flow DiT) and 1/2 (DDIM UNet) in GPU hours.",
        "",
        _md(costs[cost_cols] if len(costs) else costs, ".4g"),
        "",
        "## Table 3 analogue: data-noise alignment",
        "",
        _md(align, ".4g"),
        "",
        "## Figure 6 analogue: renoising",
        "",
        "`motion-gap`: how far the distribution of frame-to-frame change departs from real "
        "motion (lower is better; repeated or frozen frames and flicker both raise it). "
        "`flicker` (second temporal difference) is kept for reference: it is lowest for "
        "frozen video, so it is not the renoising metric.",
        "",
        _md(renoise, ".4g"),
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


COMMITTED = Path(__file__).resolve().parents[3] / "results" / "paper"
HOLDS = ("evals.csv", "cost_plans.csv")  # what a paper-suite folder holds


def redraw(folder: Path, reference: Path | None) -> str:
    """Redraw the report of a paper-suite `folder` (beside the committed `reference`,
    skipped when it is that folder); returns what to print."""
    missing = [n for n in HOLDS if not (folder / n).exists()]
    if missing:
        raise ValueError(f"{folder} lacks {missing}: run python -m harness.run --suite paper "
                         f"--out {folder} first")  # fmt: skip
    same = reference is not None and folder.resolve() == reference.resolve()
    summary = build(folder, None if same else reference)
    return f"{json.dumps(summary, indent=2)}\nreport: {folder / 'report.md'}"
