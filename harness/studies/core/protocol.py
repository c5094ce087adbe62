"""The scoring protocol every study shares: which metrics, at which snapshot, at which n.

An `Evaluation` is one score to make of a trained run's snapshot: its n, its metrics, the
sampling changes it is made under (e.g. renoising off) and the columns stored with its row.
The metric lists below are the studies' choices, made here once:
- `CURVE_METRICS` / `FINAL_METRICS`: every study's curve points (an unbiased kernel
  distance at small n) and final points (with the Fréchet distance); both include motion,
  whose stutter and motion gap show stage-boundary artifacts (the renoise question);
- `METRICS`: a light set for a quick trial scored at every snapshot alike (`trial_arm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUALITY = "FVD-md"  # the quality metric of every final score
METRICS = ["fvd-md", "pa-md", "flicker"]
CURVE_METRICS = ["kvd-md", "pa-md", "motion"]
FINAL_METRICS = ["fvd-md", "kvd-md", "pa-md", "flicker", "motion"]
MOTION_COLUMNS = ("motion-gap", "motion-gap-lo", "motion-gap-hi", "stutter", "stutter-real")
# the other columns of a scored row that sweeps and ablations keep
SCORE_COLUMNS = (
    "FVD-md-lo", "FVD-md-hi", "PA-md", "PA-md-digit", "flicker", "train_gflops", "infer_gflops",
    "train_wall_s",
)  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """One score of a snapshot: on `n` videos, with `metrics`, under the sampling `changes`
    (on top of the run's own), its row stored with the columns `extra`."""

    n: int
    metrics: tuple[str, ...]
    changes: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
