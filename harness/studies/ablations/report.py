"""Summary, verdicts, plots and report.md of an ablations folder, drawn from its files alone:
`python -m harness.report results/ablations` redraws everything without the run folders.

Reads `ablations.json` (the registry as run), every `<name>/table.csv` (the final score of
each variant) and `<name>/curves.csv` (every scored snapshot), `references.csv`, `speed.csv`
and `strips.pt` (`harness.studies.ablations.run`). Writes `summary.csv` and `summary.json`
(a row per variant of every registered ablation, skipped ones with the reason), one
`<name>/<name>.png` per ablation (quality with its interval against training and sampling
cost, and the speedup against its bound), `<name>/<name>_samples.png` (two videos per
variant) and `report.md`.

Per variant: FVD-md with its 90 % interval, PA-md-digit, stutter and the motion gap (the
stage-boundary metrics), sampling speedup over vanilla against the FLOP bound, and training
cost to the target: the cumulative training FLOPs at which the variant's FVD-md curve first
reaches the target, the median of the paper setting's last 3 scored snapshots (a level it
reaches and holds, as in the paper suite), interpolated between snapshots, also as a ratio
to the paper setting's own. Verdicts against the paper's setting follow
`verdicts.ABLATION_RULE`, on FVD-md, PA-md-digit and the motion gap (`VERDICTS`).

A torn or inconsistent folder is refused before anything is written (`load`, through
`harness.studies.core.inputs`), and the outputs are written all or none
(`harness.studies.core.staging`).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.common.io import plain, save_figure, write_csv, write_json, write_text  # noqa: E402
from harness.studies.core import verdicts  # noqa: E402
from harness.studies.core.inputs import (  # noqa: E402
    load_torch_strict,
    read_csv_strict,
    read_json_strict,
)
from harness.studies.core.plots import plot_video_rows  # noqa: E402
from harness.studies.core.staging import staged  # noqa: E402
from harness.studies.core.verdicts import Estimate  # noqa: E402

PAPER = "paper"
QUALITY = "FVD-md"
MOTION = "motion-gap"
PROMPT = "PA-md-digit"
SEED_ABLATION, SEED_VARIANT = "seed", "seed 1"
# (metric, column) of each verdict against the paper's setting
VERDICTS = ((QUALITY, "verdict"), (PROMPT, "prompt_verdict"), (MOTION, "motion_verdict"))
SHOWN = ("variant", "status", "FVD-md", "FVD-md-lo", "FVD-md-hi", "PA-md-digit", "stutter",
         "motion-gap", "cost_to_target_ratio", "inference_speedup", "flop_ratio_bound",
         "verdict", "prompt_verdict", "motion_verdict")  # fmt: skip
# the numeric columns of the tables, curves and references, and of speed.csv
SCORES = ("n", "step", "train_flops", "train_gflops", "infer_gflops", "train_wall_s",
          *(f"{m}{s}" for m in (QUALITY, MOTION) for s in ("", "-lo", "-hi")),
          "PA-md", PROMPT, "flicker", "stutter", "stutter-real")  # fmt: skip
SPEED = ("flop_ratio_bound", "inference_speedup", "measured_over_bound")


def _fix(out: Path) -> str:
    return (f"restore the file from git (a committed folder) or rerun python -m "
            f"harness.studies.ablate NAMES --out {out} (then --finish)")  # fmt: skip


def _tables(out: Path, kind: str, key: tuple[str, ...], filled: tuple[str, ...]) -> pd.DataFrame:
    """Every `<name>/<kind>.csv`, checked (each holds rows of its own ablation only)."""
    frames = []
    for path in sorted(out.glob(f"*/{kind}.csv")):
        frame = read_csv_strict(path, _fix(out), filled=filled, numeric=SCORES, key=key)
        other = sorted(set(frame["ablation"]) - {path.parent.name})
        if other:
            raise ValueError(f"{path} holds rows of the ablations {other}, not only "
                             f"{path.parent.name!r}: {_fix(out)}")  # fmt: skip
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _registry(out: Path) -> dict:
    path = out / "ablations.json"
    fix = f"restore it from git or rerun python -m harness.studies.ablate --finish --out {out}"
    registry = read_json_strict(path, fix)
    entries, fields = registry.get("ablations"), {"name", "about", "variants"}
    whole = isinstance(entries, list) and all(isinstance(e, dict) and fields <= set(e)
                                              for e in entries)  # fmt: skip
    if "scale" not in registry or not whole:
        raise ValueError(f"{path} is not a registry (scale, ablations with name, about and "
                         f"variants): {fix}")  # fmt: skip
    return registry


def load(out: Path) -> dict:
    """The folder's files: registry, final rows, curves, references, speed (may be empty),
    strips (may be empty), each read whole and checked (harness.studies.core.inputs); raises
    ValueError / FileNotFoundError naming the file, the problem and the fix."""
    missing = [n for n in ("ablations.json", "references.csv") if not (out / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out} lacks {missing}: run python -m harness.studies.ablate --finish --out {out}"
        )
    made = [t.with_name("curves.csv") for t in sorted(out.glob("*/table.csv"))]
    if not made or any(not c.is_file() for c in made):
        raise FileNotFoundError(
            f"{out} has no ablation tables with curves (made before curves.csv existed?): "
            f"run python -m harness.studies.ablate NAMES --out {out} to score them again"
        )
    registry = _registry(out)
    table = _tables(out, "table", ("ablation", "variant"), ("ablation", "variant", "n"))
    curves = _tables(out, "curves", ("ablation", "variant", "step"),
                     ("ablation", "variant", "step", "n", "git", "train_flops",
                      QUALITY))  # fmt: skip
    scored = set(zip(curves["ablation"], curves["variant"]))
    bare = [f"{a}/{v}" for a, v in zip(table["ablation"], table["variant"]) if (a, v) not in scored]
    if bare:
        raise ValueError(f"{out} has final scores without curves.csv rows for {bare}: "
                         f"{_fix(out)}")  # fmt: skip
    path = out / "references.csv"
    refs = read_csv_strict(path, _fix(out), filled=("kind", "n"), numeric=SCORES,
                           key=("kind", "n"))  # fmt: skip
    refs = refs[refs["n"] == table["n"].max()]  # the scale every score is read at
    if not {"real", "noise", "chance"} <= set(refs["kind"]):
        raise ValueError(
            f"{path} has no references at n = {table['n'].max()}: run "
            f"python -m harness.studies.ablate --finish --out {out}"
        )
    speed_path, strips = out / "speed.csv", out / "strips.pt"
    speed = pd.DataFrame()
    if speed_path.is_file():
        speed = read_csv_strict(speed_path, _fix(out), filled=("ablation", "variant"),
                                numeric=SPEED, key=("ablation", "variant"))  # fmt: skip
    return dict(
        registry=registry,
        table=table,
        curves=curves,
        refs={r["kind"]: r for r in refs.to_dict("records")},
        speed=speed,
        strips=load_torch_strict(strips, _fix(out)) if strips.is_file() else {},
    )


def estimate(row: dict | pd.Series, metric: str) -> Estimate:
    """The score with its 90 % interval: the bootstrap band, or for PA-md-digit (a share of
    n videos) the Wilson interval."""
    if metric == PROMPT:
        share = float(row[PROMPT])
        return Estimate(share, *verdicts.wilson_interval(share, int(row["n"])))
    return Estimate(float(row[metric]), float(row[f"{metric}-lo"]), float(row[f"{metric}-hi"]))


def seed_spreads(table: pd.DataFrame) -> dict[str, float | None]:
    """|paper - seed 1| of each verdict metric: the seed spread (None: not run or not
    finite). The seed changes the training draws, the data and the sampling noise."""
    rows = table[table["ablation"] == SEED_ABLATION].set_index("variant")
    if not {PAPER, SEED_VARIANT} <= set(rows.index):
        return {QUALITY: None, MOTION: None, PROMPT: None}
    spreads = {m: abs(float(rows.loc[PAPER, m]) - float(rows.loc[SEED_VARIANT, m]))
               for m in (QUALITY, MOTION, PROMPT)}  # fmt: skip
    return {m: s if np.isfinite(s) else None for m, s in spreads.items()}  # NaN: unknown


def cost_to_target(curve: pd.DataFrame, target: float) -> float | None:
    """Cumulative training FLOPs at which `curve` first reaches FVD-md <= target."""
    curve = curve.sort_values("train_flops")
    return verdicts.reach(curve["train_flops"].to_numpy(), curve[QUALITY].to_numpy(), target)


def _noise(row: dict, refs: dict) -> str | None:
    return verdicts.noise_level(float(row[QUALITY]), float(refs["noise"][QUALITY]),
                                float(row["PA-md-digit"]), float(refs["chance"]["PA-md-digit"]),
                                f"{row['ablation']}/{row['variant']}", int(row["n"]))  # fmt: skip


def judge_ablation(entry: dict, files: dict, spreads: dict) -> list[dict]:
    """Summary rows of every registered variant of the ablation `entry` (ablations.json)."""
    name = entry["name"]
    table, curves, refs = files["table"], files["curves"], files["refs"]
    mine = table[table["ablation"] == name].set_index("variant")
    heads = [dict(ablation=name, variant=v["label"], changes=json.dumps(v["changes"]),
                  status=v["status"], reason=v["reason"]) for v in entry["variants"]]  # fmt: skip
    if PAPER not in mine.index:  # not run: the registry's rows only
        return [h | dict(status="not run") if h["status"] == "ran" else h for h in heads]
    speed = files["speed"]
    paper = mine.loc[PAPER].to_dict() | dict(ablation=name, variant=PAPER)
    curve = lambda v: curves[(curves["ablation"] == name) & (curves["variant"] == v)]  # noqa: E731
    target = float(np.median(curve(PAPER).sort_values("train_flops")[QUALITY].to_numpy()[-3:]))
    paper_cost = cost_to_target(curve(PAPER), target)
    rows = []
    for head in heads:
        label = head["variant"]
        if head["status"] != "ran" or label not in mine.index:
            rows.append(head | ({} if head["status"] != "ran" else dict(status="not run")))
            continue
        row = mine.loc[label].to_dict() | head
        cost = cost_to_target(curve(label), target)
        row |= dict(target=target, cost_to_target_flops=cost, train_flops_total=float(
            curve(label)["train_flops"].max()),
            cost_to_target_ratio=None if cost is None or not paper_cost else cost / paper_cost,
            bar=", ".join(verdicts.bar_misses(float(row[QUALITY]), float(row["PA-md-digit"]),
                                              float(refs["real"][QUALITY]))))  # fmt: skip
        hit = speed[(speed["ablation"] == name) & (speed["variant"] == label)] if len(speed) else []
        if len(hit):
            row |= hit.iloc[0][["flop_ratio_bound", "inference_speedup",
                                "measured_over_bound"]].to_dict()  # fmt: skip
        noise = [_noise(row, refs), _noise(paper, refs)]
        for metric, key in VERDICTS:
            if label == PAPER:
                row |= {key: "reference", f"{key}_why": "the paper's setting"}
                continue
            found, why = verdicts.ablation(metric, estimate(row, metric), estimate(paper, metric),
                                           spreads[metric], noise, metric == PROMPT)  # fmt: skip
            row |= {key: found, f"{key}_why": why}
        rows.append(row)
    return rows


def plot_ablation(name: str, about: str, rows: pd.DataFrame, curves: pd.DataFrame,
                  path: Path) -> None:  # fmt: skip
    """Quality along training cost (every snapshot, 90 % intervals), final quality against
    sampling cost, and measured speedup beside the FLOP bound."""
    ran = rows[rows["status"] == "ran"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    for i, r in enumerate(ran.itertuples()):
        c = curves[(curves["ablation"] == name) & (curves["variant"] == r.variant)]
        c = c.sort_values("train_flops")
        colour = "#222222" if r.variant == PAPER else f"C{i}"
        err = [c[QUALITY] - c[f"{QUALITY}-lo"], c[f"{QUALITY}-hi"] - c[QUALITY]]
        axes[0].errorbar(c["train_flops"] / 1e12, c[QUALITY], yerr=err, marker="o", capsize=3,
                         color=colour, label=r.variant)  # fmt: skip
        row = ran.loc[r.Index]
        axes[1].errorbar(row["infer_gflops"], row[QUALITY], capsize=3, marker="o", color=colour,
                         yerr=[[row[QUALITY] - row[f"{QUALITY}-lo"]],
                               [row[f"{QUALITY}-hi"] - row[QUALITY]]])  # fmt: skip
        axes[1].annotate(r.variant, (row["infer_gflops"], row[QUALITY]), fontsize=7,
                         xytext=(4, 4), textcoords="offset points")  # fmt: skip
    if "target" in ran and ran["target"].notna().any():
        axes[0].axhline(float(ran["target"].dropna().iloc[0]), color="#888888", linestyle=":",
                        linewidth=1, label="target (paper setting)")  # fmt: skip
    axes[0].set(xlabel="cumulative training TFLOPs", ylabel=f"{QUALITY} (lower is better)")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="sampling GFLOPs per video", ylabel=f"final {QUALITY}")
    if "inference_speedup" in ran:
        y = np.arange(len(ran))
        axes[2].barh(y + 0.2, ran["flop_ratio_bound"], height=0.4, color="#cccccc",
                     label="FLOP-ratio bound")  # fmt: skip
        axes[2].barh(y - 0.2, ran["inference_speedup"], height=0.4, color="#4c9be8",
                     label="measured")  # fmt: skip
        axes[2].set_yticks(y, ran["variant"])
        axes[2].invert_yaxis()
        axes[2].set(xlabel="sampling speedup over vanilla")
        axes[2].legend(fontsize=7)
    fig.suptitle(f"{name}: {about}", fontsize=9)
    save_figure(fig, path)


def plot_strips(name: str, rows: pd.DataFrame, strips: dict, path: Path) -> bool:
    """Two sampled videos per variant (rows) by frame (columns); False when none was sampled."""
    shown = [(r.variant, strips[f"{name}/{r.variant}"]) for r in rows.itertuples()
             if f"{name}/{r.variant}" in strips]  # fmt: skip
    if not shown:
        return False
    lines = [(f"{v}\n{s['captions'][i][:22]}", s["videos"][i]) for v, s in shown
             for i in range(len(s["captions"]))]  # fmt: skip
    plot_video_rows(lines, f"{name}: same prompts and seed for every variant", path,
                    size=(0.7, 0.75), fontsize=6)  # fmt: skip
    return True


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _section(name: str, about: str, rows: pd.DataFrame, samples: bool) -> list[str]:
    if (rows["status"] != "ran").all():
        return [f"## `{name}`: {about}", "", "Not run in this folder.", ""]
    cols = [c for c in SHOWN if c in rows]
    table = rows[cols].astype(object).map(_cell)
    why = [f"- `{r['variant']}`: " + "; ".join(r[f"{key}_why"] for _, key in VERDICTS)
           for r in rows.to_dict("records")
           if isinstance(r.get("verdict_why"), str) and r["variant"] != PAPER]  # fmt: skip
    skipped = [f"- `{r.variant}` {r.status}: {r.reason}" for r in rows.itertuples()
               if r.status != "ran"]  # fmt: skip
    lines = [f"## `{name}`: {about}", "", table.to_markdown(index=False), "", *why, *skipped, ""]
    lines += [f"![{name}]({name}/{name}.png)", ""]
    if samples:
        lines += [f"![{name} samples]({name}/{name}_samples.png)", ""]
    return lines


def report_md(files: dict, summary: dict, rows: pd.DataFrame, samples: dict) -> str:
    refs = files["refs"]
    head = [
        "# Ablations",
        "",
        f"Scale `{summary['scale']}`: every variant is the paper's TPDiff setting with one "
        f"config difference, trained and scored alike; final scores at n = {summary['n']} "
        "generated and real videos. Quality is FVD-md with its 90 % bootstrap interval "
        "(lower is better); PA-md-digit is the share of videos showing the prompted digit; "
        "`stutter` is the share of frame pairs that barely change (real videos: "
        f"{_cell(refs['real'].get('stutter'))}); `motion-gap` compares frame-to-frame change "
        "with real video's (lower is better). `cost_to_target_ratio` is the training FLOPs a "
        "variant needs to reach the target, the median FVD-md of the paper setting's last 3 "
        "snapshots, over the paper setting's own (empty: never reached; with n = 128 "
        "scores, a noisy figure). Speedups are sampling time of vanilla (K = 1, same "
        "steps) over the variant's, beside the FLOP-ratio bound.",
        "",
        f"References at n = {summary['n']}: real vs real FVD-md {_cell(refs['real'][QUALITY])}, "
        f"uniform noise vs real {_cell(refs['noise'][QUALITY])}, chance PA-md-digit "
        f"{_cell(refs['chance']['PA-md-digit'])}. Seed spread (the `seed` ablation: training "
        "draws, data and sampling noise): "
        f"FVD-md {_cell(summary['seed_spread'][QUALITY])}, PA-md-digit "
        f"{_cell(summary['seed_spread'][PROMPT])}, motion gap "
        f"{_cell(summary['seed_spread'][MOTION])}.",
        "",
        f"**Verdict rule** ({QUALITY} as `verdict`, {PROMPT} (Wilson interval) as "
        "`prompt_verdict`, motion gap as `motion_verdict`): "
        f"{verdicts.ABLATION_RULE}.",
        "",
    ]
    body = []
    for entry in files["registry"]["ablations"]:
        name = entry["name"]
        body += _section(name, entry["about"], rows[rows["ablation"] == name], samples[name])
    return "\n".join(head + body)


def build(out: str | Path) -> dict:
    """Draw summary.csv/json, the plots and report.md of the ablations folder `out`. Every
    input is checked first (`load`); the outputs are drawn into a staging folder and moved
    into `out` only when all of them are written (harness.studies.core.staging)."""
    out = Path(out)
    files = load(out)
    with staged(out) as stage:
        summary = draw(files, stage)
    return summary


def draw(files: dict, stage: Path) -> dict:
    """Write the outputs of an ablations folder into `stage` from its checked `files`."""
    spreads = seed_spreads(files["table"])
    registry = files["registry"]["ablations"]
    rows = pd.DataFrame([r for entry in registry for r in judge_ablation(entry, files, spreads)])
    samples = {}
    for entry in registry:
        name = entry["name"]
        mine = rows[(rows["ablation"] == name) & (rows["status"] == "ran")]
        samples[name] = bool(len(mine)) and plot_strips(
            name, mine, files["strips"], stage / name / f"{name}_samples.png"
        )
        if len(mine):
            plot_ablation(name, entry["about"], mine, files["curves"], stage / name / f"{name}.png")
    summary = dict(
        scale=files["registry"]["scale"],
        code=sorted(set(files["curves"]["git"].astype(str))),  # revisions that scored
        n=int(files["table"]["n"].max()),
        references={
            k: {m: v.get(m) for m in (QUALITY, "PA-md-digit", "stutter", MOTION)}
            for k, v in files["refs"].items()
        },  # fmt: skip
        seed_spread=spreads,
        rule=verdicts.ABLATION_RULE,
        not_run=[
            e["name"]
            for e in registry
            if (rows[rows["ablation"] == e["name"]]["status"] != "ran").all()
        ],  # fmt: skip
        ablations={
            e["name"]: dict(
                about=e["about"], variants=rows[rows["ablation"] == e["name"]].to_dict("records")
            )
            for e in registry
        },  # fmt: skip
    )
    write_csv(stage / "summary.csv", rows)
    write_json(stage / "summary.json", plain(summary))
    write_text(stage / "report.md", report_md(files, summary, rows, samples))
    return summary


def redraw(folder: Path, reference: Path | None = None) -> str:
    """`python -m harness.report DIR` on an ablations folder; returns what to print."""
    summary = build(folder)
    return f"report: {folder / 'report.md'} ({len(summary['ablations'])} ablations)"
