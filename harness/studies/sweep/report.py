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
from harness.studies.core import variants, verdicts  # noqa: E402
from harness.studies.core.protocol import QUALITY, SCORE_COLUMNS  # noqa: E402
from harness.studies.core.seeds import spread  # noqa: E402
from harness.studies.sweep.storage import RETRY, open_storage, spent  # noqa: E402


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
    ax.set_xlabel(f"{names[0]} (lower is better; bars: 90 % bootstrap interval)")
    ax.set_ylabel(names[1])
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for t in done:  # every complete trial's quality interval
        lo, hi = t.user_attrs.get(f"{QUALITY}-lo"), t.user_attrs.get(f"{QUALITY}-hi")
        if lo is not None and hi is not None:
            x, y = t.values
            ax.errorbar(x, y, xerr=[[x - lo], [hi - x]], fmt="none", ecolor="#888888",
                        elinewidth=1, capsize=2, zorder=1)  # fmt: skip
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
    seeds = study.user_attrs.get("reference_seeds", {})
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
        "complete": [
            dict(
                number=t.number,
                params=t.params,
                values=t.values,
                **{k: t.user_attrs.get(k) for k in (f"{QUALITY}-lo", f"{QUALITY}-hi")},
                n=(study.user_attrs.get("references") or {}).get("n"),
            )
            for t in sorted(complete, key=lambda t: t.number)
        ],  # fmt: skip
        "references": study.user_attrs.get("references"),
        "reference": None,
        "reference_seeds": seeds,
        "front_verdicts": front_verdicts(
            front, reference, seeds, study.user_attrs.get("references")
        ),
        "rule": variants.RULE,
        "time": _phases(out),
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
        seeds = summary.get("reference_seeds") or {}
        if seeds:
            per = ", ".join(f"seed {s}: {v[QUALITY]:.4g}" for s, v in sorted(seeds.items()))
            lines += [f"The equal split at {len(seeds)} training seeds ({per}): its spread is "
                      "the noise floor of the verdicts below.", ""]  # fmt: skip
        lines += [verdict_note(summary["front_verdicts"], len(seeds)), ""]
    if summary.get("time"):
        spent_on = ", ".join(f"{k} {v['seconds'] / 60:.1f} min" for k, v in summary["time"].items())
        lines += [f"Wall-clock time (`phases.json`): {spent_on}.", ""]
    lines += [f"![{p}]({p})" for p in plots] + ["", "All trials: [trials.csv](trials.csv)", ""]
    return "\n".join(lines)


def front_verdicts(front: list, reference, seeds: dict, refs: dict | None = None) -> list[dict]:
    """Each front trial against the equal split on FVD-md, by the ablations' rule
    (`variants`, one seed each: both bootstrap intervals and the equal split's seed spread;
    Holm over the front; a trial or reference at noise level by `refs` is not tested):
    whether it is `better`, `worse` or `within noise`, with the smallest effect it could
    have seen. Empty without a complete reference trial, and until the equal split has 2 or
    more seeds (`reference_seeds`): without a seed spread a gap would be read against the
    videos' noise alone, which is too narrow."""
    if reference is None or len(seeds) < 2:
        return []
    score = lambda t: (t.values[0], t.user_attrs.get(f"{QUALITY}-lo"),  # noqa: E731
                       t.user_attrs.get(f"{QUALITY}-hi"))  # fmt: skip
    if None in score(reference):
        return []
    sd = spread([float(v[QUALITY]) for v in seeds.values()])
    # the equal split at every seed: its mean is the base of each mde's share
    paper = {int(s): (float(v[QUALITY]), v.get(f"{QUALITY}-lo"), v.get(f"{QUALITY}-hi"))
             for s, v in seeds.items()} | {0: score(reference)}  # fmt: skip

    def at_noise(t) -> str | None:
        pa = t.user_attrs.get("PA-md-digit")
        if not refs or pa is None:
            return None
        return verdicts.noise_level(t.values[0], refs["noise_FVD-md"], float(pa),
                                    refs["chance_PA-md-digit"], f"trial {t.number}",
                                    refs.get("n"))  # fmt: skip

    others = [t for t in front if t.number != reference.number and None not in score(t)]
    gaps = [variants.gap(QUALITY, {0: score(t)}, paper, sd) for t in others]
    calls = variants.decide(QUALITY, [(g, at_noise(t) or at_noise(reference))
                                      for t, g in zip(others, gaps)])  # fmt: skip
    return [dict(number=t.number, params=t.params, seed_spread=sd) | c.row()
            for t, c in zip(others, calls)]  # fmt: skip


def verdict_note(found: list[dict], seeds: int = 2) -> str:
    """Whether any front trial beats the equal split by more than its smallest detectable
    effect (`front_verdicts`); `seeds`: how many seeds the equal split has so far."""
    if not found and seeds < 2:
        return ("The front is not judged yet: the equal split's other seeds are not trained, "
                "so there is no seed spread to read a gap against.")  # fmt: skip
    if not found:
        return "No front trial to compare with the equal split (or no reference yet)."
    lines = [
        f"Front trials against the equal split ({variants.RULE}). The front is chosen "
        "partly for low FVD-md, so a `better` here is read with that in mind (a "
        "winner's curse): the trial's own rerun at other seeds is what confirms it.",
        "",
    ]
    lines += [f"- trial {v['number']}: **{v['verdict']}**; {v['why']}" for v in found]
    better = [v["number"] for v in found if v["verdict"] == "better"]
    lines += ["", f"Front trials that beat the equal split beyond the noise: {better}."
              if better else "No front trial beats the equal split by more than the smallest "
              "effect this design could have seen: the front tells configs apart by cost, "
              "not by quality."]  # fmt: skip
    return "\n".join(lines)


def _phases(out: Path) -> dict:
    """Seconds per phase of the study's run (`phases.json`; trials, reference seeds)."""
    path = out / "phases.json"
    found = json.loads(path.read_text()) if path.is_file() else {}
    return {k: dict(seconds=v["seconds"], sessions=v["sessions"]) for k, v in found.items()}


def redraw(folder: Path, reference: Path | None = None) -> str:
    """`python -m harness.report DIR` on a sweep folder (its `study.db`, one study); returns
    what to print."""
    store = open_storage(f"sqlite:///{(folder / 'study.db').resolve()}", 60)
    names = optuna.get_all_study_names(store)
    if len(names) != 1:
        raise ValueError(f"{folder / 'study.db'} holds {len(names)} studies ({names}); redraw "
                         "one with python -m harness.sweep --report-only --study NAME")  # fmt: skip
    summary = write_report(optuna.load_study(study_name=names[0], storage=store), folder)
    return f"report: {folder / 'report.md'} ({summary['spent']} trials spent)"
