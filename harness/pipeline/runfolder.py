"""A run folder on disk: atomic checkpoints, the checks that a folder belongs to this run
(same config, same world size) before anything is touched, and the log cut back to the
checkpoint a resume starts from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from harness.common.config import Config, resumable_changes
from harness.common.io import load_torch, write_text

CHECKPOINT_KEYS = ("model", "step", "config", "train_flops", "wall_time_s")


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then an atomic rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, map_location="cpu", mmap: bool = False) -> dict:
    """A checkpoint or snapshot written by harness.train; a missing, truncated or foreign
    file is a one-line error naming it (never a traceback)."""
    fix = ("train the run again into a new name=..., or restore the file (a kill mid-save "
           "never leaves a torn checkpoint.pt: it was cut or replaced from outside)")  # fmt: skip
    state = load_torch(path, "checkpoint", fix, map_location=map_location,
                       weights_only=False, mmap=mmap)  # fmt: skip
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint of harness.train (no {missing}); {fix}")
    return state


def check_resumable(saved: dict, cfg: Config) -> None:
    now = cfg.to_dict()
    saved = Config().to_dict() | saved  # keys added since the run was made have their defaults
    diff = {
        k: (saved.get(k), v)
        for k, v in now.items()
        if k not in resumable_changes(cfg) and saved.get(k) != v
    }
    if diff:
        lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"run folder {cfg.run_dir} holds a run with a different config ({lines}); "
            "choose another name=... or move that folder away (nothing was changed)"
        )


def _parse_row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:  # a line torn by a kill mid-write
        return None
    return row if isinstance(row, dict) and "step" in row else None


def truncate_log(path: Path, step: int) -> list[int]:
    """Keep the log rows up to the checkpoint we resume from; drop later and torn rows.
    Returns the steps up to `step` that the log lacks (a resume says so)."""
    if not path.exists():
        return list(range(1, step + 1))
    kept, seen = [], set()
    for line in path.read_text().splitlines():
        row = _parse_row(line)
        if row is not None and row["step"] <= step and row["step"] not in seen:
            kept.append(line + "\n")
            seen.add(row["step"])
    write_text(path, "".join(kept))
    return [k for k in range(1, step + 1) if k not in seen]


def check_run_folder(run_dir: Path, cfg: Config, world: int, state: dict | None) -> None:
    """Refuse to reuse a run folder that belongs to a different run (nothing is touched)."""
    if state is not None:
        check_resumable(state["config"], cfg)
        saved_world = state.get("world_size", 1)
        if saved_world != world:
            raise ValueError(
                f"run {run_dir} was trained on {saved_world} process(es) but this resume has "
                f"{world}; per-rank noise and batches depend on the world size, so resume with "
                f"torchrun --nproc_per_node {saved_world} or start a new name=..."
            )
    elif (run_dir / "config.json").exists():
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        check_resumable(saved, cfg)
