"""Live curves for someone watching a run: TensorBoard, when the config says
`log_with = "tensorboard"` (an execution-only key: it does not change what training
computes, so a run may be resumed with or without it).

`log.jsonl` stays the record every report reads; the tracker only mirrors it, under
`<run>/tb/`: `train/loss`, `train/lr`, `train/stage`, `train/frames`, `train/grad_norm`,
`train/flops` (cumulative training FLOPs) at every step, and the scores of each snapshot
as `eval/<metric>@n<N>/<sampling>` under `<run>/tb/eval/` when
`harness.studies.core.train_and_score` is handed a config with `log_with` set (the study
CLIs do not set it). A run that starts or resumes at step S drops the events an earlier
session logged after S, a crashed one that never checkpointed included (TensorBoard's
`purge_step`), as `log.jsonl` is cut back. Watch with `tensorboard --logdir runs/`.
TensorBoard comes from the optional extra `[tb]`; a config that asks for it without it
installed is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from harness.common.config import Config

FOLDER = "tb"
TRAIN_KEYS = ("loss", "lr", "stage", "frames", "grad_norm")
FLUSH_SECS = 10  # SummaryWriter's default is 120: too slow to watch a run by
SCORE_KEYS = ("FVD-md", "KVD-md", "PA-md", "PA-md-digit", "motion-gap", "stutter", "flicker",
              "FVD-I3D", "CLIPSIM")  # fmt: skip


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            'log_with="tensorboard" needs the tensorboard package: pip install -e ".[tb]" '
            '(or leave log_with="" and read log.jsonl)'
        ) from None
    return SummaryWriter


def require(cfg: Config) -> None:
    """Refuse, before anything is built, a config that asks for a tracker this install
    lacks (every rank checks, so no rank goes on alone)."""
    if cfg.log_with == "tensorboard":
        _writer_class()


class Tracker:
    """A TensorBoard writer on `<run>/tb/` (or a subfolder). `purge_step`: a resumed run
    drops the events it logged at and after that step, as log.jsonl is cut back."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        self.writer = _writer_class()(
            log_dir=str(folder), purge_step=purge_step, flush_secs=FLUSH_SECS
        )

    def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        for key, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(f"{prefix}{key}", float(value), step)

    def train_step(self, row: Mapping) -> None:
        """One row of log.jsonl (written out every FLUSH_SECS seconds and at close)."""
        values = {k: row[k] for k in TRAIN_KEYS if k in row}
        self.scalars(int(row["step"]), values | {"flops": row["train_flops"]}, "train/")

    def close(self) -> None:
        self.writer.close()


def open_tracker(cfg: Config, run_dir: Path, rank: int = 0, resumed_at: int = 0) -> Tracker | None:
    """The run's training tracker when `cfg.log_with` asks for one (rank 0 only), else None;
    `resumed_at`: the checkpoint's step the run resumes from, 0 for a fresh start (the events
    an earlier session logged after it are dropped: steps are 1-based, so a start at 0
    drops all, as a session that crashed before its first checkpoint leaves some)."""
    if cfg.log_with != "tensorboard" or rank != 0:
        return None
    return Tracker(Path(run_dir) / FOLDER, purge_step=resumed_at + 1)


def log_scores(cfg: Config, run_dir: Path, step: int, scores: list[tuple[int, Mapping]]) -> None:
    """A snapshot's scores ((n, row) each) as `eval/<metric>@n<N>/<sampling>` at `step`
    (the row's sampling setting, `harness.pipeline.sample.plan_tag`, so the settings one run
    is scored under at one n, renoise on and off say, keep their own curves), into
    `<run>/tb/eval` (its own event files, so TensorBoard follows them beside training's),
    when `cfg.log_with` asks for it. A rescored or reused snapshot replaces its points."""
    if cfg.log_with != "tensorboard":
        return
    tracker = Tracker(Path(run_dir) / FOLDER / "eval", purge_step=step)
    for n, row in scores:
        setting = f"/{row['sampling']}" if row.get("sampling") else ""
        found = {f"{k}@n{n}{setting}": row[k] for k in SCORE_KEYS
                 if isinstance(row.get(k), (int, float))}  # fmt: skip
        tracker.scalars(step, found, "eval/")
    tracker.close()
