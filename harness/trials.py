"""One config trained and scored along the way: the unit of work of the Optuna sweep
(`harness.sweep`) and of the named ablations (`harness.ablate`).

A config is split into what training depends on and what only sampling changes
(`split_sampling`): configs that differ only in sampling settings (renoising, steps per
stage) share one trained run. A run folder is named by a hash of its training config
(`<runs>/<backbone>-<form>-<method>-<hash>`), so a sweep that is killed and restarted, or
a trial retried on another worker, resumes the same checkpoint instead of starting over.
`train_and_score` trains in chunks of `steps / evals` (bit-identical to one uninterrupted
run, since resume is exact), scores each snapshot, keeps the scores in the run's
`evals.csv` (reused on rerun) and hands every row to a callback that may stop the run
(sweep pruning).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import Config
from harness.evaluate import append_row, reference_videos, score_checkpoint
from harness.flops import expected_training_macs, plan_macs
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.sample import plan_tag, sampling_config
from harness.train import RESUMABLE_CHANGES
from harness.train import main as train_main

BASELINES = Path(__file__).resolve().parent.parent / "baselines"
METRICS = ["fvd-md", "pa-md", "flicker"]
QUALITY = "FVD-md"
# the other columns of a scored row that sweeps and ablations keep
SCORE_COLUMNS = ("PA-md", "flicker", "train_gflops", "infer_gflops", "train_wall_s")

# fields that never change what training computes: the name, and what a resume may change
BOOKKEEPING = ("name", *RESUMABLE_CHANGES)


@dataclass(frozen=True)
class TrialScale:
    """How big each trained config is. `overrides` apply on top of baselines/<base>.toml."""

    steps: int  # training steps per config
    evals: int  # scored snapshots along each run, evenly spaced, the last at `steps`
    eval_samples: int  # generated (and real) videos per score
    device: str
    base: str = "dit-tpdiff"
    overrides: dict[str, Any] = field(default_factory=dict)
    evaluator: EvaluatorRecipe | None = None  # None: the default recipe at the run's shape

    def __post_init__(self):
        if self.steps % self.evals:
            raise ValueError(f"steps={self.steps} must be a multiple of evals={self.evals}")


SCALES: dict[str, TrialScale] = {
    # the tests' setting: seconds per config
    "tiny": TrialScale(
        steps=4,
        evals=2,
        eval_samples=8,
        device="cpu",
        overrides=dict(
            size="tiny", frames=8, num_videos=64, warmup_steps=2, batch_size=4, sample_steps=6
        ),
        evaluator=EvaluatorRecipe(frames=8, steps=30, heldout=64, batch_size=16),
    ),
    # about 3 minutes per TPDiff config on 2 CPU cores (README)
    "cpu": TrialScale(steps=150, evals=3, eval_samples=32, device="cpu"),
    "gpu": TrialScale(
        steps=5000,
        evals=5,
        eval_samples=512,
        device="cuda",
        overrides=dict(batch_size=32, ema_decay=0.999),
    ),
}


def trial_config(scale: TrialScale, runs: Path, **changes: Any) -> Config:
    """baselines/<scale.base>.toml at `scale` with `changes` (any config keys) applied."""
    every = scale.steps // scale.evals
    cfg = Config.from_file(BASELINES / f"{scale.base}.toml").replace(**scale.overrides)
    cfg = cfg.replace(**changes).replace(
        steps=scale.steps,
        snapshot_every=every,
        ckpt_every=every,
        device=scale.device,
        out_dir=str(runs),
    )
    train, _ = split_sampling(cfg)
    return cfg.replace(name=train.name)


def split_sampling(cfg: Config) -> tuple[Config, dict[str, Any]]:
    """(the config training runs with, the sampling changes that turn it back into `cfg`).

    Renoising is sampling-only; steps per stage are too unless the stage weighting is
    "steps". The training config is named by a hash of everything training depends on."""
    sampling = {"renoise": cfg.renoise}
    if cfg.stage_weighting != "steps":
        sampling["stage_steps"] = cfg.stage_steps
    defaults = {k: getattr(Config(), k) for k in ("renoise", "stage_steps")}
    train = cfg.replace(**{k: defaults[k] for k in sampling})
    changes = {k: v for k, v in sampling.items() if v != defaults[k]}
    key = {k: v for k, v in train.to_dict().items() if k not in BOOKKEEPING}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{cfg.backbone}-{cfg.form}-{cfg.method}-{digest}"
    return train.replace(name=name), changes


def costs(run: Path, cfg: Config) -> dict[str, float]:
    """Training GFLOPs per sample-step (expected over the stage distribution) and
    inference GFLOPs per video of `cfg`'s plan, from the MACs the run recorded."""
    saved = json.loads((run / "config.json").read_text())
    macs = {int(f): m for f, m in saved["forward_macs"].items()}
    train = Config.from_dict(saved["config"])
    return {
        "train_gflops": 2 * expected_training_macs(macs, train.plan(), train.stage_weighting) / 1e9,
        "infer_gflops": 2 * plan_macs(macs, cfg.plan()) / 1e9,
    }


@contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Exclusive use of a run folder across processes (two sweep workers that drew the same
    training config take turns; the second finds the work done)."""
    run.mkdir(parents=True, exist_ok=True)
    with (run / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_log(run: Path) -> list[dict]:
    """The rows of a run's log.jsonl, one per training step."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]


def last_loss(rows: list[dict]) -> float:
    """Mean loss of the last (up to) 10 logged steps."""
    tail = [r["loss"] for r in rows[-10:]]
    return sum(tail) / len(tail)


OnScore = Callable[[int, dict], None]


def train_and_score(
    cfg: Config,
    scale: TrialScale,
    options: MetricOptions,
    on_score: OnScore | None = None,
) -> list[dict]:
    """Train `cfg` (from `trial_config`) chunk by chunk, score each snapshot with the config's
    own sampling settings, and return one row per snapshot: step, the metric columns, the
    costs and the run's training wall time. `on_score(step, row)` runs after every score
    and may raise (e.g. optuna.TrialPruned) to stop early. A non-finite loss raises
    FloatingPointError naming the step."""
    train, changes = split_sampling(cfg)
    run = train.run_dir
    sampled = sampling_config(train, changes)
    tag = plan_tag(sampled)
    every = scale.steps // scale.evals
    rows, real = [], None  # real: the run's real videos, built once for all its scores
    for step in range(every, scale.steps + 1, every):
        with run_lock(run):
            train_main(train.replace(steps=step))
            log = read_log(run)[:step]
            loss = last_loss(log)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss} by step {step} of {run}; lower lr= or "
                    "raise warmup_steps="
                )
            row = _cached_score(run, step, tag, scale.eval_samples)
            if row is None:
                snapshot = Path("snapshots") / f"step_{step:06d}.pt"
                if real is None:
                    real = reference_videos(train, scale.eval_samples)
                scores = score_checkpoint(
                    run, scale.eval_samples, options, METRICS, snapshot, changes, real
                )
                row = dict(step=step, sampling=tag, n=scale.eval_samples, **scores)
                append_row(run / "evals.csv", row)
        row = row | costs(run, sampled) | {"train_wall_s": log[-1]["wall_time_s"]}
        if not math.isfinite(row[QUALITY]):
            raise FloatingPointError(f"{QUALITY} is {row[QUALITY]} at step {step} of {run}")
        rows.append(row)
        if on_score is not None:
            on_score(step, row)
    return rows


def _cached_score(run: Path, step: int, tag: str, n: int) -> dict | None:
    path = run / "evals.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    hit = frame[(frame["step"] == step) & (frame["sampling"] == tag) & (frame["n"] == n)]
    if hit.empty:
        return None
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in hit.iloc[-1].items()}
