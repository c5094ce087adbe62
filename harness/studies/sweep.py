"""Stage-boundary sweep: `python -m harness.sweep [--trials N] [--scale tiny|cpu|gpu] ...`
(also `nox -s ablate_stages -- ...`).

An Optuna multi-objective study over the K - 1 jump points of the TPDiff plan (and, with
--search-steps, the sampling steps of each stage): quality (FVD-md, down) against cost
(down): --cost train, the expected training GFLOPs per sample-step under the stage
distribution (the default; jump points move it through the stage lengths), or --cost
infer, the sampling GFLOPs per video (moves only with --search-steps). Each trial builds
a config and goes through the same training and evaluation as the suites
(`harness.studies.trials.train_and_score`). The paper's equal split is enqueued as the first trial,
as the reference point.

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

import argparse
import copy
import gc
import json
import os
import socket
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy  # noqa: E402
import torch  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from harness.common.cli import add_debug_flag, guarded  # noqa: E402
from harness.common.config import Config  # noqa: E402
from harness.common.io import (  # noqa: E402
    check_output_file,
    check_output_folder,
    save_figure,
    write_json,
    write_text,
)
from harness.metrics import MetricOptions  # noqa: E402
from harness.pipeline.build import plan_for  # noqa: E402
from harness.pipeline.evaluate import metrics_key, reference_scores  # noqa: E402
from harness.pipeline.provenance import code_revision, move_aside, training_hash  # noqa: E402
from harness.studies import verdicts  # noqa: E402
from harness.studies.trials import (  # noqa: E402
    METRICS,
    QUALITY,
    SCALES,
    SCORE_COLUMNS,
    train_and_score,
    trial_config,
)

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
    cfg = trial_config(scale, runs, **changes, jump_points=tuple(jumps))
    try:
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
    def __init__(self, settings: SweepSettings, runs: Path, options: MetricOptions):
        self.settings, self.runs, self.options = settings, runs, options
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
            fvd_at[str(step)] = float(row[QUALITY])
            trial.set_user_attr("fvd_at", fvd_at)
            trial.set_user_attr("trained_steps", step)
            trial.set_user_attr("cost", cost)
            for key in SCORE_COLUMNS:
                trial.set_user_attr(key, float(row[key]))
            if step == self.scale.steps:
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
            rows = train_and_score(cfg, self.scale, self.options, on_score)
        except optuna.TrialPruned:
            raise
        except Exception as err:  # recorded, then Optuna marks the trial failed and goes on
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        return float(rows[-1][QUALITY]), float(rows[-1][cost_key])


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LOST_ATTRS = ("worker", "error")  # what a retry does not inherit from the lost attempt


class RetryLostTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial that lost its worker (queued again as a WAITING copy with
    its parameters and user attributes), less the attributes of the lost attempt: `worker`
    and `error`. A copy that still named the dead worker would look orphaned to
    `recover_orphans` from the moment a live worker pops it until that worker stamps its
    own id, and the live worker's trial would be failed under it. A trial failed by the
    heartbeat (no `error` of its own) gets its reason in the study's "orphaned" attribute."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "error" not in trial.user_attrs:
            worker = trial.user_attrs.get("worker", "?")
            grace = getattr(study._storage, "grace_period", None)
            reason = f"no heartbeat from worker {worker} for more than {grace} s"
            study.set_user_attr(
                "orphaned", study.user_attrs.get("orphaned", {}) | {str(trial.number): reason}
            )
        lost = copy.copy(trial)
        lost.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in LOST_ATTRS}
        super().__call__(study, lost)


# a trial whose worker died is queued again, up to this many times (its training resumes
# from the run's checkpoint)
with warnings.catch_warnings():  # experimental in Optuna 4.9 to 5.x
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryLostTrial(max_retry=3)
# the budget: trials that finished; a worker also stops after SAFETY x budget trials of its
# own, so a study whose trials keep failing or draw invalid plans still ends
BUDGET_STATES = (TrialState.COMPLETE,)
SAFETY = 20


def recover_orphans(study: optuna.Study) -> list[int]:
    """Mark failed, and queue again, the running trials whose worker process on this
    machine no longer exists (killed sweeps); the trial's `error` and the study's "orphaned"
    attribute say why. Returns their numbers.

    A trial is judged by the `worker` its runner stamps first thing (`Objective`); one with
    no stamp yet (just popped) or another machine's is left alone. When two workers start
    at once and find the same orphan, the storage lets one of them fail it (the other gets
    UpdateFinishedTrialError) and only that one queues the retry."""
    host = socket.gethostname()
    orphans = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        reason = f"worker {worker} died mid-trial"
        try:
            # Optuna has no public setter for another trial's attributes; its own
            # fail_stale_trials goes through the storage in the same way
            study._storage.set_trial_user_attr(t._trial_id, "error", reason)
            failed = study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile, or failed (and queued again) by another worker
        RETRY(study, failed)
        orphans[str(t.number)] = reason
    if orphans:
        study.set_user_attr("orphaned", study.user_attrs.get("orphaned", {}) | orphans)
    return [int(n) for n in orphans]


def spent(trials: list[FrozenTrial]) -> int:
    """Trials that count against the budget: the finished ones."""
    return sum(t.state in BUDGET_STATES for t in trials)


STORAGE_FORMS = (
    "journal:PATH or sqlite:///PATH (processes on one machine), or a database URL such as "
    "postgresql+psycopg2://USER@HOST:PORT/DB (several machines)"
)


def check_storage(spec: str) -> None:
    """ValueError naming `spec` and the accepted forms unless it is one this sweep can open:
    `journal:PATH` with a path, or a SQLAlchemy URL whose database kind and driver are
    installed; a file path it implies must be writable. Creates nothing, connects nowhere."""
    if spec.startswith("journal:"):
        path = spec.removeprefix("journal:")
        if not path.strip():
            raise ValueError(f"--storage {spec!r} names no journal file; give {STORAGE_FORMS}")
        check_output_file(path, "--storage journal:")
        return
    try:
        url = sqlalchemy.engine.make_url(spec)
    except sqlalchemy.exc.ArgumentError:
        raise ValueError(f"--storage {spec!r} is not a storage; give {STORAGE_FORMS}") from None
    shown = url.render_as_string(hide_password=True)
    try:
        sqlalchemy.create_engine(url).dispose()  # loads the dialect and its driver; no connection
    except sqlalchemy.exc.NoSuchModuleError:
        raise ValueError(
            f"--storage {shown!r}: unknown database kind {url.drivername!r}; give {STORAGE_FORMS}"
        ) from None
    except ImportError as err:
        raise ValueError(
            f"--storage {shown!r}: its driver is not installed ({err}); install it (for "
            "postgresql+psycopg2: pip install 'tpdiff-harness[postgres]')"
        ) from None
    except sqlalchemy.exc.ArgumentError as err:
        raise ValueError(f"--storage {shown!r}: {err}; give {STORAGE_FORMS}") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        check_output_file(url.database, "--storage sqlite:///")


def _serialize_sqlite(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction on a SQLite engine take the database's write lock at BEGIN.

    Optuna's RDBStorage makes a check-then-write atomic with SELECT ... FOR UPDATE (popping
    an enqueued trial: read WAITING, write RUNNING; finishing one: read RUNNING, write
    COMPLETE). SQLite ignores FOR UPDATE, and pysqlite opens a transaction only at the first
    write, so two workers can both read WAITING and both run the same trial; the second to
    finish then fails with "Cannot tell a COMPLETE trial". BEGIN IMMEDIATE (SQLAlchemy's
    recipe for pysqlite) serializes the whole read-then-write instead."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections pooled while the storage was set up reopen with the hooks


def open_storage(spec: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """`journal:PATH` -> journal file storage; anything else is an RDB URL (SQLite gets a
    30 s lock timeout and serialized transactions; RDB storages get a heartbeat so a dead
    worker's trial is retried). A bad `spec` is a ValueError (`check_storage`)."""
    check_storage(spec)
    if spec.startswith("journal:"):
        path = Path(spec.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    sqlite = spec.startswith("sqlite:")
    if spec.startswith("sqlite:///"):
        Path(spec.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if sqlite:
        kwargs = {"connect_args": {"timeout": 30}}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    spec,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=RETRY,
                )
        except Exception as err:  # two workers creating a new database's tables at once
            racing = ("already exists", "UNIQUE constraint", "database is locked")
            if not any(text in str(err) for text in racing) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
        else:
            if sqlite:
                _serialize_sqlite(storage.engine)
            return storage
    raise AssertionError("unreachable")


def job_identity(settings: SweepSettings, options: MetricOptions) -> dict:
    """What a study's trials depend on besides its settings: the code revision, the scale's
    base training config (before the trial's jump points) and the metric options."""
    base = trial_config(SCALES[settings.scale], Path("runs"))
    return dict(
        code=code_revision(),
        base_config=training_hash(base),
        metrics=metrics_key(METRICS, options, base),
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
) -> dict:
    """Run (or resume) the study until `trials` trials are spent, then write the report."""
    scale = SCALES[settings.scale]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {settings.scale} needs a CUDA device; use --scale cpu here")
    study_name = study_name or settings.study_name
    # bad paths and storages fail here, before any folder is made
    check_output_folder(out, "--out")
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
    objective = Objective(settings, out / "runs", options)
    budget = optuna.study.MaxTrialsCallback(trials, states=BUDGET_STATES)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = tqdm(total=trials, desc=f"sweep {study_name}", unit="trial")

    def show(study: optuna.Study) -> None:
        every = study.get_trials(deepcopy=False)
        bar.n = min(spent(every), trials)
        states = pd.Series([t.state.name.lower() for t in every]).value_counts().to_dict()
        invalid = sum("invalid" in t.user_attrs.get("pruned_reason", "") for t in every)
        bar.set_postfix(states | {"invalid": invalid}, refresh=False)
        bar.refresh()

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        write_report(study, out)
        show(study)
        budget(study, trial)

    show(study)
    try:
        if spent(study.get_trials(deepcopy=False)) < trials:
            study.optimize(objective, n_trials=SAFETY * trials, callbacks=[after_trial],
                           catch=(Exception,))  # fmt: skip
    finally:
        bar.close()
    return write_report(study, out)


def references(settings: SweepSettings, out: Path, options: MetricOptions) -> dict:
    """The scores that say what a trial's FVD-md means, at the trials' n on their data (kept
    in <out>/references.csv): real vs real from disjoint seeds (the best reachable), uniform
    noise vs real (learned nothing) and chance PA-md-digit (captions ignored)."""
    scale = SCALES[settings.scale]
    base = trial_config(scale, out / "runs")
    refs = reference_scores(out / "references.csv", base, scale.eval_samples, options, METRICS)
    real, noise, chance = refs["real"], refs["noise"], refs["chance"]
    return {
        "n": scale.eval_samples,
        "real_FVD-md": float(real[QUALITY]),
        "real_FVD-md-lo": float(real[f"{QUALITY}-lo"]),
        "real_FVD-md-hi": float(real[f"{QUALITY}-hi"]),
        "noise_FVD-md": float(noise[QUALITY]),
        "chance_PA-md-digit": float(chance["PA-md-digit"]),
    }


# ----------------------------------------------------------------------------- report


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


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harness.sweep",
        description="Optuna sweep over TPDiff stage boundaries (quality vs cost).",
        epilog="Several workers: start each with the same --storage, --study and --trials.",
    )
    p.add_argument("--trials", type=int, default=12, help="trials to spend in all (default 12)")
    p.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    p.add_argument("--stages", type=int, default=3, help="K, the number of stages (default 3)")
    p.add_argument("--cost", default="train", choices=sorted(COSTS), help="cost objective")
    p.add_argument("--search-steps", action="store_true", help="also search steps per stage")
    p.add_argument("--min-gap", type=float, default=0.05, help="shortest stage in u")
    p.add_argument("--prune-margin", type=float, default=0.1)
    p.add_argument("--prune-after", type=int, default=4, help="finished trials before pruning")
    p.add_argument("--storage", default="", help="RDB URL or journal:PATH (default SQLite)")
    p.add_argument("--study", default="", help="study name (default from the settings)")
    p.add_argument("--out", type=Path, default=None, help="default results/runs/sweep/<study>/")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="if --out holds a study of other settings or code, move it aside first",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="sampler seed, for a reproducible single-worker study (several workers: give "
        "each its own seed or none, else they draw the same trials)",
    )
    p.add_argument("--heartbeat", type=int, default=60, help="RDB heartbeat, seconds")
    p.add_argument("--report-only", action="store_true", help="redraw outputs, run no trial")
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded("python -m harness.sweep", args.debug, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    settings = SweepSettings(
        args.scale, args.stages, args.cost, args.search_steps, args.min_gap,
        args.prune_margin, args.prune_after,
    )  # fmt: skip
    name = args.study or settings.study_name
    out = args.out or RUNS / name
    check_output_folder(out, "--out")
    if args.report_only:
        if not (args.storage or (out / "study.db").is_file()):
            raise FileNotFoundError(f"no study at {out / 'study.db'}; pass --out or --storage")
        store = open_storage(args.storage or f"sqlite:///{(out / 'study.db').resolve()}", 60)
        summary = write_report(optuna.load_study(study_name=name, storage=store), out)
    else:
        summary = sweep(
            settings, args.trials, out, args.storage, name, args.seed, args.heartbeat,
            fresh=args.fresh,
        )  # fmt: skip
    print((out / "report.md").read_text())
    print(json.dumps(summary["trials"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
