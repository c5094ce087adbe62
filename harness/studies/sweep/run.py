"""Stage-boundary sweep: `python -m harness.sweep [--trials N] [--scale tiny|cpu|gpu] ...`
(also `nox -s ablate_stages -- ...`).

An Optuna multi-objective study over the K - 1 jump points of the TPDiff plan (and, with
--search-steps, the sampling steps of each stage): quality (FVD-md, down) against cost
(down): --cost train, the expected training GFLOPs per sample-step under the stage
distribution (the default; jump points move it through the stage lengths), or --cost
infer, the sampling GFLOPs per video (moves only with --search-steps). Each trial builds
a config and goes through the same training and evaluation as the suites
(`harness.studies.core.train_and_score`). The paper's equal split is enqueued as the first
trial, as the reference point; it keeps the default jump points, so it is the same training
config and run as the paper suite's and the ablations' TPDiff DiT. Once the budget is
spent it is trained again at the scale's other seeds (`reference_seeds`), the noise floor of
the front's verdicts. --reuse RUNS adopts finished runs of the same config and seed
(`harness.studies.core.adopt`) instead of training them.

Pruning. Optuna's `trial.report` is not available in multi-objective studies, so the
intermediate FVD-md of every scored snapshot is kept in the trial's user attributes
(`fvd_at`) and a trial is pruned when, at the same step, a finished trial with no higher
cost already has an FVD-md lower by more than --prune-margin (after --prune-after finished
trials). Suggestions that make no valid plan (jump points closer than --min-gap, a stage
without steps) are pruned before any training; `pruned_reason` records why.

Storage. Default: SQLite `<out>/study.db` (open it with optuna-dashboard). --storage takes
`journal:PATH` (Optuna's journal file) or `sqlite:///PATH` for several processes on one
machine, or a database URL (PostgreSQL, MySQL) for workers on several machines (SQLite on a
shared file system is not safe: docs/sweeps.md). To spread a sweep over N workers, start N
processes with the same --storage, --study and --trials; they share the budget. The budget
counts finished trials (Optuna's `MaxTrialsCallback`): pruned trials, invalid draws and
failures do not use it, and each worker stops after 20 x --trials trials of its own.
Rerunning resumes the study; a trial whose worker died on this machine is marked failed
(its `error` names the worker) and queued again with Optuna's
`RetryHeartbeatStaleTrialCallback` (up to 3 times; its training resumes from the run's
checkpoint), and on an RDB storage the heartbeat does the same for workers on other
machines. No trial runs twice: workers pop queued trials under the storage's lock (SQLite
transactions take its write lock at BEGIN, see `_serialize_sqlite`). A trial that raises
(NaN loss, out of memory, any exception) is marked failed with its `error` and the study
goes on.

Identity. A study records what its trials depend on in its user attributes: the settings
above and the job (code revision, the hash of the scale's base training config, metric
options). A resume with another identity is refused before any trial runs: pass another
--study (or --out) name, or --fresh (default storage only) to move the old folder aside.

Outputs in --out (default results/runs/sweep/<study>/, git-ignored; the committed reference
study in results/sweep/ is never opened unless --out points there), rewritten after every
trial: trials.csv, pareto.png, importance_<objective>.png, best/trial_NNNN.toml (every
Pareto-optimal config, ready for `python -m harness.train --config`), summary.json and
report.md. A progress bar counts the spent budget and the trials by state.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.io import (
    check_output_folder,
)
from harness.metrics import MetricOptions
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import metrics_key, reference_scores
from harness.pipeline.provenance import code_revision, move_aside, training_hash
from harness.studies.core.adopt import adopt, check_source
from harness.studies.core.phases import Phases
from harness.studies.core.protocol import FINAL_METRICS, QUALITY, SCORE_COLUMNS
from harness.studies.core.scale import SCALES
from harness.studies.core.train_and_score import (
    curve_and_final,
    split_sampling,
    train_and_score,
    trial_config,
)
from harness.studies.sweep.report import write_report
from harness.studies.sweep.storage import (
    BUDGET_STATES,
    SAFETY,
    check_storage,
    open_storage,
    recover_orphans,
    spent,
    worker_id,
)

# a trial's curve points: FVD-md at the curve n (pruning compares trials at equal n, where
# its bias is shared), KVD-md (unbiased) and PA-md
CURVE = ("fvd-md", "kvd-md", "pa-md", "flicker")
RUNS = Path("results") / "runs" / "sweep"  # default parent of a study's folder (git-ignored)

COSTS = {
    "train": ("train_gflops", "training GFLOPs per sample-step"),
    "infer": ("infer_gflops", "sampling GFLOPs per video"),
}


@dataclass(frozen=True)
class SweepSettings:
    """What a study searches; stored in the study and checked when it is resumed."""

    scale: str = "cpu"
    stages: int = 3
    cost: str = "train"
    search_steps: bool = False
    min_gap: float = 0.05
    prune_margin: float = 0.1
    prune_after: int = 4

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {sorted(SCALES)}")
        if self.stages < 2:
            raise ValueError(f"stages={self.stages}: a stage-boundary sweep needs K >= 2")
        if self.cost not in COSTS:
            raise ValueError(f"unknown cost {self.cost!r}; choose one of {sorted(COSTS)}")
        if not 0 < self.min_gap < 1 / self.stages:
            raise ValueError(f"min_gap={self.min_gap} must lie in (0, 1/K = {1 / self.stages})")

    @property
    def study_name(self) -> str:
        steps = "-steps" if self.search_steps else ""
        return f"stages-K{self.stages}-{self.scale}-{self.cost}{steps}"

    @property
    def metric_names(self) -> list[str]:
        return [QUALITY, COSTS[self.cost][1]]


class InvalidSuggestion(ValueError):
    """The sampled parameters make no valid stage plan."""


def equal_split(settings: SweepSettings, sample_steps: int) -> dict[str, Any]:
    """The paper's plan as trial parameters: jump points 1 - k/K, steps split evenly."""
    k = settings.stages
    params: dict[str, Any] = {f"jump_{i}": 1 - i / k for i in range(1, k)}
    if settings.search_steps:
        base, extra = divmod(sample_steps, k)
        params |= {f"steps_{i}": base + (1 if i <= extra else 0) for i in range(1, k)}
    return params


def suggest_config(trial: optuna.Trial, settings: SweepSettings, runs: Path) -> Config:
    """The trial's config; raises InvalidSuggestion naming what is wrong with the draw."""
    k, gap = settings.stages, settings.min_gap
    scale = SCALES[settings.scale]
    jumps = [trial.suggest_float(f"jump_{i}", gap, 1 - gap) for i in range(1, k)]
    changes: dict[str, Any] = dict(method="tpdiff", num_stages=k)
    total = trial_config(scale, runs).sample_steps
    if settings.search_steps:
        steps = [trial.suggest_int(f"steps_{i}", 1, total - (k - 1)) for i in range(1, k)]
        steps.append(total - sum(steps))
        if steps[-1] < 1:
            raise InvalidSuggestion(f"steps {steps[:-1]} leave no step of {total} for stage {k}")
        changes["stage_steps"] = tuple(steps)
    bounds = [1.0, *jumps, 0.0]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if a - b < gap:
            raise InvalidSuggestion(
                f"stage {i} would span u in [{b:.3f}, {a:.3f}], shorter than min_gap={gap}"
            )
    try:
        default = plan_for(trial_config(scale, runs, **changes)).jump_points
        # the paper's own points stay the default (no jump_points), so the equal split is
        # the same training config, and run, as the paper suite's and the ablations' TPDiff
        points = {} if tuple(jumps) == tuple(default) else dict(jump_points=tuple(jumps))
        cfg = trial_config(scale, runs, **changes, **points)
        plan_for(cfg)
    except ValueError as err:
        raise InvalidSuggestion(str(err)) from None
    return cfg


def dominating_trial(
    finished: list[FrozenTrial], step: int, cost: float, fvd: float, margin: float
) -> FrozenTrial | None:
    """A finished trial that at `step` had FVD-md below fvd / (1 + margin) at a cost no
    higher than `cost`, or None."""
    for t in finished:
        other = t.user_attrs.get("fvd_at", {}).get(str(step))
        if other is None or t.user_attrs.get("cost") is None:
            continue
        if t.user_attrs["cost"] <= cost * (1 + 1e-9) and other * (1 + margin) < fvd:
            return t
    return None


class Objective:
    def __init__(self, settings: SweepSettings, runs: Path, options: MetricOptions,
                 reuse: Path | None = None):  # fmt: skip
        self.settings, self.runs, self.options, self.reuse = settings, runs, options, reuse
        self.scale = SCALES[settings.scale]

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", worker_id())
        try:
            cfg = suggest_config(trial, self.settings, self.runs)
        except InvalidSuggestion as err:
            trial.set_user_attr("pruned_reason", f"invalid: {err}")
            raise optuna.TrialPruned(str(err)) from None
        trial.set_user_attr("run", cfg.name)
        trial.set_user_attr("config", cfg.to_dict())
        cost_key = COSTS[self.settings.cost][0]
        fvd_at: dict[str, float] = {}

        def on_score(step: int, row: dict) -> None:
            cost = row[cost_key]
            fvd_at[str(step)] = float(row[QUALITY])  # at the curve n; the last at the final n
            trial.set_user_attr("fvd_at", fvd_at)
            trial.set_user_attr("trained_steps", step)
            trial.set_user_attr("cost", cost)
            for key in SCORE_COLUMNS:
                trial.set_user_attr(key, float(row[key]))
            if step == cfg.steps:
                return
            finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if len(finished) < self.settings.prune_after:
                return
            best = dominating_trial(finished, step, cost, row[QUALITY], self.settings.prune_margin)
            if best is not None:
                reason = (
                    f"at step {step}: {QUALITY} {row[QUALITY]:.1f} vs "
                    f"{best.user_attrs['fvd_at'][str(step)]:.1f} of trial {best.number} "
                    f"at no higher cost ({best.user_attrs['cost']:.4g} <= {cost:.4g})"
                )
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)

        try:
            train, changes = split_sampling(cfg)
            arm = curve_and_final(train, self.scale, {"": changes}, CURVE, curve_changes=changes)
            for line in adopt([arm], self.reuse) if self.reuse is not None else []:
                print(f"reused {line}")
            rows = train_and_score([arm], self.options, on_score=on_score)
        except optuna.TrialPruned:
            raise
        except Exception as err:  # recorded, then Optuna marks the trial failed and goes on
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        return float(rows[-1][QUALITY]), float(rows[-1][cost_key])


def job_identity(settings: SweepSettings, options: MetricOptions) -> dict:
    """What a study's trials depend on besides its settings: the code revision, the scale's
    base training config (before the trial's jump points) and the metric options."""
    scale = SCALES[settings.scale]
    base = trial_config(scale, Path("runs"))
    return dict(
        code=code_revision(),
        base_config=training_hash(base),
        metrics=metrics_key(FINAL_METRICS, options, base),
        curve=[scale.curve.evals, scale.curve.n],
        final_n=scale.final_n,
    )


def open_study(
    settings: SweepSettings, storage, name: str, seed: int | None, job: dict | None = None
) -> optuna.Study:
    """Create or resume the study; refuse to resume one made with other settings or another
    job identity (`job_identity`). Only the worker that creates the study records them and
    queues the paper's equal split; the others wait for the settings to appear."""
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=6, multivariate=True)
    directions = ["minimize", "minimize"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, directions=directions, sampler=sampler
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        else:
            study.set_metric_names(settings.metric_names)
            total = trial_config(SCALES[settings.scale], Path("runs")).sample_steps
            study.enqueue_trial(
                equal_split(settings, total), user_attrs={"reference": "paper: equal split"}
            )
            if job is not None:
                study.set_user_attr("job", job)
            study.set_user_attr("settings", asdict(settings))  # last: marks the study ready
    for _ in range(120):
        saved = study.user_attrs.get("settings")
        if saved is not None:
            break
        time.sleep(0.5)
    else:
        raise ValueError(
            f"study {name!r} exists in this storage but was not made by harness.sweep (it has "
            "no settings); pass another --study name"
        )
    way_out = "pass another --study name (or --out folder), or --fresh to move the old one aside"
    if saved != asdict(settings):
        diff = {k: (saved.get(k), v) for k, v in asdict(settings).items() if saved.get(k) != v}
        raise ValueError(
            f"study {name!r} in this storage was made with other settings {diff}; resume it "
            f"with the same options, or {way_out}"
        )
    stored = study.user_attrs.get("job")
    if job is not None and stored != job:
        if stored is None:
            what = "records no code revision or config (made by an older harness)"
        else:
            diff = {k: (stored.get(k), v) for k, v in job.items() if stored.get(k) != v}
            what = f"was made by another job {diff}"
        raise ValueError(
            f"study {name!r} {what}; its trials would be mixed with this code's. To start a "
            f"new study, {way_out}"
        )
    return study


def sweep(
    settings: SweepSettings,
    trials: int,
    out: Path,
    storage: str = "",
    study_name: str = "",
    seed: int | None = None,
    heartbeat: int = 60,
    options: MetricOptions | None = None,
    fresh: bool = False,
    workers: int = 1,
    reuse: Path | None = None,
) -> dict:
    """Run (or resume) the study until `trials` trials are spent (`workers` processes side
    by side, one thread each, on the same storage), train the equal split's other seeds
    (`reference_seeds`), then write the report. `reuse`: a runs folder whose finished runs
    of the same training config and seed are adopted instead of trained (`adopt`)."""
    scale = SCALES[settings.scale]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {settings.scale} needs a CUDA device; use --scale cpu here")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    study_name = study_name or settings.study_name
    # bad paths and storages fail here, before any folder is made
    check_output_folder(out, "--out")
    if reuse is not None:
        check_source(reuse)
    spec = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    check_storage(spec)
    if fresh:
        if storage:
            raise ValueError(
                "--fresh moves the default storage (<out>/study.db) aside; with --storage, "
                "pass another --study name instead"
            )
        if out.exists() and any(out.iterdir()):
            move_aside(out)
    out.mkdir(parents=True, exist_ok=True)
    options = options or MetricOptions(evaluator=scale.evaluator, device=scale.device)
    store = open_storage(spec, heartbeat)
    study = open_study(settings, store, study_name, seed, job_identity(settings, options))
    orphans = recover_orphans(study)
    if orphans:
        print(f"trials {orphans} lost their worker; marked failed and queued again")
    if "references" not in study.user_attrs:
        study.set_user_attr("references", references(settings, out, options))
    run = Worker(settings, trials, out, spec, study_name, heartbeat, options, reuse)
    timer = Phases(out / "phases.json")
    with timer("trials", workers=workers):
        _spend(run, study, trials, workers, seed)
    with timer("reference seeds", workers=workers):
        reference_seeds(study, settings, out, options, workers, reuse)
    return write_report(study, out)


def _spend(run: Worker, study: optuna.Study, trials: int, workers: int,
           seed: int | None) -> None:  # fmt: skip
    """Run `run` in this process, or in `workers` processes (one thread each) while a bar
    here counts the spent budget."""
    if workers == 1:
        run(seed, report=True)
    else:
        spawn = multiprocessing.get_context("spawn")  # CUDA and OpenMP state are not forked
        bar = tqdm(total=trials, desc=f"sweep {study.study_name} ({workers} workers)", unit="trial")
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            futures = [pool.submit(run, None if seed is None else seed + i, False, 1)
                       for i in range(workers)]  # fmt: skip
            while wait(futures, timeout=15).not_done:
                bar.n = min(spent(study.get_trials(deepcopy=False)), trials)
                bar.refresh()
            bar.close()
            for future in futures:
                future.result()  # a worker's error stops the study here


@dataclass(frozen=True)
class Worker:
    """One process's share of a study: optimise until the budget is spent (picklable, so
    that `sweep` can hand it to worker processes)."""

    settings: SweepSettings
    trials: int
    out: Path
    spec: str
    study_name: str
    heartbeat: int
    options: MetricOptions
    reuse: Path | None = None

    def __call__(self, seed: int | None, report: bool, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)  # side by side: no OpenMP spin
        store = open_storage(self.spec, self.heartbeat)
        job = job_identity(self.settings, self.options)
        study = open_study(self.settings, store, self.study_name, seed, job)
        objective = Objective(self.settings, self.out / "runs", self.options, self.reuse)
        budget = optuna.study.MaxTrialsCallback(self.trials, states=BUDGET_STATES)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        bar = tqdm(total=self.trials, desc=f"sweep {self.study_name}", unit="trial",
                   disable=not report)  # fmt: skip

        def show(study: optuna.Study) -> None:
            every = study.get_trials(deepcopy=False)
            bar.n = min(spent(every), self.trials)
            states = pd.Series([t.state.name.lower() for t in every]).value_counts().to_dict()
            invalid = sum("invalid" in t.user_attrs.get("pruned_reason", "") for t in every)
            bar.set_postfix(states | {"invalid": invalid}, refresh=False)
            bar.refresh()

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            if report:  # one writer: with workers, the parent writes it at the end
                write_report(study, self.out)
                show(study)
            budget(study, trial)

        show(study)
        try:
            if spent(study.get_trials(deepcopy=False)) < self.trials:
                study.optimize(objective, n_trials=SAFETY * self.trials,
                               callbacks=[after_trial], catch=(Exception,))  # fmt: skip
        finally:
            bar.close()


def reference_seeds(study: optuna.Study, settings: SweepSettings, out: Path,
                    options: MetricOptions, workers: int,
                    reuse: Path | None = None) -> dict:  # fmt: skip
    """The equal split (the enqueued reference trial, seed 0) trained and scored again at
    the scale's other seeds (1 .. seeds - 1, `workers` side by side): their spread is the
    noise floor the front's verdicts are read against. Kept in the study's user attribute
    `reference_seeds` ({seed: final scores}); {} until the reference trial is complete."""
    scale = SCALES[settings.scale]
    ref = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("reference")), None)  # fmt: skip
    if ref is None:
        return {}
    keep = (QUALITY, f"{QUALITY}-lo", f"{QUALITY}-hi", "PA-md-digit", "n")
    first = {k: ref.user_attrs.get(k) for k in keep[1:-1]}  # the trial's value is FVD-md
    found = {"0": {QUALITY: ref.values[0], **first, "n": scale.final_n}}
    cfg = Config.from_dict(ref.user_attrs["config"]).replace(out_dir=str(out / "runs"))
    train, changes = split_sampling(cfg)
    arm = curve_and_final(train, scale, {"": changes}, CURVE, curve_changes=changes)
    seeded = [arm.with_seed(s) for s in range(1, scale.seeds)]
    for line in adopt(seeded, reuse) if reuse is not None else []:
        print(f"reused {line}")
    rows = train_and_score([arm], options, seeds=range(1, scale.seeds), workers=workers,
                           progress=True)  # fmt: skip
    for row in rows:
        if row.get("role") == "final":
            found[str(int(row["seed"]))] = {k: float(row[k]) for k in keep}
    study.set_user_attr("reference_seeds", found)
    return found


def references(settings: SweepSettings, out: Path, options: MetricOptions) -> dict:
    """The scores that say what a trial's FVD-md means, at the trials' n on their data (kept
    in <out>/references.csv): real vs real from disjoint seeds (the best reachable), uniform
    noise vs real (learned nothing) and chance PA-md-digit (captions ignored)."""
    scale = SCALES[settings.scale]
    base = trial_config(scale, out / "runs")
    refs = reference_scores(out / "references.csv", base, scale.final_n, options, FINAL_METRICS)
    real, noise, chance = refs["real"], refs["noise"], refs["chance"]
    return {
        "n": scale.final_n,
        "real_FVD-md": float(real[QUALITY]),
        "real_FVD-md-lo": float(real[f"{QUALITY}-lo"]),
        "real_FVD-md-hi": float(real[f"{QUALITY}-hi"]),
        "noise_FVD-md": float(noise[QUALITY]),
        "chance_PA-md-digit": float(chance["PA-md-digit"]),
    }
