"""The sweep's outputs, drawn from its study (`study.db` or the --storage): trials.csv,
pareto.png, importance_<objective>.png, best/trial_NNNN.toml (every Pareto-optimal config),
summary.json and report.md."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from harness.common.config import Config  # noqa: E402
from harness.common.io import (  # noqa: E402
    save_figure,
    write_json,
    write_text,
)
from harness.studies.core import verdicts  # noqa: E402
from harness.studies.core.protocol import QUALITY, SCORE_COLUMNS  # noqa: E402
from harness.studies.sweep.storage import RETRY, spent  # noqa: E402


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    names = study.metric_names or ["value_0", "value_1"]
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row: dict[str, Any] = dict(number=t.number, state=t.state.name)
        row |= {k: v for k, v in t.params.items()}
        row |= dict(zip(names, t.values)) if t.values else {}
        row |= {f"{QUALITY}@{s}": v for s, v in attrs.get("fvd_at", {}).items()}
        row |= {key: attrs.get(key) for key in SCORE_COLUMNS}
        row["reference"] = attrs.get("reference", "")
        row["pruned_reason"] = attrs.get("pruned_reason", "")
        row["error"] = attrs.get("error", "")
        row["retry_of"] = RETRY.retried_trial_number(t)
        row["orphaned"] = study.user_attrs.get("orphaned", {}).get(str(t.number), "")
        row["run"] = attrs.get("run", "")
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return pd.DataFrame(rows)


def plot_pareto(study: optuna.Study, path: Path) -> None:
    names = study.metric_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=names)
    ax.set_xlabel(f"{names[0]} (lower is better)")
    ax.set_ylabel(names[1])
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # labels alternate above / below the point in order of cost, so near points stay legible
    for rank, t in enumerate(sorted(done, key=lambda t: t.values[1])):
        label = f"#{t.number} " + ", ".join(
            f"{v:.2f}" for k, v in t.params.items() if k.startswith("jump")
        )
        if t.user_attrs.get("reference"):
            label += " (paper)"
            ax.scatter(*t.values, s=160, facecolors="none", edgecolors="k", zorder=5)
        offset = (4, 4) if rank % 2 == 0 else (4, -11)
        ax.annotate(label, t.values, fontsize=7, xytext=offset, textcoords="offset points")
    ax.set_title(f"{study.study_name}: Pareto front (labels: trial, jump points)")
    save_figure(ax.figure, path, bbox_inches="tight")


def plot_importance(study: optuna.Study, index: int, path: Path) -> bool:
    """Parameter importance for objective `index`; False when Optuna cannot compute it yet
    (too few finished trials or parameters that never varied)."""
    name = study.metric_names[index]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = optuna.visualization.matplotlib.plot_param_importances(
                study, target=lambda t: t.values[index], target_name=name
            )
    except (ValueError, RuntimeError, ZeroDivisionError):
        plt.close("all")
        return False
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    # Optuna titles the axes on the left; replace that title rather than add a second one
    ax.set_title(f"parameter importance for {name} ({finished} finished trials)", loc="left")
    save_figure(ax.figure, path, bbox_inches="tight")
    return True


def write_report(study: optuna.Study, out: Path) -> dict:
    """trials.csv, pareto.png, importance_*.png, best/*.toml, summary.json, report.md."""
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study)
    write_text(out / "trials.csv", frame.to_csv(index=False))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = study.metric_names or ["value_0", "value_1"]
    front = sorted(study.best_trials, key=lambda t: t.values[1]) if complete else []
    best_dir = out / "best"
    best_dir.mkdir(exist_ok=True)
    for old in best_dir.glob("trial_*.toml"):
        if int(old.stem.split("_")[1]) not in {t.number for t in front}:
            old.unlink(missing_ok=True)
    for t in front:
        cfg = Config.from_dict(t.user_attrs["config"]).replace(out_dir="runs")
        cfg = cfg.replace(name=f"{study.study_name}-trial{t.number}")
        comment = (
            f"Pareto-optimal trial {t.number} of study {study.study_name}: "
            f"{names[0]} {t.values[0]:.2f}, {names[1]} {t.values[1]:.4g}\n"
            f"train: python -m harness.train --config {best_dir / f'trial_{t.number:04d}.toml'}"
        )
        write_text(best_dir / f"trial_{t.number:04d}.toml", cfg.to_toml(comment))
    plots = []
    if complete:
        plot_pareto(study, out / "pareto.png")
        plots.append("pareto.png")
        for i, file in enumerate(("importance_quality.png", "importance_cost.png")):
            if plot_importance(study, i, out / file):
                plots.append(file)
    reference = next((t for t in complete if t.user_attrs.get("reference")), None)
    counts = frame["state"].value_counts().to_dict() if len(frame) else {}
    summary = {
        "study": study.study_name,
        "settings": study.user_attrs.get("settings"),
        "objectives": names,
        "trials": {k: int(v) for k, v in counts.items()},
        "spent": spent(study.get_trials(deepcopy=False)),
        "pareto": [
            dict(
                number=t.number,
                params=t.params,
                values=t.values,
                **{k: t.user_attrs.get(k) for k in ("FVD-md-lo", "FVD-md-hi", "PA-md-digit")},
            )
            for t in front
        ],
        "references": study.user_attrs.get("references"),
        "reference": None,
        "plots": plots,
    }
    if reference is not None:
        summary["reference"] = dict(
            number=reference.number,
            params=reference.params,
            values=reference.values,
            **{k: reference.user_attrs.get(k) for k in ("FVD-md-lo", "FVD-md-hi", "PA-md-digit")},
        )
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", _report_md(summary, frame, plots))
    return summary


def _report_md(summary: dict, frame: pd.DataFrame, plots: list[str]) -> str:
    refs = summary.get("references")
    lines = [
        f"# Stage-boundary sweep `{summary['study']}`",
        "",
        f"Settings: `{json.dumps(summary['settings'])}`. Objectives (both minimised): "
        f"{', '.join(summary['objectives'])}. Trials by state: {summary['trials']}; "
        f"spent budget: {summary['spent']}.",
        "",
    ]
    if refs:
        lines += [
            f"What the scores mean, at the trials' n = {refs['n']} on their data: FVD-md of real "
            f"vs real (disjoint seeds) {refs['real_FVD-md']:.4g} [{refs['real_FVD-md-lo']:.4g}, "
            f"{refs['real_FVD-md-hi']:.4g}], of uniform noise vs real {refs['noise_FVD-md']:.4g}"
            f"; chance PA-md-digit {refs['chance_PA-md-digit']:.3g}. A trial `learns` when its "
            f"FVD-md is <= {verdicts.QUALITY_BAR_FVD:g} x real vs real and its PA-md-digit >= "
            f"{verdicts.QUALITY_BAR_PA:g}; `[lo, hi]` is the 90 % bootstrap interval.",
            "",
        ]
    lines += ["## Pareto front", ""]
    quality, cost = summary["objectives"]

    def row(p: dict) -> dict:
        fvd = p["values"][0]
        out = dict(trial=p["number"], **p["params"], **{quality: fvd})
        if p.get("FVD-md-lo") is not None:
            out["[lo, hi]"] = f"[{p['FVD-md-lo']:.4g}, {p['FVD-md-hi']:.4g}]"
        out["PA-md-digit"] = p.get("PA-md-digit")
        if refs and p.get("PA-md-digit") is not None:
            out["learns"] = not verdicts.bar_misses(fvd, p["PA-md-digit"], refs["real_FVD-md"])
        return out | {cost: p["values"][1]}

    if summary["pareto"]:
        front = pd.DataFrame([row(p) for p in summary["pareto"]])
        lines += [front.to_markdown(index=False, floatfmt=".4g"), ""]
        lines += ["Ready-to-run configs: `best/trial_NNNN.toml`.", ""]
    else:
        lines += ["No finished trial yet.", ""]
    ref = summary["reference"]
    if ref:
        values = ", ".join(f"{n} {v:.4g}" for n, v in zip(summary["objectives"], ref["values"]))
        lines += [f"Paper's equal split (trial {ref['number']}): {values}.", ""]
        if ref.get("FVD-md-lo") is not None and summary["pareto"]:
            lines += [resolution_note(summary["pareto"], ref), ""]
    lines += [f"![{p}]({p})" for p in plots] + ["", "All trials: [trials.csv](trials.csv)", ""]
    return "\n".join(lines)


def resolution_note(front: list[dict], ref: dict) -> str:
    """Whether the front's quality differs from the equal split's beyond the bootstrap
    noise at this n: a front trial is resolved when the 90 % intervals do not overlap."""
    apart = [
        p["number"]
        for p in front
        if p["number"] != ref["number"]
        and p.get("FVD-md-lo") is not None
        and (p["FVD-md-hi"] < ref["FVD-md-lo"] or p["FVD-md-lo"] > ref["FVD-md-hi"])
    ]
    if apart:
        return (
            f"Front trials whose FVD-md interval does not overlap the equal split's: {apart}; "
            "the other front trials differ from it on quality by less than the noise at this n."
        )
    return (
        "No front trial's FVD-md interval is clear of the equal split's: at this n the front "
        "tells configs apart by cost, not by quality."
    )
