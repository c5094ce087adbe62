"""Summary, verdicts, plots and report.md of an ablations folder, drawn from its files alone:
`python -m harness.report results/ablations` redraws everything without the run folders.

Reads `ablations.json` (the registry as run), every `<name>/table.csv` (the final score of
each variant at each training seed) and `<name>/curves.csv` (every scored snapshot),
`references.csv`, `speed.csv` and `strips.pt` (`harness.studies.ablations.run`). Writes
`summary.csv` and `summary.json` (a row per variant of every registered ablation, skipped
ones with the reason), one `<name>/<name>.png` per ablation (KVD-md along training cost,
final FVD-md per seed against sampling cost, and the speedup against its bound),
`<name>/<name>_samples.png` and `.gif` (two videos per variant, still and moving) and
`report.md`.

Per variant, over its seeds: FVD-md, KVD-md, PA-md-digit, stutter and the motion gap
(each the mean over the seeds, with the per-seed values), sampling speedup over vanilla
against the FLOP bound, and the training cost to the paper setting's target
(`verdicts.time_to_target` on the KVD-md curves, unbiased at every n, over the seeds the
variant shares with the paper setting). Verdicts against the paper setting on FVD-md,
PA-md-digit and the motion gap (`VERDICTS`) follow `variants.RULE`: paired per-seed gaps,
Holm-adjusted within each metric over every tested row of the folder, and a smallest
detectable effect on every `within noise`.

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
from harness.common.video import to_uint8_videos  # noqa: E402
from harness.studies.core import variants, verdicts  # noqa: E402
from harness.studies.core.animations import side_by_side  # noqa: E402
from harness.studies.core.inputs import (  # noqa: E402
    load_torch_strict,
    read_csv_strict,
    read_json_strict,
)
from harness.studies.core.plots import plot_video_rows  # noqa: E402
from harness.studies.core.seeds import spread  # noqa: E402
from harness.studies.core.staging import staged  # noqa: E402
from harness.studies.core.verdicts import Curve  # noqa: E402

PAPER = "paper"
QUALITY = "FVD-md"
CURVE = "KVD-md"  # the curves' metric: unbiased at the curve n and at the final n alike
MOTION = "motion-gap"
PROMPT = "PA-md-digit"
# (metric, column) of each verdict against the paper's setting
VERDICTS = ((QUALITY, "verdict"), (PROMPT, "prompt_verdict"), (MOTION, "motion_verdict"))
SHOWN = ("variant", "status", "seeds", "FVD-md", "verdict", "verdict_gap", "verdict_mde",
         "PA-md-digit", "prompt_verdict", "motion-gap", "motion_verdict", "stutter",
         "cost_to_target_ratio", "inference_speedup", "flop_ratio_bound")  # fmt: skip
MEANS = (QUALITY, CURVE, PROMPT, MOTION, "stutter", "flicker", "train_gflops", "infer_gflops",
         "train_wall_s")  # fmt: skip
# the numeric columns of the tables, curves and references, and of speed.csv
SCORES = ("n", "step", "seed", "train_flops", "train_gflops", "infer_gflops", "train_wall_s",
          *(f"{m}{s}" for m in (QUALITY, MOTION, CURVE) for s in ("", "-lo", "-hi")),
          "PA-md", PROMPT, "flicker", "stutter", "stutter-real")  # fmt: skip
SPEED = ("flop_ratio_bound", "inference_speedup", "measured_over_bound")


def _fix(out: Path) -> str:
    return (f"restore the file from git (a committed folder) or rerun python -m "
            f"harness.studies.ablate NAMES --out {out} (then --finish)")  # fmt: skip


def _tables(out: Path, names: list[str], kind: str, key: tuple[str, ...],
            filled: tuple[str, ...]) -> pd.DataFrame:  # fmt: skip
    """Every `<name>/<kind>.csv` of the registry's ablations, checked (each holds rows of
    its own ablation only)."""
    frames = []
    for path in (out / n / f"{kind}.csv" for n in names if (out / n / f"{kind}.csv").is_file()):
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
    registry = _registry(out)
    names = [e["name"] for e in registry["ablations"]]
    made = [out / n / "curves.csv" for n in names if (out / n / "table.csv").is_file()]
    if not made or any(not c.is_file() for c in made):
        raise FileNotFoundError(
            f"{out} has no ablation tables with curves (made before curves.csv existed?): "
            f"run python -m harness.studies.ablate NAMES --out {out} to score them again"
        )
    table = _tables(out, names, "table", ("ablation", "variant", "seed"),
                    ("ablation", "variant", "seed", "n", "data", QUALITY))  # fmt: skip
    curves = _tables(out, names, "curves", ("ablation", "variant", "seed", "step"),
                     ("ablation", "variant", "seed", "step", "n", "git", "train_flops",
                      CURVE))  # fmt: skip
    scored = set(zip(curves["ablation"], curves["variant"], curves["seed"]))
    bare = [
        f"{a}/{v} seed {s}"
        for a, v, s in zip(table["ablation"], table["variant"], table["seed"])
        if (a, v, s) not in scored
    ]
    if bare:
        raise ValueError(f"{out} has final scores without curves.csv rows for {bare}: "
                         f"{_fix(out)}")  # fmt: skip
    path = out / "references.csv"
    refs = read_csv_strict(
        path,
        _fix(out),
        filled=("kind", "n", "config_hash"),
        numeric=SCORES,
        key=("kind", "n", "config_hash"),
    )
    if table["n"].nunique() > 1:
        ns = sorted(int(v) for v in table["n"].unique())
        raise ValueError(f"{out} mixes final scores at n = {ns}: one folder holds one scale; "
                         f"{_fix(out)}")  # fmt: skip
    n = int(table["n"].max())
    refs = refs[refs["n"] == n]  # the scale every score is read at
    by_data = {str(d): {r["kind"]: r for r in g.to_dict("records")}
               for d, g in refs.groupby("config_hash")}  # fmt: skip
    lacking = sorted(str(d) for d in set(table["data"].astype(str))
                     if not {"real", "noise", "chance"} <= set(by_data.get(d, {})))  # fmt: skip
    if lacking:
        raise ValueError(
            f"{path} has no references at n = {n} for the data configs {lacking}: run "
            f"python -m harness.studies.ablate --finish --out {out}"
        )
    speed_path, strips = out / "speed.csv", out / "strips.pt"
    speed = pd.DataFrame()
    if speed_path.is_file():
        speed = read_csv_strict(speed_path, _fix(out), filled=("ablation", "variant"),
                                numeric=SPEED, key=("ablation", "variant"))  # fmt: skip
    phases = out / "phases.json"
    return dict(
        phases=read_json_strict(phases, _fix(out)) if phases.is_file() else {},
        registry=registry,
        table=table,
        curves=curves,
        refs=by_data,
        speed=speed,
        strips=load_torch_strict(strips, _fix(out)) if strips.is_file() else {},
    )


def interval(row: dict | pd.Series, metric: str) -> tuple[float, float, float]:
    """A score with its 90 % interval: the bootstrap band, or for PA-md-digit (a share of
    n videos) the Wilson interval."""
    if metric == PROMPT:
        share = float(row[PROMPT])
        return (share, *verdicts.wilson_interval(share, int(row["n"])))
    return float(row[metric]), float(row[f"{metric}-lo"]), float(row[f"{metric}-hi"])


def _noise(row: dict, refs: dict) -> str | None:
    """Why the variant's run at this seed is at noise level (its data's references), or None."""
    ref = refs[str(row["data"])]
    return verdicts.noise_level(float(row[QUALITY]), float(ref["noise"][QUALITY]),
                                float(row[PROMPT]), float(ref["chance"][PROMPT]),
                                f"{row['ablation']}/{row['variant']} seed {int(row['seed'])}",
                                int(row["n"]))  # fmt: skip


def seed_curves(curves: pd.DataFrame, name: str, label: str) -> dict[int, Curve]:
    """The KVD-md curve of each seed of a variant over cumulative training FLOPs."""
    mine = curves[(curves["ablation"] == name) & (curves["variant"] == label)]
    out = {}
    for seed, g in mine.groupby("seed"):
        g = g.sort_values("train_flops").drop_duplicates("train_flops", keep="last")
        if len(g) >= 3:
            out[int(seed)] = Curve(g["train_flops"].to_numpy(float), g[CURVE].to_numpy(float),
                                   g[f"{CURVE}-lo"].to_numpy(float),
                                   g[f"{CURVE}-hi"].to_numpy(float))  # fmt: skip
    return out


def _summary_row(head: dict, mine: pd.DataFrame) -> dict:
    """A variant's figures over its seeds: the mean of each score, the per-seed values."""
    row = dict(head, seeds=" ".join(str(int(s)) for s in sorted(mine["seed"])),
               n=int(mine["n"].max()))  # fmt: skip
    for col in MEANS:
        if col in mine and mine[col].notna().any():
            row[col] = float(mine[col].mean())
            row[f"{col}_per_seed"] = " ".join(f"{v:.4g}" for v in mine.sort_values("seed")[col])
    return row


def _speed(speed: pd.DataFrame, name: str, label: str) -> dict:
    if not len(speed):
        return {}
    hit = speed[(speed["ablation"] == name) & (speed["variant"] == label)]
    return hit.iloc[0][list(SPEED)].to_dict() if len(hit) else {}


def _against_paper(row: dict, runs: pd.DataFrame, paper: dict[int, dict], files: dict,
                   paper_curves: dict[int, Curve]) -> tuple[dict, dict]:  # fmt: skip
    """A variant's cost to the paper setting's target and its gaps on each verdict metric:
    (the row's cost figures, metric -> (its `variants.Gap`, why it is at noise level or
    None))."""
    name, label = row["ablation"], row["variant"]
    figures = {}
    mine_curves = seed_curves(files["curves"], name, label)
    own = set(runs["run"]) - {r["run"] for r in paper.values()}
    if own and set(mine_curves) & set(paper_curves):  # sampling-only variants: the paper's run
        found, est = verdicts.time_to_target(paper_curves, mine_curves)
        figures = dict(target=found["target"], cost_to_target_ratio=est.estimate,
                       cost_to_target_lo=est.lo, cost_to_target_hi=est.hi)  # fmt: skip
    per_seed = {int(r["seed"]): r for r in runs.to_dict("records")}
    shared = sorted(set(per_seed) & set(paper))
    refs = files["refs"]
    reasons = [_noise(per_seed[s], refs) for s in shared] + [_noise(paper[s], refs) for s in shared]
    noise = "; ".join(r for r in reasons if r) or None
    gaps = {}
    for metric, _ in VERDICTS:
        mine = {s: interval(per_seed[s], metric) for s in shared}
        theirs = {s: interval(r, metric) for s, r in paper.items()}
        if any(np.isnan(v[0]) for v in (*mine.values(), *theirs.values())):
            gaps[metric] = None  # a score is missing: no verdict on this metric
            continue
        gaps[metric] = (variants.gap(
            metric, mine, theirs, spread([v[0] for v in theirs.values()]),
            higher_is_better=metric == PROMPT), noise)  # fmt: skip
    return figures, gaps


def judge(files: dict) -> pd.DataFrame:
    """A summary row per registered variant of every ablation, with its verdicts: every
    tested row of a metric, over all ablations, is one Holm family (`variants.decide`)."""
    table, curves = files["table"], files["curves"]
    rows, tests = [], {metric: [] for metric, _ in VERDICTS}  # metric -> [(row, gap, noise)]
    for entry in files["registry"]["ablations"]:
        name = entry["name"]
        mine = table[table["ablation"] == name]
        paper = {int(r["seed"]): r for r in mine[mine["variant"] == PAPER].to_dict("records")}
        paper_curves = seed_curves(curves, name, PAPER)
        for v in entry["variants"]:
            label = v["label"]
            head = dict(ablation=name, variant=label, changes=json.dumps(v["changes"]),
                        status=v["status"], reason=v["reason"])  # fmt: skip
            runs = mine[mine["variant"] == label]
            if head["status"] != "ran" or runs.empty or not paper:  # the registry's row only
                rows.append(head | ({} if head["status"] != "ran" else dict(status="not run")))
                continue
            row = _summary_row(head, runs) | _speed(files["speed"], name, label)
            if label == PAPER:
                row |= {key: "reference" for _, key in VERDICTS}
                row |= {f"{m}_seed_spread": spread(list(runs[m])) for m, _ in VERDICTS}
            else:
                figures, gaps = _against_paper(row, runs, paper, files, paper_curves)
                row |= figures
                for metric, found in gaps.items():
                    if found is None:
                        key = dict(VERDICTS)[metric]
                        row |= {key: "not measured", f"{key}_why": f"{metric} is missing"}
                    else:
                        tests[metric].append((len(rows), *found))
            rows.append(row)
    for metric, key in VERDICTS:
        calls = variants.decide(metric, [(g, noise) for _, g, noise in tests[metric]])
        for (i, _, _), call in zip(tests[metric], calls):
            rows[i] |= {key: call.verdict, f"{key}_why": call.why, f"{key}_gap": call.gap,
                        f"{key}_lo": call.lo, f"{key}_hi": call.hi, f"{key}_p": call.p,
                        f"{key}_p_holm": call.p_holm, f"{key}_mde": call.mde,
                        f"{key}_mde_share": call.mde_share,
                        f"{key}_provisional": call.provisional}  # fmt: skip
    return pd.DataFrame(rows)


def plot_ablation(name: str, about: str, rows: pd.DataFrame, table: pd.DataFrame,
                  curves: pd.DataFrame, path: Path) -> None:  # fmt: skip
    """KVD-md along training cost (every seed, 90 % bands; a variant that changes sampling
    only shares the paper setting's snapshot scores and shows its final point), final FVD-md
    of every seed (with its interval) and their mean against sampling cost, and measured
    speedup beside the FLOP bound."""
    ran = rows[rows["status"] == "ran"].reset_index(drop=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    here = curves[curves["ablation"] == name]
    shared = set(here.loc[here["variant"] == PAPER, "identity"]) if "identity" in here else set()
    for i, r in enumerate(ran.itertuples()):
        colour = "#222222" if r.variant == PAPER else f"C{i}"
        mine = here[here["variant"] == r.variant]
        if r.variant != PAPER:  # a sampling-only variant's snapshots are the paper setting's
            mine = mine[~mine["identity"].isin(shared)]  # scores: drawn once, as the paper's
        for j, (_, c) in enumerate(mine.groupby("seed")):
            c = c.sort_values("train_flops")
            axes[0].plot(
                c["train_flops"] / 1e12,
                c[CURVE],
                marker="o",
                markersize=3,
                color=colour,
                linewidth=1,
                label=r.variant if j == 0 else None,
            )
            axes[0].fill_between(c["train_flops"] / 1e12, c[f"{CURVE}-lo"], c[f"{CURVE}-hi"],
                                 color=colour, alpha=0.08, linewidth=0)  # fmt: skip
        finals = table[(table["ablation"] == name) & (table["variant"] == r.variant)]
        x = finals["infer_gflops"]
        axes[1].errorbar(x, finals[QUALITY], capsize=2, fmt="o", markersize=3, color=colour,
                         alpha=0.6, yerr=[finals[QUALITY] - finals[f"{QUALITY}-lo"],
                                          finals[f"{QUALITY}-hi"] - finals[QUALITY]])  # fmt: skip
        axes[1].plot([float(x.mean())], [float(finals[QUALITY].mean())], marker="D",
                     color=colour, markersize=6)  # fmt: skip
        axes[1].annotate(f"{r.variant} ({len(finals)} seeds)",
                         (float(x.mean()), float(finals[QUALITY].mean())), fontsize=7,
                         xytext=(5, -3 + 9 * (i % 3)), textcoords="offset points")  # fmt: skip
    if "target" in ran and ran["target"].notna().any():
        axes[0].axhline(float(ran["target"].dropna().iloc[0]), color="#888888", linestyle=":",
                        linewidth=1, label="target (paper setting)")  # fmt: skip
    axes[0].set(xlabel="cumulative training TFLOPs", ylabel=f"{CURVE} (lower is better)")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="sampling GFLOPs per video",
                ylabel=f"final {QUALITY} (dots: seeds; diamond: mean)")  # fmt: skip
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


def animate_strips(name: str, rows: pd.DataFrame, strips: dict, path: Path) -> bool:
    """`<name>_samples.gif`: the strips' videos moving, a column per variant (same prompts
    and sampling seed in every column); False when none was sampled."""
    shown = [(r.variant, strips[f"{name}/{r.variant}"]) for r in rows.itertuples()
             if f"{name}/{r.variant}" in strips]  # fmt: skip
    if not shown:
        return False
    side_by_side([(v, to_uint8_videos(s["videos"])) for v, s in shown],
                 list(shown[0][1]["captions"]), path)  # fmt: skip
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
        lines += [f"![{name} samples]({name}/{name}_samples.png)", "",
                  f"![{name} samples, moving]({name}/{name}_samples.gif)", ""]  # fmt: skip
    return lines


def _time_line(time: dict) -> str:
    phases = ", ".join(f"{k} {v / 60:.1f} min" for k, v in time["phases_s"].items())
    sessions = max(time["sessions"].values(), default=0)
    over = f" (over {sessions} sessions)" if sessions > 1 else ""
    return (f"Wall-clock time (`phases.json`): {phases or 'not recorded'}{over}; training "
            f"compute summed over the runs: {time['train_compute_s'] / 60:.0f} min.")  # fmt: skip


def report_md(files: dict, summary: dict, rows: pd.DataFrame, samples: dict) -> str:
    refs = "; ".join(
        f"data `{d}`: real vs real FVD-md {_cell(r['real'][QUALITY])}, uniform noise vs real "
        f"{_cell(r['noise'][QUALITY])}, chance PA-md-digit {_cell(r['chance'][PROMPT])}"
        for d, r in files["refs"].items()
    )
    family = ", ".join(f"{m}: {f['tested']} rows, about {f['expected_false_calls']:.1f} false "
                       f"calls expected without the adjustment"
                       for m, f in summary["multiple_comparisons"].items())  # fmt: skip
    head = [
        "# Ablations",
        "",
        f"Scale `{summary['scale']}`: every variant is the paper's TPDiff setting with one "
        f"config difference, trained and scored alike. The paper setting is trained at "
        f"{summary['paper_seeds']} seeds (its spread is the noise floor), each variant at its "
        "ablation's seeds, paired with the paper setting's (same init, data order and "
        f"sampling noise). Final scores at n = {summary['n']} generated and real videos; "
        "each figure is the mean over the variant's seeds (`seeds`). FVD-md and KVD-md: "
        "lower is better; PA-md-digit is the share of videos showing the prompted digit; "
        "`stutter` is the share of frame pairs that barely change; `motion-gap` compares "
        "frame-to-frame change with real video's (lower is better). `cost_to_target_ratio` "
        "is the training FLOPs a variant needs to reach the paper setting's target (its "
        "worst seed's KVD-md end level) over the paper setting's own, paired by seed "
        "(empty: never reached). Speedups are sampling time of vanilla (K = 1, same steps) "
        "over the variant's, beside the FLOP-ratio bound.",
        "",
        f"References at n = {summary['n']}: {refs}.",
        "",
        _time_line(summary["time"]),
        "",
        f"**Verdict rule** ({QUALITY} as `verdict`, {PROMPT} (Wilson interval) as "
        f"`prompt_verdict`, motion gap as `motion_verdict`): {variants.RULE}. "
        f"`*_gap` is the mean paired gap (> 0: worse), `*_mde` the smallest effect the row "
        f"could have seen. Multiple comparisons: {family}.",
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
    registry = files["registry"]["ablations"]
    rows = judge(files)
    samples = {}
    for entry in registry:
        name = entry["name"]
        mine = rows[(rows["ablation"] == name) & (rows["status"] == "ran")]
        samples[name] = bool(len(mine)) and plot_strips(
            name, mine, files["strips"], stage / name / f"{name}_samples.png"
        )
        if samples[name]:
            animate_strips(name, mine, files["strips"], stage / name / f"{name}_samples.gif")
        if len(mine):
            plot_ablation(name, entry["about"], mine, files["table"], files["curves"],
                          stage / name / f"{name}.png")  # fmt: skip
    tested = {m: int(rows[f"{key}_p_holm"].notna().sum()) if f"{key}_p_holm" in rows else 0
              for m, key in VERDICTS}  # fmt: skip
    summary = dict(
        scale=files["registry"]["scale"],
        paper_seeds=files["registry"].get("paper_seeds"),
        code=sorted(set(files["curves"]["git"].astype(str))),  # revisions that scored
        n=int(files["table"]["n"].max()),
        references={
            d: {
                k: {m: v.get(m) for m in (QUALITY, CURVE, PROMPT, "stutter", MOTION)}
                for k, v in kinds.items()
            }
            for d, kinds in files["refs"].items()
        },  # fmt: skip
        rule=variants.RULE,
        time=dict(
            phases_s={k: v["seconds"] for k, v in files["phases"].items()},
            sessions={k: v["sessions"] for k, v in files["phases"].items()},
            train_compute_s=float(files["table"].drop_duplicates("run")["train_wall_s"].sum()),
        ),
        multiple_comparisons={
            m: dict(
                tested=k,
                method="Holm",
                level=0.9,
                expected_false_calls=variants.expected_false_calls(k),
            )
            for m, k in tested.items()
        },  # fmt: skip
        not_run=[
            e["name"]
            for e in registry
            if (rows[rows["ablation"] == e["name"]]["status"] != "ran").all()
        ],  # fmt: skip
        ablations={
            e["name"]: dict(
                about=e["about"],
                seeds=e.get("seeds"),
                variants=rows[rows["ablation"] == e["name"]].to_dict("records"),
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
