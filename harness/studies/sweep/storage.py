"""Where a sweep's trials live and how workers share them: Optuna storages (SQLite with
serialized transactions, journal files, database URLs), checked before anything is made;
the retry of a trial whose worker died (heartbeat or a dead pid on this machine); and the
budget (finished trials count)."""

from __future__ import annotations

import copy
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from harness.common.io import check_output_file


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
