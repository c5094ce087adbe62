"""What an ablations folder needs besides its scores, measured once its variants are trained:
`python -m harness.studies.ablate ...` calls `finish` after training, and
`python -m harness.studies.ablate --finish` runs it alone on a folder.

Writes, beside the ablations' `<name>/table.csv` and `<name>/curves.csv`:
- `ablations.json`: the registry as run (each ablation's question and every variant with its
  config changes and status: `ran`, `skipped` with the reason (e.g. K = 5 on 8 frames), or
  `not run`), so the report is drawn from files alone;
- `references.csv`: real vs real, noise vs real and chance at the scores' n (the scale of
  every verdict);
- `speed.csv`: each variant's sampling speedup over vanilla sampling (K = 1, same steps)
  measured on its backbone at its shape, against the FLOP-ratio bound (`measure.cost`);
- `strips.pt`: two videos sampled from each variant's final weights, same prompts and seed.

Each derived file records what made it (`artifacts.json`, `speed.csv`'s identity column) and
is remade when that changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ablations import ABLATIONS
from harness.common.io import write_csv, write_json
from harness.measure.cost import measure_costs, setup_for
from harness.metrics import MetricOptions
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import reference_scores
from harness.pipeline.provenance import checkpoint_info, code_revision, digest
from harness.pipeline.sample import generate
from harness.studies.paper import Artifacts
from harness.studies.trials import (
    ABLATION_METRICS,
    SCALES,
    TrialScale,
    split_sampling,
    trial_config,
)

STRIP_SAMPLES = 2
SPEED_REPEATS = 5


def registry(scale: TrialScale, runs: Path, tables: pd.DataFrame) -> list[dict]:
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


def measure_speed(out: Path, scale: TrialScale, runs: Path, found: list[dict]) -> pd.DataFrame:
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


def sample_strips(out: Path, scale: TrialScale, runs: Path, found: list[dict]) -> None:
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


def finish(out: Path, scale_name: str, options: MetricOptions | None = None) -> list[dict]:
    """Registry, references, speed and strips of the ablations folder `out`."""
    scale = SCALES[scale_name]
    options = options or MetricOptions(evaluator=scale.evaluator, device=scale.device)
    runs = out / "runs"
    tables = sorted(out.glob("*/table.csv"))
    if not tables:
        raise FileNotFoundError(f"no ablation tables under {out}: run an ablation first")
    table = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    found = registry(scale, runs, table)
    write_json(out / "ablations.json", dict(scale=scale_name, ablations=found))
    paper = trial_config(scale, runs)
    n = int(table["n"].max())
    reference_scores(out / "references.csv", paper, n, options, ABLATION_METRICS, progress=True)
    measure_speed(out, scale, runs, found)
    sample_strips(out, scale, runs, found)
    return json.loads((out / "ablations.json").read_text())["ablations"]
