"""Adopting finished runs from another study's runs folder (`--reuse RUNS`): a run that an
arm would train anyway, with the same training config and seed, is copied into place so
that the arm only scores. The scores' identities name the adopted weights, so nothing is
mixed: only the weights come along, never the scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from harness.common.config import Config
from harness.common.io import write_json, write_torch
from harness.pipeline.provenance import checkpoint_info, training_hash
from harness.studies.core.train_and_score import Arm


def finished_like(folder: Path, arm: Arm) -> bool:
    """Whether the run `folder` holds everything `arm` would train: its checkpoint at the
    last step and a snapshot at each of the arm's scored steps."""
    every = arm.cfg.steps // arm.evals
    steps = range(every, arm.cfg.steps + 1, every)
    if not (folder / "checkpoint.pt").is_file() or any(
        not (folder / "snapshots" / f"step_{k:06d}.pt").is_file() for k in steps
    ):
        return False
    return checkpoint_info(folder / "checkpoint.pt").step == arm.cfg.steps


def rename(run: Path, name: str) -> None:
    """Give the run in folder `run` the name `name` in its config.json, checkpoint and
    snapshots (the run folder check compares names; a run adopted from the paper suite is
    named `dit-flow-tpdiff`, the arm's by its hash). Only `name` changes: the weights, and
    so every score's identity, stay as they were."""
    record = json.loads((run / "config.json").read_text())
    record["config"]["name"] = name
    write_json(run / "config.json", record)
    for path in [run / "checkpoint.pt", *sorted((run / "snapshots").glob("*.pt"))]:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"].get("name") != name:
            state["config"]["name"] = name
            write_torch(path, state)


def check_source(source: Path) -> Path:
    """`source` if it is a folder, else the one-line error that names it and the fix."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"--reuse {source}: no such runs folder; pass a study's runs folder (for example "
            "results/runs/paper-cpu/runs) or leave --reuse out"
        )
    return source


def adopt(arms: list[Arm], source: Path) -> list[str]:
    """Copy into place every finished run of `source` (a runs folder, e.g. the paper
    suite's) that an arm would train and that is not started here: the same training config
    (`training_hash`, the seed included), trained to the arm's last step with a snapshot at
    each of its scored steps. Its checkpoint, snapshots, config and log come along (not its
    scores), renamed to the arm's run name (`rename`), so the arm only scores. The copy is
    made beside the target and renamed into place, so an interrupted copy leaves no half
    run. A source folder that is not such a
    run is passed over. Returns the runs adopted, as `source -> target` lines."""
    source = check_source(source)
    wanted = {training_hash(a.cfg): a for a in arms if not a.cfg.run_dir.exists()}
    adopted = []
    for folder in sorted(p for p in source.iterdir() if (p / "config.json").is_file()):
        if not wanted:
            break
        try:
            saved = json.loads((folder / "config.json").read_text())["config"]
            arm = wanted.get(training_hash(Config.from_dict(saved)))
        except (ValueError, KeyError, TypeError):  # not a run of this harness's config
            continue
        if arm is None or not finished_like(folder, arm):
            continue
        del wanted[training_hash(arm.cfg)]
        target = arm.cfg.run_dir
        partial = target.with_name(f".{target.name}.adopting")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("evals*.csv"))
        rename(partial, target.name)
        partial.rename(target)
        adopted.append(f"{folder} -> {target}")
    return adopted
