"""Tables, plots, verdicts, summary.json and report.md of a paper-suite folder, drawn from
its files alone: `python -m harness.report DIR` redraws everything without retraining.

Reads `evals.csv` (one row per score: run, backbone, variant, role `curve` or `final`,
step, renoise, n, training FLOPs and compute time at that step, its identity and the metric
columns with their bootstrap intervals), `references.csv` (real vs real, noise vs real and
chance agreement at each n), `cost_plans.csv` and `cost_stages.csv`, `finals/` (uint8
samples of every run and the renoise strip, which the report animates), `grids/` and
`job.json` (what produced the folder). The run folders are not needed, so a
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
from harness.common.video import to_uint8_videos
from harness.studies.core import verdicts
from harness.studies.core.animations import side_by_side
from harness.studies.core.inputs import (
    load_npz_strict,
    load_torch_strict,
    read_csv_strict,
    read_json_strict,
)
from harness.studies.core.paper_figures import PAPER_FIGURES
from harness.studies.core.plots import plot_quality, plot_renoise_strip
from harness.studies.core.seeds import seeded_name, spread
from harness.studies.core.staging import staged
from harness.studies.core.verdicts import Curve, Estimate

PAPER = pd.DataFrame(PAPER_FIGURES)  # the paper's own figures, quoted beside ours

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
SWEEP_COLUMNS = ("backbone", "form", "batch", "flop_ratio_bound", "vanilla_s", "vanilla_s_min",
                 "vanilla_s_max", "tpdiff_s", "tpdiff_s_min", "tpdiff_s_max")  # fmt: skip
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
    strip: dict | None  # the renoise strip (STRIP, or an older folder's renoise_strip.pt)
    reference: dict | None  # the committed reference folder's summary.json
    sweep: pd.DataFrame | None = None  # inference_batches.csv (None: an older folder)
    phases: dict | None = None  # phases.json: where the job's wall-clock time went
    finals: dict | None = None  # finals/<run>.npz: uint8 videos and captions of each run


def load_evals(out: Path) -> pd.DataFrame:
    """evals.csv with training hours, sorted by backbone, variant, role, renoise and step."""
    path = out / "evals.csv"
    evals = read_csv_strict(path, FIX, filled=EVAL_COLUMNS,
                            numeric=("seed", "step", "n", "train_flops", "train_wall_s",
                                     "sample_s", "metrics_s", *SCORES),
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
    strip = load_strip(out)
    committed = reference / "summary.json" if reference else None
    ref = None
    if committed is not None and committed.is_file():
        ref = read_json_strict(committed, "restore it from git or pass another --reference")
    refs = load_references(out, {int(n) for n in evals["n"]})
    sweep = None
    if (out / "inference_batches.csv").is_file():
        sweep = read_csv_strict(out / "inference_batches.csv", FIX, filled=SWEEP_COLUMNS,
                                numeric=SWEEP_COLUMNS[2:], key=("backbone", "batch"))  # fmt: skip
    phases = read_json_strict(out / "phases.json", FIX) if (out / "phases.json").is_file() else None
    finals = {p.stem: load_npz_strict(p, FIX) for p in sorted((out / "finals").glob("*.npz"))
              if p.name != Path(STRIP).name}  # fmt: skip
    return Inputs(evals, refs, plans, stages, job, strip, ref, sweep, phases, finals)


def load_strip(out: Path) -> dict | None:
    """The renoise strip: STRIP (uint8, committed), else renoise_strip.pt of an older folder
    (float videos); {"renoise", "no_renoise": uint8 (N, C, F, H, W), "captions"} or None."""
    if (out / STRIP).is_file():
        found = load_npz_strict(out / STRIP, FIX, videos=("renoise", "no_renoise"))
        return {k: found[k] for k in ("renoise", "no_renoise")} | dict(
            captions=[str(c) for c in found["captions"]])  # fmt: skip
    if (out / "renoise_strip.pt").is_file():
        old = load_torch_strict(out / "renoise_strip.pt", FIX)
        return {k: to_uint8_videos(old[k]) for k in ("renoise", "no_renoise")} | dict(
            captions=list(old["captions"]))  # fmt: skip
    return None


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


def main_seeds(finals: pd.DataFrame, backbone: str) -> list[int]:
    """The seeds at which both vanilla and TPDiff of `backbone` have a final score: the
    paired seeds every claim rests on."""
    have = lambda v: set(finals[(finals.backbone == backbone) & (finals.variant == v)  # noqa: E731
                                & finals.renoise].seed)  # fmt: skip
    return sorted(int(s) for s in have("vanilla") & have("tpdiff"))


def per_seed(finals: pd.DataFrame, backbone: str, variant: str, metric: str,
             renoise: bool = True) -> dict[int, Estimate]:  # fmt: skip
    """{seed: the final `metric` with its bootstrap interval} of one variant."""
    rows = finals[(finals.backbone == backbone) & (finals.variant == variant)
                  & (finals.renoise == renoise)]  # fmt: skip
    out = {int(r.seed): estimate(r, metric) for _, r in rows.iterrows()}
    return {k: v for k, v in sorted(out.items()) if v is not None}


def run_curves(evals: pd.DataFrame) -> pd.DataFrame:
    """Every main run's quality curve: its curve points, then its final score (which
    carries the curve metric) as the last point when no curve point was made at that step."""
    curves = evals[(evals.role == "curve") & evals.renoise]
    finals = evals[(evals.role == "final") & evals.renoise
                   & evals.variant.isin(["vanilla", "tpdiff"])]  # fmt: skip
    have = set(zip(curves.run, curves.step))
    last = finals[[(r, s) not in have for r, s in zip(finals.run, finals.step)]]
    last = last[last.run.isin(set(curves.run))]
    both = pd.concat([curves, last.assign(role="curve")], ignore_index=True)
    return both.sort_values(["backbone", "variant", "seed", "step"]).reset_index(drop=True)


def seed_curves(curves: pd.DataFrame, backbone: str, variant: str, metric: str,
                x: str) -> dict[int, Curve]:  # fmt: skip
    """{seed: curve} of one variant, seeds with at least 3 points."""
    g = curves[(curves.backbone == backbone) & (curves.variant == variant)]
    return {int(s): as_curve(rows, metric, x) for s, rows in g.groupby("seed")
            if rows[metric].notna().sum() >= 3}  # fmt: skip


def _listed(values) -> str:
    return "; ".join("inf" if v is None or v == np.inf else f"{v:.6g}" for v in values)


def training_cost(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per backbone and cost axis: the time-to-target figures over paired seeds
    (harness.studies.core.verdicts.time_to_target)."""
    rows = []
    for (backbone, form), g in curves.groupby(["backbone", "form"]):
        for x in ("train_flops", "train_hours"):
            van = seed_curves(g, backbone, "vanilla", metric, x)
            tp = seed_curves(g, backbone, "tpdiff", metric, x)
            if not set(van) & set(tp):
                continue
            t, est = verdicts.time_to_target(van, tp)
            flat = {k: _listed(v) if isinstance(v, list) and k != "seeds" else v
                    for k, v in t.items()}  # fmt: skip
            flat["seeds"] = " ".join(str(s) for s in t["seeds"])
            rows.append(dict(backbone=backbone, form=form, axis=x, metric=metric,
                             vanilla_budget=float(g[g.variant == "vanilla"][x].max()),
                             tpdiff_budget=float(g[g.variant == "tpdiff"][x].max()),
                             provisional=est.provisional, **flat))  # fmt: skip
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


def _run_name(backbone: str, variant: str, seed: int) -> str:
    return f"{backbone} {variant}" + (f" seed {seed}" if seed else "")


def inference_verdict(backbone: str, sweep: pd.DataFrame | None, noise: str | None):
    """The inference verdict of `backbone` from the batch sweep, or inconclusive without
    one (a folder made by an older harness)."""
    rows = sweep[sweep.backbone == backbone] if sweep is not None else None
    if rows is None or rows.empty:
        return verdicts.Verdict("inference", backbone, "inconclusive", {},
                                "no inference batch sweep (inference_batches.csv) in this "
                                "folder: the verdict is taken at the smallest compute-bound "
                                "batch; rerun the suite into a new folder")  # fmt: skip
    regime = verdicts.inference_regime(rows.to_dict("records"),
                                       float(rows.flop_ratio_bound.iloc[0]))  # fmt: skip
    return verdicts.inference(backbone, regime, noise)


def judge(curves, finals, refs, plans, metric, sweep=None) -> list[dict]:
    """One verdict per claim of the paper and backbone (harness.studies.core.verdicts)."""
    out = []
    for plan in plans.to_dict("records"):
        b = plan["backbone"]
        seeds = main_seeds(finals, b) or [0]
        noise = {v: [_noise(pick(finals, b, v, seed=s), refs, _run_name(b, v, s))
                     for s in seeds] for v in ("vanilla", "tpdiff")}  # fmt: skip
        first = next((r for r in noise["tpdiff"] if r), None)
        out.append(inference_verdict(b, sweep, first))
        van = seed_curves(curves, b, "vanilla", metric, "train_flops")
        tp = seed_curves(curves, b, "tpdiff", metric, "train_flops")
        if set(van) & set(tp):
            out.append(verdicts.training(b, van, tp, noise["vanilla"] + noise["tpdiff"]))
        else:
            out.append(verdicts.Verdict("training", b, "inconclusive", {},
                                        "no seed has 3 curve points of both runs"))  # fmt: skip
        aligned = per_seed(finals, b, "tpdiff", FINAL)
        unaligned = per_seed(finals, b, "tpdiff-noalign", FINAL)
        paired_seeds = set(aligned) & set(unaligned)
        seed_sd = spread([e.value for e in aligned.values()])
        noise_noalign = [
            _noise(
                pick(finals, b, "tpdiff-noalign", seed=s), refs, _run_name(b, "tpdiff-noalign", s)
            )
            for s in sorted(unaligned)
        ]
        out.append(verdicts.alignment(
            b, {s: aligned[s] for s in paired_seeds}, {s: unaligned[s] for s in paired_seeds},
            seed_sd, [r for s, r in zip(seeds, noise["tpdiff"]) if s in paired_seeds]
            + noise_noalign))  # fmt: skip
        on = per_seed(finals, b, "tpdiff", "motion-gap")
        off = per_seed(finals, b, "tpdiff", "motion-gap", renoise=False)
        both = sorted(set(on) & set(off))
        if not both:
            missing = "no motion-gap scores with and without renoising"
            out.append(verdicts.Verdict("renoise", b, "inconclusive", {}, missing))
        else:
            out.append(verdicts.renoise(b, {s: on[s] for s in both}, {s: off[s] for s in both},
                                        noise["tpdiff"]))  # fmt: skip
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
    curves = run_curves(evals)
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
    main = finals[finals.renoise]
    keep = [c for c in ("backbone", "form", "variant", "seed", "n", FINAL, f"{FINAL}-lo",
                        f"{FINAL}-hi", agreement) if c in main]  # fmt: skip
    align_seeds = set(main[main.variant == "tpdiff-noalign"].seed)
    align = main[main.variant.str.startswith("tpdiff") & main.seed.isin(align_seeds)][keep]
    align = align.assign(alignment=lambda d: np.where(d.variant == "tpdiff", "on", "off"))
    write_csv(stage / "table3_alignment.csv", align)
    tp = finals[finals.variant == "tpdiff"]
    renoise_cols = [c for c in ("backbone", "form", "seed", "renoise", "n", "motion-gap",
                                "motion-gap-lo", "motion-gap-hi", "stutter", "stutter-real",
                                "flicker", "flicker-real", FINAL, agreement)
                    if c in tp]  # fmt: skip
    renoise = tp[renoise_cols]
    write_csv(stage / "fig6_renoise.csv", renoise)
    if inputs.strip is not None:
        plot_renoise_strip(inputs.strip, stage / "fig6_renoise_strip.png")
        side_by_side([("renoise on", inputs.strip["renoise"]),
                      ("renoise off", inputs.strip["no_renoise"])],
                     inputs.strip["captions"], stage / RENOISE_GIF)  # fmt: skip
    gifs = animate_pairs(finals, inputs.finals or {}, stage)

    table1 = plans[
        ["backbone", "form", "vanilla_sampling_s", "tpdiff_sampling_s", "inference_speedup",
         "flop_ratio_bound", "measured_over_bound"]
    ]  # fmt: skip
    write_csv(stage / "table1_latency.csv", table1)
    found = judge(curves, finals, refs, plans, metric, inputs.sweep)
    write_csv(stage / "verdicts.csv", verdict_rows(found))

    summary = _summary(inputs.job, metric, agreement, plans, costs, finals, refs, found,
                       inputs.phases, evals)  # fmt: skip
    write_json(stage / "summary.json", summary)
    beside = compare_with_reference(summary, reference, inputs.reference) if reference else []
    write_text(stage / "report.md", _report_md(out, metric, agreement, table1, inputs.stages,
                                               costs, align, renoise, summary, beside,
                                               inputs.sweep, gifs,
                                               inputs.strip is not None))  # fmt: skip
    return summary


RENOISE_GIF = "anim_renoise_on_off.gif"
STRIP = "finals/renoise_strip.npz"  # the renoise strip: uint8 samples with and without


def animate_pairs(finals: pd.DataFrame, samples: dict[str, dict], stage: Path) -> list[str]:
    """anim_<backbone>_vanilla_vs_tpdiff.gif per backbone: the first seed's vanilla and
    TPDiff samples side by side (same captions and sampling noise); returns the files."""
    made = []
    for b in sorted(set(finals.backbone)):
        seeds = main_seeds(finals, b)
        if not seeds:
            continue
        form = finals[finals.backbone == b].form.iloc[0]
        names = {v: seeded_name(f"{b}-{form}-{v}", seeds[0]) for v in ("vanilla", "tpdiff")}
        if not all(n in samples for n in names.values()):
            continue
        van, tp = samples[names["vanilla"]], samples[names["tpdiff"]]
        if van["videos"].shape != tp["videos"].shape:
            raise ValueError(f"finals/{names['vanilla']}.npz and finals/{names['tpdiff']}.npz "
                             f"hold videos of other shapes ({van['videos'].shape}, "
                             f"{tp['videos'].shape}): {FIX}")  # fmt: skip
        name = f"anim_{b}_vanilla_vs_tpdiff.gif"
        side_by_side([("vanilla", van["videos"]), ("TPDiff", tp["videos"])],
                     [str(c) for c in van["captions"]], stage / name)  # fmt: skip
        made.append(name)
    return made


def verdict_rows(found: list[dict]) -> pd.DataFrame:
    """verdicts.csv: one row per claim and backbone, with the interval it was decided on
    (estimate, lo, hi), its seeds and whether it is provisional."""
    rows = []
    for v in found:
        est = v["numbers"].get("estimate") or {}
        rows.append(dict(claim=v["claim"], backbone=v["backbone"], verdict=v["verdict"],
                         provisional=v["provisional"], estimate=est.get("estimate"),
                         lo=est.get("lo"), hi=est.get("hi"), mde=est.get("mde"),
                         seeds=" ".join(str(s) for s in v["seeds"]), rule=v["rule"],
                         claim_text=v["claim_text"]))  # fmt: skip
    return pd.DataFrame(rows)


def _backbone(p: dict, found: list[dict], costs: pd.DataFrame,
              finals: pd.DataFrame) -> tuple[dict, dict]:  # fmt: skip
    """One backbone's figures in summary.json: (scalars, per-seed scores)."""
    b = p["backbone"]
    entry = {k: p[k] for k in ("form", "inference_speedup", "flop_ratio_bound",
                               "measured_over_bound", "training_step_cost_ratio",
                               "training_step_flop_ratio")}  # fmt: skip
    entry["batch1_inference_speedup"] = entry.pop("inference_speedup")
    inference = next(v for v in found if v["claim"] == "inference" and v["backbone"] == b)
    for key in ("batch", "compute_bound", "speedup", "speedup_lo", "speedup_hi",
                "over_bound", "batch1_speedup", "batch1_over_bound"):  # fmt: skip
        if key in inference["numbers"]:
            entry[f"inference_{key}"] = inference["numbers"][key]
    for axis, key in (("train_flops", "training_cost_ratio"),
                      ("train_hours", "training_time_ratio")):  # fmt: skip
        c = costs[(costs.backbone == b) & (costs.axis == axis)] if len(costs) else costs
        if len(c):
            r = c.iloc[0]
            entry[key] = "not reached" if r["ratio"] == np.inf else float(r["ratio"])
            entry[f"{key}_lo"], entry[f"{key}_hi"] = float(r["ratio_lo"]), float(r["ratio_hi"])
            entry[f"{key}_of_medians"] = float(r["ratio_of_medians"])
            if axis == "train_flops":
                entry["vanilla_converged"] = (
                    None if pd.isna(r["converged"]) else bool(r["converged"])
                )
    seeds = main_seeds(finals, b)
    entry["seeds"] = len(seeds)
    table = {}
    for variant in ("vanilla", "tpdiff", "tpdiff-noalign"):
        for col in (FINAL, "KVD-md", AGREEMENT, "motion-gap"):
            scores = per_seed(finals, b, variant, col)
            if not scores:
                continue
            table[f"{variant}_{col}"] = {str(k): e.value for k, e in scores.items()}
            entry[f"{variant}_final_{col}"] = float(np.median([e.value for e in scores.values()]))
        fvd = per_seed(finals, b, variant, FINAL)
        if len(fvd) > 1:
            entry[f"{variant}_seed_spread_{FINAL}"] = spread([e.value for e in fvd.values()])
    off = per_seed(finals, b, "tpdiff", "motion-gap", renoise=False)
    if off:
        table["no_renoise_motion-gap"] = {str(k): e.value for k, e in off.items()}
        entry["no_renoise_final_motion-gap"] = float(np.median([e.value for e in off.values()]))
    van, tp = per_seed(finals, b, "vanilla", FINAL), per_seed(finals, b, "tpdiff", FINAL)
    if set(van) & set(tp):
        gap = verdicts.paired_gap(tp, van)
        entry[f"final_{FINAL}_gap"] = gap.estimate  # vanilla - TPDiff, paired by seed
        entry[f"final_{FINAL}_gap_lo"], entry[f"final_{FINAL}_gap_hi"] = gap.lo, gap.hi
    return entry, table


def _summary(job, metric, agreement, plans, costs, finals, refs, found, phases=None,
             evals=None) -> dict:  # fmt: skip
    n_final = int(finals.n.max()) if len(finals) else None
    n_curve = job.get("curve_n")
    summary: dict = {
        "suite": job.get("suite"),
        "scale": job.get("scale"),
        "code": job.get("code"),
        "n": n_final,
        "n_curve": n_curve,
        "seeds": job.get("seeds", sorted({int(s) for s in finals.seed})),
        "seed_offset": job.get("seed_offset", 0),
        "environment": job.get("environment"),
        "instruments": job.get("instruments"),  # the evaluator's and autoencoder's hashes
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
    summary["per_seed"] = {}
    for p in plans.to_dict("records"):
        entry, table = _backbone(p, found, costs, finals)
        summary["backbones"][p["backbone"]] = {k: plain(v) for k, v in entry.items()}
        summary["per_seed"][p["backbone"]] = plain(table)
    if phases:
        summary["time"] = time_breakdown(phases, evals)
    return plain(summary)  # what JSON holds: NaN and infinities as null


def time_breakdown(phases: dict, evals: pd.DataFrame | None) -> dict:
    """Where the job's wall-clock time went: each phase's seconds (phases.json), and inside
    training and scoring the compute seconds of training, sampling and scoring summed over
    runs (side by side in parallel workers, so they add to more than the phase's)."""
    out = {"wall_s": sum(p["seconds"] for p in phases.values()),
           "phases_s": {k: p["seconds"] for k, p in phases.items()},
           "workers": phases.get("train and score", {}).get("workers", 1)}  # fmt: skip
    if evals is not None and len(evals):
        last = evals.groupby("run")["train_wall_s"].max()
        out["train_compute_s"] = float(last.sum())
        for col in ("sample_s", "metrics_s"):
            if col in evals:
                out[f"{col.split('_')[0]}_compute_s"] = float(evals[col].sum())
    return out


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
    replica = replica_table(summary, ref)
    if len(replica):
        lines += [
            f"Each claim's verdict here (seeds {summary.get('seeds')}) and there (seeds "
            f"{ref.get('seeds', 'not recorded')}), the interval each was decided on, and "
            "whether each run's estimate lies inside the other's interval. A verdict that "
            "differs is a finding; the pre-registered rules are not loosened for it.",
            "",
            _md(replica, ".4g"),
            "",
            replica_findings(replica),
            "",
        ]
    return lines + [_md(pd.DataFrame(rows), ".4g"), ""]


def replica_table(summary: dict, ref: dict) -> pd.DataFrame:
    """Per claim and backbone: both verdicts and intervals, and whether each estimate lies
    inside the other run's interval (claims decided on an interval in both runs)."""
    theirs = {(v["claim"], v["backbone"]): v for v in ref.get("verdicts", [])}
    rows = []
    for v in summary["verdicts"]:
        other = theirs.get((v["claim"], v["backbone"]))
        a = v["numbers"].get("estimate")
        b = other["numbers"].get("estimate") if other else None
        if not a or not b:
            continue
        a, b = _bounds(a), _bounds(b)
        inside = lambda x, e: e[1] <= x[0] <= e[2]  # noqa: E731
        rows.append(dict(claim=v["claim"], backbone=v["backbone"],
                         this_verdict=v["verdict"], other_verdict=other["verdict"],
                         agree=v["verdict"] == other["verdict"],
                         this="{:.4g} [{:.4g}, {:.4g}]".format(*a),
                         other="{:.4g} [{:.4g}, {:.4g}]".format(*b),
                         this_in_other=inside(a, b), other_in_this=inside(b, a)))  # fmt: skip
    return pd.DataFrame(rows)


def replica_findings(replica: pd.DataFrame) -> str:
    """One paragraph naming the claims whose verdicts differ between the two runs, and
    those where neither run's estimate lies inside the other's interval."""
    name = lambda r: f"{r.claim} ({r.backbone})"  # noqa: E731
    differ = [f"{name(r)}: {r.this_verdict} here, {r.other_verdict} there"
              for r in replica.itertuples() if not r.agree]  # fmt: skip
    apart = [name(r) for r in replica.itertuples() if not r.this_in_other and not r.other_in_this]
    text = f"**The verdicts agree on {len(replica) - len(differ)} of {len(replica)} claims.**"
    if differ:
        text += " They differ on " + "; ".join(differ) + "."
    if apart:
        text += (" Neither run's estimate lies inside the other's interval for "
                 + ", ".join(apart) + ".")  # fmt: skip
    return text


def _bounds(est: dict) -> tuple[float, float, float]:
    """(estimate, lo, hi) of a stored estimate; JSON holds infinities as null (an
    infinite estimate or upper end is +inf, an open lower end -inf)."""
    inf = float("inf")
    value = lambda k, missing: missing if est.get(k) is None else float(est[k])  # noqa: E731
    return value("estimate", inf), value("lo", -inf), value("hi", inf)


def verdict_table(found: list[dict]) -> pd.DataFrame:
    rows = []
    for v in found:
        label = v["verdict"] + (" (provisional)" if v.get("provisional") else "")
        rows.append(dict(claim=v["claim_text"], backbone=v["backbone"], verdict=f"**{label}**",
                         seeds=" ".join(str(s) for s in v.get("seeds", ())) or "-",
                         rule=v["rule"]))  # fmt: skip
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
        "`harness/studies/core/verdicts.py`, pre-registered in docs/paper-suite.md (numbers "
        "in `summary.json` under `verdicts`). Intervals are 90 % and carry training-seed "
        "noise: the Student-t interval of the paired per-seed estimates. Seeds "
        f"{summary.get('seeds')} (offset {summary.get('seed_offset')}); a quality-based "
        "verdict on fewer than 3 seeds is provisional.",
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


def _sweep_md(sweep: pd.DataFrame | None) -> list[str]:
    if sweep is None:
        return ["No batch sweep in this folder (made by an older harness).", ""]
    cols = ["backbone", "batch", "vanilla_s_per_video", "tpdiff_s_per_video", "speedup",
            "flop_ratio_bound", "threads"]  # fmt: skip
    return [
        "Sampling time per video over batches (`inference_batches.csv`; median of the "
        "repeats, the runs' shapes, eager). The verdict is taken at the smallest batch whose "
        "time per video is within 10 % of half that batch's (compute-bound: arithmetic, not "
        "per-call overhead, sets the time). It is a statement about arithmetic cost on this "
        "CPU; the paper's figure is a GPU latency, which the GPU check measures.",
        "",
        _md(sweep[[c for c in cols if c in sweep]], ".4g"),
        "",
    ]


def _time_md(summary: dict) -> list[str]:
    t = summary.get("time")
    if not t:
        return []
    phases = ", ".join(f"{k} {v / 60:.1f} min" for k, v in t["phases_s"].items())
    keys = ("train_compute_s", "sample_compute_s", "metrics_compute_s")
    inside = ", ".join(f"{k.split('_')[0]} {t[k] / 60:.1f} min" for k in keys if k in t)
    env = summary.get("environment") or {}
    workers = t.get("workers", 1)
    return [
        "## Where the time went",
        "",
        f"Wall-clock {t['wall_s'] / 60:.1f} min ({phases}; `phases.json`). Inside training "
        f"and scoring, summed over runs ({workers} worker(s) side by side, "
        f"{env.get('threads', '?')} thread(s) each): {inside}.",
        "",
    ]


def _report_md(out, metric, agreement, table1, stages, costs, align, renoise, summary,
               beside, sweep=None, gifs=(), strip=False) -> str:  # fmt: skip
    grids = sorted((out / "grids").glob("*.png")) if (out / "grids").is_dir() else []
    cost_cols = [c for c in ("backbone", "axis", "seeds", "target", "ratio", "ratio_lo",
                             "ratio_hi", "per_seed_ratio", "ratio_of_medians", "converged",
                             "vanilla_seed_spread", "vanilla_last_third_gain",
                             "vanilla_budget", "tpdiff_budget") if c in costs]  # fmt: skip
    lines = [
        *_head_md(summary, metric, agreement),
        "## Table 1 analogue: sampling speed at 30 steps",
        "",
        *_sweep_md(sweep),
        "Batch 1 (latency mode, random-init backbones of the runs' shapes):",
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
        "Time to target, AlgoPerf style (`training_cost.csv`): the target is the worst "
        "vanilla seed's end level (median of its last 3 curve points), so every vanilla seed "
        "reaches it; each seed's cost to reach it is interpolated on its curve, a miss "
        "counting as infinite; ratio = exp(mean over seeds of log(TPDiff's / vanilla's)), "
        "paired by seed, with its 90 % Student-t interval over seeds; the ratio of the "
        "medians beside it. `converged`: vanilla's last third improves by less than its "
        "seed spread. Paper: 1/2.13 = 0.47 (flow DiT) and 1/2 (DDIM UNet) in GPU hours.",
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
        *([f"![renoise on and off, moving]({RENOISE_GIF})", ""] if strip else []),
        "## Per-stage cost",
        "",
        _md(stages, ".4g"),
        "",
        "## Samples",
        "",
        *(
            [
                "Vanilla and TPDiff of the first seed side by side, moving (same captions and "
                "sampling noise, 4x upscaled):",
                "",
            ]
            if gifs
            else []
        ),
        *[f"![{g}]({g})\n" for g in gifs],
        *[f"**{g.stem}**\n\n![{g.stem}](grids/{g.name})\n" for g in grids],
        *_time_md(summary),
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
REPLICA = COMMITTED.parent / "paper-replica"  # the same design at another seed offset
HOLDS = ("evals.csv", "cost_plans.csv")  # what a paper-suite folder holds


def partner(folder: Path) -> Path | None:
    """The folder a paper-suite report sets its figures beside: the main run and its
    replica each other's (when the replica exists), any other folder the main run."""
    if folder.resolve() == COMMITTED.resolve():
        return REPLICA if (REPLICA / "summary.json").is_file() else None
    return COMMITTED


def redraw(folder: Path, reference: Path | None) -> str:
    """Redraw the report of a paper-suite `folder` (beside the committed `reference`,
    skipped when it is that folder); returns what to print."""
    missing = [n for n in HOLDS if not (folder / n).exists()]
    if missing:
        raise ValueError(f"{folder} lacks {missing}: run python -m harness.run --suite paper "
                         f"--out {folder} first")  # fmt: skip
    if reference is None:
        reference = partner(folder)
    elif folder.resolve() == reference.resolve():
        reference = None  # drawn on its own
    summary = build(folder, reference)
    return f"{json.dumps(summary, indent=2)}\nreport: {folder / 'report.md'}"
