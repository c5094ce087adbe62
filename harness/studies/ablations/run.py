"""The named ablations (`ablations.ABLATIONS`), trained and scored into a folder, then what
the report needs besides the scores.

Each variant of an ablation is a config difference on the TPDiff baseline of the scale; it
is trained and scored by the studies' shared unit (`harness.studies.core.train_and_score`,
at the scale's `trial` points), the same path as the sweep, so variants that differ only
in sampling share a trained run and a rerun reuses every finished run and score. A variant
the scale cannot run (K = 5 needs a multiple of 16 frames) is skipped with the reason.
`ablate` writes `<out>/<name>/table.csv` (a row per variant: config changes, the final
FVD-md with its interval, PA-md, flicker, stutter and the motion gap, training and sampling
GFLOPs, training wall time) and `<name>/curves.csv` (every scored snapshot); trained runs
live in `<out>/runs/`.

Then, once the variants are trained (`run_all`, or `--finish` alone):
- `write_registry`: `ablations.json`, the registry as run (each ablation's question and
  every variant with its config changes and status: `ran`, `skipped` with the reason (e.g.
  K = 5 on 8 frames), or `not run`), so the report is drawn from files alone;
- `score_references`: `references.csv`, real vs real, noise vs real and chance at the
  scores' n (the scale of every verdict);
- `measure_speed`: `speed.csv`, each variant's sampling speedup over vanilla sampling (K = 1,
  same steps) measured on its backbone at its shape, against the FLOP-ratio bound;
- `sample_strips`: `strips.pt`, two videos sampled from each variant's final weights, same
  prompts and seed.
Each derived file records what made it (`artifacts.json`, `speed.csv`'s identity column) and
is remade when that changes. `report.build` then draws everything from those files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ablations import ABLATIONS
from harness.common.io import write_csv, write_json
from harness.common.lock import owned
from harness.measure.cost import measure_costs, setup_for
from harness.metrics import MetricOptions
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import reference_scores
from harness.pipeline.provenance import checkpoint_info, code_revision, digest
from harness.pipeline.sample import generate
from harness.studies.ablations import report
from harness.studies.core.artifacts import Artifacts
from harness.studies.core.protocol import (
    ABLATION_METRICS,
    MOTION_COLUMNS,
    QUALITY,
    SCORE_COLUMNS,
)
from harness.studies.core.scale import SCALES, Scale
from harness.studies.core.train_and_score import (
    split_sampling,
    train_and_score,
    trial_arm,
    trial_config,
)

COLUMNS = [QUALITY, *SCORE_COLUMNS, *MOTION_COLUMNS]
STRIP_SAMPLES = 2
SPEED_REPEATS = 5


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
        scored = train_and_score([trial_arm(cfg, scale.trial, ABLATION_METRICS)], options)
        for row in scored:  # every snapshot: the quality-against-cost curve
            head = dict(ablation=name, variant=label, changes=json.dumps(changes), run=cfg.name)
            curve.append(head | {k: row[k] for k in ("step", "n", "train_flops", "git", *COLUMNS)})
        rows.append(curve[-1])
    table = pd.DataFrame(rows)
    folder = out / name
    write_csv(folder / "curves.csv", pd.DataFrame(curve))
    write_csv(folder / "table.csv", table)
    return table


def registry(scale: Scale, runs: Path, tables: pd.DataFrame) -> list[dict]:
    """[{name, about, variants: [{label, changes, status, reason, run}]}] for every registered
    ablation in registry order, with what `tables` (the ablations' rows) says ran."""
    ran = {(r.ablation, r.variant): json.loads(r.changes) for r in tables.itertuples()}
    out = []
    for name, ablation in ABLATIONS.items():
        variants = []
        for label, changes in ablation.variants.items():
            entry = dict(label=label, changes=changes, status="ran", reason="", run="")
            cfg = trial_config(scale, runs, **changes)
            try:
                plan_for(cfg)
            except ValueError as err:  # e.g. more stages than the frame count allows
                entry |= dict(status="skipped", reason=str(err))
            else:
                entry["run"] = cfg.name
                if (name, label) not in ran:
                    entry |= dict(status="not run", reason=f"run: ablate {name}")
                elif ran[name, label] != json.loads(json.dumps(changes)):  # registry edited
                    entry |= dict(status="stale", reason=f"scored with other changes "
                                  f"{ran[name, label]}: rerun ablate {name}")  # fmt: skip
            variants.append(entry)
        out.append(dict(name=name, about=ablation.about, variants=variants))
    return out


def _ran(found: list[dict]) -> list[tuple[str, dict]]:
    return [(a["name"], v) for a in found for v in a["variants"] if v["status"] == "ran"]


def measure_speed(out: Path, scale: Scale, runs: Path, found: list[dict]) -> pd.DataFrame:
    """speed.csv: a row per distinct sampling plan of the variants that ran (renoising does not
    change the plan's cost; it is timed with the exact rule)."""
    path = out / "speed.csv"
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["identity"])
    rows, device = [], torch.device(scale.device)
    for name, entry in tqdm(_ran(found), desc="speed"):
        label = entry["label"]
        cfg = trial_config(scale, runs, **entry["changes"])
        setup = dataclasses.replace(setup_for(cfg), repeats=SPEED_REPEATS)
        plan = plan_for(cfg)
        identity = digest(dict(setup=dataclasses.asdict(setup), plan=plan.to_dict(),
                               code=code_revision(), threads=torch.get_num_threads()))  # fmt: skip
        hit = old[old["identity"] == identity]
        if len(hit):
            figures = hit.iloc[0].to_dict()
        else:
            _, summary = measure_costs(setup, plan, device)
            figures = dict(identity=identity, threads=torch.get_num_threads(), **{
                k: summary[k] for k in ("flop_ratio_bound", "inference_speedup",
                                        "measured_over_bound", "training_step_flop_ratio",
                                        "vanilla_sampling_s", "tpdiff_sampling_s")})  # fmt: skip
            old = pd.concat([old, pd.DataFrame([figures])], ignore_index=True)
        rows.append(
            dict(ablation=name, variant=label)
            | {k: v for k, v in figures.items() if k not in ("ablation", "variant")}
        )
    table = pd.DataFrame(rows)
    write_csv(path, table)
    return table


def sample_strips(out: Path, scale: Scale, runs: Path, found: list[dict]) -> None:
    """strips.pt: {"<ablation>/<variant>": {"videos": (2, C, F, H, W), "captions": [...]}},
    each sampled from the variant's final weights with its own sampling settings."""
    artifacts = Artifacts(out)
    path = out / "strips.pt"
    strips = torch.load(path, weights_only=False) if path.is_file() else {}
    for name, entry in tqdm(_ran(found), desc="strips"):
        label = entry["label"]
        train, changes = split_sampling(trial_config(scale, runs, **entry["changes"]))
        run = runs / train.name
        key = digest(dict(weights=checkpoint_info(run / "checkpoint.pt").key, changes=changes,
                          n=STRIP_SAMPLES, code=code_revision()))  # fmt: skip
        strip = f"strips.pt:{name}/{label}"
        if artifacts.keys.get(strip) == key and f"{name}/{label}" in strips:
            continue
        gen = generate(run, dict(changes, num_samples=STRIP_SAMPLES, device=scale.device),
                       progress=False)  # fmt: skip
        strips[f"{name}/{label}"] = dict(videos=gen.videos.cpu(), captions=list(gen.captions))
        torch.save(strips, path)
        artifacts.record(strip, key)


def write_registry(out: Path, scale_name: str) -> tuple[pd.DataFrame, list[dict]]:
    """ablations.json: the registry as run, from the ablations' tables in `out`; returns
    (their rows, the registry entries)."""
    tables = sorted(out.glob("*/table.csv"))
    if not tables:
        raise FileNotFoundError(f"no ablation tables under {out}: run an ablation first")
    table = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    found = registry(SCALES[scale_name], out / "runs", table)
    write_json(out / "ablations.json", dict(scale=scale_name, ablations=found))
    return table, found


def score_references(out: Path, scale: Scale, n: int, options: MetricOptions) -> None:
    """references.csv: real vs real, noise vs real and chance at n, on the paper setting's
    data (every variant's)."""
    paper = trial_config(scale, out / "runs")
    reference_scores(out / "references.csv", paper, n, options, ABLATION_METRICS, progress=True)


def run_all(out: Path, names: list[str], scale_name: str, train: bool = True) -> dict:
    """Train and score the ablations `names` into `out` (held by this process for the whole
    study; `train=False`: only the steps after training), write the registry, score the
    references, measure speed, sample strips and draw the report."""
    scale = SCALES[scale_name]
    options = MetricOptions(evaluator=scale.evaluator, device=scale.device)
    with owned(out, "ablation study folder"):
        for name in names if train else []:
            ablate(name, scale_name, out, options)
        table, found = write_registry(out, scale_name)
        score_references(out, scale, int(table["n"].max()), options)
        measure_speed(out, scale, out / "runs", found)
        sample_strips(out, scale, out / "runs", found)
        return report.build(out)
