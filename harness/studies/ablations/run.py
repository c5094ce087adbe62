"""The named ablations (`ablations.ABLATIONS`), trained and scored into a folder, then what
the report needs besides the scores.

Each variant of an ablation is a config difference on the TPDiff baseline of the scale
(plus the ablation's `base`); `design` lists every (ablation, variant, seed): the paper
setting at PAPER_SEEDS seeds, each variant at its ablation's seeds, paired with the paper
setting's (seed s of every row shares the init, data order and sampling noise). Runs are
named by the hash of their training config, so variants that differ only in sampling share
a trained run, the paper setting is trained once for all ablations, and a rerun reuses
every finished run and score. `arms` turns them into the studies' shared unit
(`harness.studies.core.train_and_score`, `workers` runs side by side, one thread each): a
curve at the scale's curve points (KVD-md, unbiased at small n) and a final score at the
final n for each sampling setting. A variant the scale cannot run is skipped with the
reason. `ablate` writes `<out>/<name>/table.csv` (a row per variant and seed: config
changes, data hash, FVD-md and KVD-md with their intervals, PA-md, flicker, stutter and
the motion gap, training and sampling GFLOPs, training wall time) and `<name>/curves.csv`
(every scored snapshot); trained runs live in `<out>/runs/`.

Then, once the variants are trained (`run_all`, or `--finish` alone):
- `write_registry`: `ablations.json`, the registry as run (each ablation's question, seeds
  and every variant with its config changes, the seeds that ran and its status: `ran`,
  `skipped` with the reason, `not run`, or `stale` when its rows were scored with other
  changes or on another scale's or config's runs), so the report is drawn from files alone;
- `score_references`: `references.csv`, real vs real, noise vs real and chance at the final
  n, for each data config (a 16-frame variant has its own, and its own evaluator);
- `measure_speed`: `speed.csv`, each variant's sampling speedup over vanilla sampling (K = 1,
  same steps) measured on its backbone at its shape, against the FLOP-ratio bound;
- `sample_strips`: `strips.pt`, two videos sampled from each variant's final weights at its
  first seed, same prompts and seed.
Each derived file records what made it (`artifacts.json`, `speed.csv`'s identity column) and
is remade when that changes; `phases.json` records where the time went. `report.build`
then draws everything from those files.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ablations import ABLATIONS, PAPER, PAPER_SEEDS
from harness.common.config import Config
from harness.common.io import write_csv, write_json, write_torch
from harness.common.lock import owned
from harness.measure.cost import measure_costs, setup_for
from harness.metrics import MetricOptions
from harness.metrics.evaluator import EvaluatorRecipe
from harness.models import cached
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import reference_scores
from harness.pipeline.provenance import (
    checkpoint_info,
    code_revision,
    data_hash,
    digest,
    read_results,
)
from harness.pipeline.sample import generate
from harness.studies.ablations import report
from harness.studies.core.adopt import adopt, check_source
from harness.studies.core.artifacts import Artifacts
from harness.studies.core.phases import Phases
from harness.studies.core.protocol import FINAL_METRICS, MOTION_COLUMNS, QUALITY, SCORE_COLUMNS
from harness.studies.core.scale import SCALES, Scale
from harness.studies.core.seeds import seeded_name
from harness.studies.core.train_and_score import (
    Arm,
    curve_and_final,
    split_sampling,
    train_and_score,
    trial_config,
)

COLUMNS = [QUALITY, *SCORE_COLUMNS, *MOTION_COLUMNS, "KVD-md", "KVD-md-lo", "KVD-md-hi"]
STRIP_SAMPLES = 2
SPEED_REPEATS = 5


@dataclass(frozen=True)
class Variant:
    """One row of one ablation at one training seed: its full config (`cfg`, named by the
    hash of its training config), the run it trains or shares and the sampling changes its
    final score is made under."""

    ablation: str
    label: str
    seed: int
    cfg: Config

    @property
    def changes(self) -> dict:
        """The registry's changes of this row (the ablation's `base` included)."""
        ablation = ABLATIONS[self.ablation]
        return ablation.base | ablation.variants[self.label]

    @property
    def split(self) -> tuple[Config, dict]:
        return split_sampling(self.cfg)

    @property
    def run(self) -> str:
        """The trained run's folder name at this seed (`Arm.with_seed`)."""
        return seeded_name(self.split[0].name, self.seed)


def evaluator_for(scale: Scale, cfg: Config) -> EvaluatorRecipe | None:
    """The scale's evaluator at cfg's frame count (a 16-frame variant has its own)."""
    if scale.evaluator is None or scale.evaluator.frames == cfg.frames:
        return scale.evaluator
    return dataclasses.replace(scale.evaluator, frames=cfg.frames)


def require_committed(scale: Scale, recipe: EvaluatorRecipe | None) -> None:
    """A scale that scores with a committed evaluator scores its other-frame variants with
    committed ones too (a fixed instrument); FileNotFoundError with the command that makes
    one otherwise."""
    listed = cached.manifest()
    if recipe is None or scale.evaluator is None or recipe == scale.evaluator:
        return
    if f"evaluator/{scale.evaluator.key()}" in listed and f"evaluator/{recipe.key()}" not in listed:
        raise FileNotFoundError(
            f"the evaluator {recipe.key()} ({recipe.frames} frames) is not committed in "
            f"weights/: run python -m harness.weights train evaluator --add "
            f"frames={recipe.frames} --like {scale.evaluator.key()} --commit, then commit "
            f"weights/"
        )


def design(names: list[str], scale: Scale, runs: Path,
           offset: int = 0) -> tuple[list[Variant], dict[str, str]]:  # fmt: skip
    """Every (ablation, variant, seed) of `names` to run: the paper row at PAPER_SEEDS
    seeds, every other variant at its ablation's `seeds`, the seeds `offset`, `offset + 1`,
    ...; and the variants the scale cannot run ("<ablation>/<label>" -> the reason)."""
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; choose from {', '.join(ABLATIONS)}")
    rows, skipped = [], {}
    for name in names:
        ablation = ABLATIONS[name]
        for label, changes in ablation.variants.items():
            cfg = trial_config(scale, runs, **(ablation.base | changes))
            try:
                plan_for(cfg)
            except ValueError as err:  # e.g. more stages than the frame count allows
                skipped[f"{name}/{label}"] = str(err)
                continue
            count = PAPER_SEEDS if label == PAPER else ablation.seeds
            rows += [Variant(name, label, offset + i, cfg) for i in range(count)]
    return rows, skipped


def _key(changes: dict) -> str:
    """The `sampling_key` of a final score under the sampling `changes` ("" for none)."""
    return "s" + digest(json.loads(json.dumps(changes)), 10) if changes else ""


def arms(variants: list[Variant], scale: Scale) -> list[Arm]:
    """One arm per trained run and seed (`curve_and_final`): its curve, and a final score
    for each sampling setting its variants need (the run's own always)."""
    grouped: dict[tuple[str, int], tuple[Config, dict[str, dict]]] = {}
    for v in variants:
        train, changes = v.split
        entry = grouped.setdefault((train.name, v.seed), (train, {"": {}}))
        entry[1][_key(changes)] = changes
    return [curve_and_final(train, scale, finals).with_seed(seed)
            for (_, seed), (train, finals) in grouped.items()]  # fmt: skip


def tables(variants: list[Variant], scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(final rows, curve rows): a row per variant and seed with its final score, and its
    curve (the run's curve points, then its own final)."""
    finals, curves = [], []
    if scored.empty:
        return pd.DataFrame(), pd.DataFrame()
    keys = scored["sampling_key"].astype(object).fillna("").astype(str)
    scored = scored.assign(sampling_key=keys)
    for v in variants:
        train, changes = v.split
        mine = scored[(scored["run"] == v.run) & (scored["seed"] == v.seed)]
        final = mine[(mine["role"] == "final") & (mine["sampling_key"] == _key(changes))]
        if len(final) != 1:
            raise RuntimeError(f"{v.ablation}/{v.label} seed {v.seed}: {len(final)} final "
                               f"scores of {v.run} (expected 1)")  # fmt: skip
        head = dict(ablation=v.ablation, variant=v.label, seed=v.seed,
                    changes=json.dumps(v.changes), run=v.run, data=data_hash(train))  # fmt: skip
        keep = ("step", "n", "train_flops", "git", "identity", *COLUMNS)
        row = head | {k: final.iloc[0].get(k) for k in keep}
        finals.append(row)
        curve = mine[mine["role"] == "curve"].sort_values("step")
        curves += [head | {k: r.get(k) for k in keep} for r in curve.to_dict("records")]
        curves.append(row)
    return pd.DataFrame(finals), pd.DataFrame(curves)


def ablate(names: list[str], scale_name: str, out: Path, offset: int = 0,
           workers: int | None = None, reuse: Path | None = None) -> pd.DataFrame:  # fmt: skip
    """Train and score every variant of the ablations `names` at its seeds (`workers`
    runs side by side, one thread each; default the scale's), then write each ablation's
    `<name>/table.csv` (a row per variant and seed) and `<name>/curves.csv`; returns the
    final rows of all of them."""
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    if reuse is not None:
        check_source(reuse)
    variants, skipped = design(names, scale, out / "runs", offset)
    for what, reason in skipped.items():
        print(f"{what} skipped at scale {scale_name}: {reason}")
    workers = scale.workers if workers is None else workers
    rows = []
    by_instrument: dict[EvaluatorRecipe | None, list[Variant]] = {}
    for v in variants:
        by_instrument.setdefault(evaluator_for(scale, v.cfg), []).append(v)
    for recipe in by_instrument:
        require_committed(scale, recipe)
    for recipe, group in by_instrument.items():  # one evaluator per frame count
        options = MetricOptions(evaluator=recipe, device=scale.device)
        planned = arms(group, scale)
        for line in adopt(planned, reuse) if reuse is not None else []:
            print(f"reused {line}")
        rows += train_and_score(planned, options, workers=workers, progress=True)
    finals, curves = tables(variants, pd.DataFrame(rows))
    for name in names if len(finals) else []:
        mine = finals["ablation"] == name
        if mine.any():
            write_csv(out / name / "table.csv", finals[mine])
            write_csv(out / name / "curves.csv", curves[curves["ablation"] == name])
    return finals


def registry(scale: Scale, runs: Path, finals: pd.DataFrame) -> list[dict]:
    """[{name, about, seeds, variants: [{label, changes, status, reason, run, seeds}]}] for
    every registered ablation in registry order, with what `finals` (the ablations' rows)
    says ran; `changes` include the ablation's `base`."""
    ran: dict[tuple[str, str], dict] = {}
    seeds: dict[tuple[str, str], list[int]] = {}
    trained: dict[tuple[str, str], set[str]] = {}
    for r in finals.itertuples():
        ran[r.ablation, r.variant] = json.loads(r.changes)
        seeds.setdefault((r.ablation, r.variant), []).append(int(r.seed))
        trained.setdefault((r.ablation, r.variant), set()).add(str(r.run))
    out = []
    for name, ablation in ABLATIONS.items():
        variants = []
        for label, changes in ablation.variants.items():
            changes = ablation.base | changes
            entry = dict(label=label, changes=changes, status="ran", reason="", run="",
                         seeds=sorted(seeds.get((name, label), [])))  # fmt: skip
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
                elif (got := trained[name, label]) != {seeded_name(cfg.name, s)
                                                       for s in entry["seeds"]}:  # fmt: skip
                    # another scale or base config: these rows are not this registry's runs
                    entry |= dict(status="stale", reason=f"scored on runs {sorted(got)}, not "
                                  f"this scale's {cfg.name}: rerun ablate {name}")  # fmt: skip
            variants.append(entry)
        out.append(dict(name=name, about=ablation.about, seeds=ablation.seeds,
                        variants=variants))  # fmt: skip
    return out


def _ran(found: list[dict]) -> list[tuple[str, dict]]:
    return [(a["name"], v) for a in found for v in a["variants"] if v["status"] == "ran"]


def measure_speed(out: Path, scale: Scale, runs: Path, found: list[dict]) -> pd.DataFrame:
    """speed.csv: a row per variant that ran (renoising does not change the plan's cost; it
    is timed with the exact rule); timing does not depend on the weights or the seed."""
    path = out / "speed.csv"
    old = read_results(path) if path.is_file() else pd.DataFrame(columns=["identity"])
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
    each sampled from the variant's final weights at its first seed with its own sampling
    settings."""
    artifacts = Artifacts(out)
    path = out / "strips.pt"
    try:
        strips = torch.load(path, weights_only=False) if path.is_file() else {}
    except (RuntimeError, EOFError, pickle.UnpicklingError):  # cut by a kill: sampled again
        strips = {}
    for name, entry in tqdm(_ran(found), desc="strips"):
        label = entry["label"]
        train, changes = split_sampling(trial_config(scale, runs, **entry["changes"]))
        first = min(entry["seeds"])
        run = runs / seeded_name(train.name, first)
        key = digest(dict(weights=checkpoint_info(run / "checkpoint.pt").key, changes=changes,
                          n=STRIP_SAMPLES, code=code_revision()))  # fmt: skip
        strip = f"strips.pt:{name}/{label}"
        if artifacts.keys.get(strip) == key and f"{name}/{label}" in strips:
            continue
        gen = generate(run, dict(changes, num_samples=STRIP_SAMPLES, device=scale.device),
                       progress=False)  # fmt: skip
        strips[f"{name}/{label}"] = dict(videos=gen.videos.cpu(), captions=list(gen.captions))
        write_torch(path, strips)
        artifacts.record(strip, key)


def write_registry(out: Path, scale_name: str) -> tuple[pd.DataFrame, list[dict]]:
    """ablations.json: the registry as run, from the ablations' tables in `out`; returns
    (their rows, the registry entries)."""
    paths = [out / name / "table.csv" for name in ABLATIONS if (out / name / "table.csv").is_file()]
    if not paths:
        raise FileNotFoundError(f"no ablation tables under {out}: run an ablation first")
    finals = pd.concat([read_results(t) for t in paths], ignore_index=True)
    if "seed" not in finals or finals["seed"].isna().any():
        raise ValueError(f"{out} holds ablation tables without training seeds (made by an older "
                         f"harness): rerun the ablations into another --out")  # fmt: skip
    found = registry(SCALES[scale_name], out / "runs", finals)
    write_json(out / "ablations.json", dict(scale=scale_name, paper_seeds=PAPER_SEEDS,
                                            ablations=found))  # fmt: skip
    return finals, found


def score_references(out: Path, scale: Scale, n: int, found: list[dict]) -> None:
    """references.csv: real vs real, noise vs real and chance at n, for each data config
    the variants that ran were trained on (`config_hash`: its data hash)."""
    configs = {}
    for _, entry in _ran(found):
        cfg = trial_config(scale, out / "runs", **entry["changes"])
        configs.setdefault(data_hash(cfg), cfg)
    for cfg in configs.values():
        options = MetricOptions(evaluator=evaluator_for(scale, cfg), device=scale.device)
        reference_scores(out / "references.csv", cfg, n, options, FINAL_METRICS, progress=True)


def run_all(out: Path, names: list[str], scale_name: str, train: bool = True,
            offset: int = 0, workers: int | None = None,
            reuse: Path | None = None) -> dict:  # fmt: skip
    """Train and score the ablations `names` into `out` (held by this process for the whole
    study; `train=False`: only the steps after training), write the registry, score the
    references, measure speed, sample strips and draw the report; `phases.json` records
    where the time went."""
    scale = SCALES[scale_name]
    timer = Phases(out / "phases.json")
    with owned(out, "ablation study folder"):
        if train and names:
            with timer("train and score", workers=workers or scale.workers):
                ablate(names, scale_name, out, offset, workers, reuse)
        finals, found = write_registry(out, scale_name)
        with timer("references"):
            score_references(out, scale, int(finals["n"].max()), found)
        with timer("speed"):
            measure_speed(out, scale, out / "runs", found)
        with timer("strips"):
            sample_strips(out, scale, out / "runs", found)
        return report.build(out)
