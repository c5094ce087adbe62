"""One config trained and scored along the way: the unit of work of the Optuna sweep
(`harness.sweep`) and of the named ablations (`harness.studies.ablate`).

A config is split into what training depends on and what only sampling changes
(`split_sampling`): configs that differ only in sampling settings (renoising, steps per
stage) share one trained run. A run folder is named by a hash of its training config
(`<runs>/<backbone>-<form>-<method>-<hash>`), so a sweep that is killed and restarted, or
a trial retried on another worker, resumes the same checkpoint instead of starting over.
`train_and_score` trains in chunks of `steps / evals` (`train.main(stop_at=)`,
bit-identical to one uninterrupted run, since resume is exact), scores each snapshot, keeps
the scores in the run's `evals.csv` (a stored score is reused only when its identity
matches, see `harness.pipeline.provenance`) and hands every row to a callback that may stop the run
(sweep pruning).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.common.config import Config
from harness.common.lock import owned
from harness.measure.flops import expected_training_macs, plan_macs
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import reference_videos, score_or_reuse
from harness.pipeline.provenance import training_hash
from harness.pipeline.sample import sampling_config
from harness.pipeline.train import main as train_main
from harness.studies import cpu_recipe

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
METRICS = ["fvd-md", "pa-md", "flicker"]
# the ablations also score motion: stutter and the motion gap show stage-boundary artifacts
# (repeated frames), the renoise question
ABLATION_METRICS = [*METRICS, "motion"]
MOTION_COLUMNS = ("motion-gap", "motion-gap-lo", "motion-gap-hi", "stutter", "stutter-real")
QUALITY = "FVD-md"
# the other columns of a scored row that sweeps and ablations keep
SCORE_COLUMNS = (
    "FVD-md-lo", "FVD-md-hi", "PA-md", "PA-md-digit", "flicker", "train_gflops", "infer_gflops",
    "train_wall_s",
)  # fmt: skip


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
    # the CPU reference recipe (harness.studies.cpu_recipe) at the DiT's 6,000 steps, scored at
    # n = 128: about 6 minutes per TPDiff config on 2 CPU cores (README)
    "cpu": TrialScale(
        steps=cpu_recipe.STEPS["dit"],
        evals=3,
        eval_samples=cpu_recipe.N,
        device="cpu",
        overrides=cpu_recipe.OVERRIDES | dict(size=cpu_recipe.SIZES["dit"]),
        evaluator=cpu_recipe.EVALUATOR,
    ),
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
    name = f"{cfg.backbone}-{cfg.form}-{cfg.method}-{training_hash(train)}"
    return train.replace(name=name), changes


def costs(run: Path, cfg: Config) -> dict[str, float]:
    """Training GFLOPs per sample-step (expected over the stage distribution) and
    inference GFLOPs per video of `cfg`'s plan, from the MACs the run recorded."""
    saved = json.loads((run / "config.json").read_text())
    macs = {int(f): m for f, m in saved["forward_macs"].items()}
    train = Config.from_dict(saved["config"])
    train_macs = expected_training_macs(macs, plan_for(train), train.stage_weighting)
    return {
        "train_gflops": 2 * train_macs / 1e9,
        "infer_gflops": 2 * plan_macs(macs, plan_for(cfg)) / 1e9,
    }


@contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Exclusive use of a run folder across processes (two sweep workers that drew the same
    training config take turns; the second finds the work done)."""
    with owned(run, "training run", wait=True, quiet=True):
        yield


OnScore = Callable[[int, dict], None]


def train_and_score(
    cfg: Config,
    scale: TrialScale,
    options: MetricOptions,
    on_score: OnScore | None = None,
    metrics: list[str] | None = None,
) -> list[dict]:
    """Train `cfg` (from `trial_config`) chunk by chunk, score each snapshot with the config's
    own sampling settings, and return one row per snapshot: step, the metric columns, the
    costs and the run's training wall time. `on_score(step, row)` runs after every score
    and may raise (e.g. optuna.TrialPruned) to stop early. `metrics`: what to score
    (default METRICS). A non-finite loss stops training with FloatingPointError naming the
    step (harness.train); so does a non-finite score."""
    train, changes = split_sampling(cfg)
    run = train.run_dir
    sampled = sampling_config(train, changes)
    every = scale.steps // scale.evals
    real = functools.cache(lambda: reference_videos(train, scale.eval_samples))  # once per run
    rows = []
    for step in range(every, scale.steps + 1, every):
        with run_lock(run):
            train_main(train, stop_at=step)
            row = score_or_reuse(
                run / "evals.csv", run, f"snapshots/step_{step:06d}.pt", scale.eval_samples,
                options, metrics or METRICS, changes, real, same=("step", "sampling", "n"),
            )  # fmt: skip
        row = row | costs(run, sampled)
        if not math.isfinite(row[QUALITY]):
            raise FloatingPointError(f"{QUALITY} is {row[QUALITY]} at step {step} of {run}")
        rows.append(row)
        if on_score is not None:
            on_score(step, row)
    return rows
