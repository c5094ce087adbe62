"""What produced a stored result, and the rule for reusing one.

Every stored score carries its identity: the training config (hash), the checkpoint (step
and a hash of its weights), the sampling setting, the metric options (with the evaluator
key), n, and the code revision. A resume reuses a stored result only when the identity of
the result it is about to compute is equal; results of another identity are never mixed in
silently. A results folder records the identity of the job that owns it in `job.json`
(`claim_folder`): a later call with other code, configs or settings is refused before any
work starts, with the two ways out (`--out` another folder, `--fresh`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.common.config import DATA_FIELDS, Config, resumable_changes
from harness.common.io import write_csv, write_json
from harness.common.lock import one_at_a_time
from harness.pipeline.runfolder import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# the tracked paths whose content decides what a run computes (results and tests do not)
CODE_PATHS = ("harness", "ablations", "baselines", "pyproject.toml")
JOB_FILE = "job.json"


def digest(obj: Any, length: int = 12) -> str:
    """A short sha256 of a JSON-able object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def code_revision(root: Path = ROOT) -> str:
    """The newest commit of the checkout at `root` that changed its code (CODE_PATHS), plus
    `+dirty.<hash of the diff>` when the code differs from HEAD. A later commit of results
    or docs alone leaves it unchanged, so a job started before such a commit still resumes
    after it; the commit named holds exactly the code that ran. Outside a git checkout:
    `src.<hash of the package sources>`."""
    try:
        rev = _git(root, "log", "-1", "--format=%H", "HEAD", "--", *CODE_PATHS).strip()
        rev = rev or _git(root, "rev-parse", "HEAD").strip()
        diff = _git(root, "diff", "HEAD", "--no-ext-diff", "--", *CODE_PATHS)
    except (OSError, subprocess.CalledProcessError):
        files = sorted(p for d in ("harness", "ablations") for p in (root / d).rglob("*.py"))
        h = hashlib.sha256()
        for path in files:
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
        return f"src.{h.hexdigest()[:12]}"
    return rev + (f"+dirty.{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else "")


def training_hash(cfg: Config) -> str:
    """Hash of everything training depends on: the config minus its name and what a resume
    may change (config.resumable_changes)."""
    skip = {"name", *resumable_changes(cfg)}
    return digest({k: v for k, v in cfg.to_dict().items() if k not in skip}, 10)


def data_hash(cfg: Config) -> str:
    """Hash of the fields that define cfg's videos (DATA_FIELDS)."""
    return digest({k: getattr(cfg, k) for k in DATA_FIELDS}, 10)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint or snapshot file as a result depends on it."""

    step: int
    weights: str  # hash of the weights (model, and EMA when kept), not of the file
    train_flops: float  # cumulative training FLOPs at `step`
    wall_time_s: float  # cumulative training compute time at `step`
    config: dict  # the resolved training config the weights were trained with
    environment: dict = field(default_factory=dict)  # torch and threads it was trained with

    @property
    def key(self) -> str:
        return f"{self.step}:{self.weights}"


def weights_hash(state: dict) -> str:
    """sha256 over the parameter names, dtypes, shapes and bytes of state["model"] (and
    state["ema"]): equal for bit-identical weights whatever else the file holds."""
    h = hashlib.sha256()
    for part in ("model", "ema"):
        tensors = state.get(part) or {}
        for name in sorted(tensors):
            t = tensors[name].detach().cpu().contiguous()
            h.update(f"{part}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Identity and cost record of a checkpoint or snapshot written by harness.train."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train the run first")
    state = read_checkpoint(path, mmap=True)
    return CheckpointInfo(
        step=int(state["step"]),
        weights=weights_hash(state),
        train_flops=float(state["train_flops"]),
        wall_time_s=float(state["wall_time_s"]),
        config=state["config"],
        environment=state.get("environment") or {},  # older checkpoints: not recorded
    )


@dataclass(frozen=True)
class ResultIdentity:
    """Everything a stored score depends on. Two scores may stand for each other only when
    their identities are equal (`key`)."""

    config: str  # training_hash of the run's training config
    checkpoint: str  # CheckpointInfo.key: step and weights hash
    sampling: str  # the sampling setting (plan tag: method, K, steps, jumps, renoise, seed)
    metrics: str  # metric names, options and evaluator key (see `metrics_key`)
    n: int  # generated videos (and real videos) per score
    code: str  # code_revision() of the scoring code

    @property
    def key(self) -> str:
        return digest(dataclasses.asdict(self), 16)

    def columns(self) -> dict[str, Any]:
        """The identity as result-row columns (`identity` is the key)."""
        return {
            "identity": self.key,
            "config_hash": self.config,
            "checkpoint": self.checkpoint,
            "sampling": self.sampling,
            "metrics_key": self.metrics,
            "n": self.n,
            "git": self.code,
        }


HASH_COLUMNS = ("identity", "config_hash", "checkpoint", "sampling", "metrics_key", "git", "data")


def read_results(table: str | Path) -> pd.DataFrame:
    """A result table (CSV) with its hash columns (HASH_COLUMNS) read as text: pandas would
    read a hex hash such as 8167671843652e31 as the float 8.17e43, and a revision such as
    0123456 as an int, and then no stored row would match its identity."""
    return pd.read_csv(table, dtype={c: str for c in HASH_COLUMNS})


def stored_row(table: Path, identity: ResultIdentity) -> dict | None:
    """The row of `table` (a CSV) with this identity, or None."""
    if not table.is_file():
        return None
    frame = read_results(table)
    if "identity" not in frame:
        return None
    hit = frame[frame["identity"] == identity.key]
    if hit.empty:
        return None
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in hit.iloc[-1].items()}


def append_result(table: Path, row: dict, same: tuple[str, ...] = ()) -> Path:
    """Append `row` (which has an `identity` column) to `table` atomically. Older rows that
    agree with it on the columns `same` (e.g. run, step, renoise) but have another identity
    are moved to `<table>-superseded.csv` beside it, never mixed with the new row."""
    table = Path(table)
    with one_at_a_time(table):  # processes appending to one table take turns
        return _append(table, row, same)


def _append(table: Path, row: dict, same: tuple[str, ...]) -> Path:
    new = pd.DataFrame([row])
    if not table.is_file():
        return write_csv(table, new)
    frame = read_results(table)
    if _already(frame, row, same):
        return table  # another process made this very score meanwhile: keep one row
    if same and all(c in frame for c in same):
        match = pd.Series(True, index=frame.index)
        for col in same:
            match &= frame[col].astype(str) == str(row[col])
        stale = match & (frame.get("identity", pd.Series("", index=frame.index)) != row["identity"])
        if stale.any():
            old = table.with_name(f"{table.stem}-superseded.csv")
            kept = read_results(old) if old.is_file() else frame.iloc[:0]
            write_csv(old, pd.concat([kept, frame[stale]], ignore_index=True))
            print(
                f"{int(stale.sum())} row(s) of {table} for {dict((c, row[c]) for c in same)} "
                f"came from another checkpoint, code or metric setting: moved to {old}"
            )
            frame = frame[~stale]
    return write_csv(table, pd.concat([frame, new], ignore_index=True))


def _already(frame: pd.DataFrame, row: dict, same: tuple[str, ...]) -> bool:
    """Whether `frame` holds a row with `row`'s identity and its values of `same`."""
    keys = ("identity", *same)
    if not all(k in row and k in frame for k in keys):
        return False
    match = pd.Series(True, index=frame.index)
    for col in keys:
        match &= frame[col].astype(str) == str(row[col])
    return bool(match.any())


class FolderInUse(ValueError):
    """A results folder holds the results of another job identity."""


def claim_folder(out: Path, job: dict, fresh: bool = False, marker: str = "evals.csv") -> dict:
    """Make `out` the folder of the job `job` (a JSON-able identity: suite, scale, code
    revision, config hashes, metric options, n), or resume it when it already is.

    - no `job.json` and no `marker` file: a new folder; the identity is written.
    - `job.json` equal to `job`: a resume.
    - anything else (another identity, or results without an identity): FolderInUse naming
      what differs and the two ways out, unless `fresh`, which first moves the whole folder
      to `<out>.superseded-<time>/` (nothing is deleted)."""
    out = Path(out)
    path = out / JOB_FILE
    saved = json.loads(path.read_text()) if path.is_file() else None
    if saved == job:
        return job
    occupied = saved is not None or (out / marker).exists()
    if occupied and not fresh:
        if saved is None:
            what = f"results ({marker}) with no recorded identity (made by an older harness)"
        else:
            diff = _differences(saved, job)
            what = "results of another job: " + "; ".join(diff[:6])
        raise FolderInUse(
            f"{out} holds {what}. Resuming into it would mix them with this run's. "
            f"Pass --out NEW_FOLDER for a new folder, or --fresh to move {out} aside to "
            f"{out}.superseded-<time>/ and start over there"
        )
    if occupied:
        move_aside(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, job)
    return job


def move_aside(out: Path) -> Path:
    """Rename the folder `out` to `<out>.superseded-<time>` (what --fresh does; nothing is
    deleted) and return the new path."""
    aside = out.with_name(f"{out.name}.superseded-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(out, aside)
    print(f"--fresh: moved the old results of {out} to {aside}")
    return aside


def _differences(saved: dict, job: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(job)):
        a, b = saved.get(key), job.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out
