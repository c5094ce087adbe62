"""Seed-aware intervals: per-seed estimates in, an interval that carries seed noise out.

A claim compares paired arms: vanilla and TPDiff of training seed s share the model's init,
the data order, the training videos, the sampling captions, the sampling noise and the real
reference set. Each seed gives one paired estimate d_s (a difference of final scores, or the
log of a ratio of costs to target), and d_s already carries everything that moves with the
seed: the training draws, which videos were sampled and which real videos were drawn. So
the interval is built from the spread of the d_s themselves:

    mean(d) +- t(S - 1, (1 + level) / 2) * sd(d) / sqrt(S)

(Student's t, exact when the d_s are normal; `paired`). The smallest effect the design can
detect, two-sided at `level` with 80 % power, is

    mde = (t(S - 1, (1 + level) / 2) + t(S - 1, 0.8)) * sd(d) / sqrt(S)

which is what an `inconclusive` verdict states. A percentile bootstrap over S = 3 seeds has
only 10 distinct resamples and its interval is the range of at most 3 values: it covers far
less than its nominal level (`tests/test_seeds.py` measures both on synthetic seeds with
known seed and video noise: t covers 0.90, the bootstrap
0.64 in 4,000 simulations), so it is not used.

A miss (a run that never reaches a target) is +inf: the mean, the upper end and the
smallest detectable effect are then infinite. A miss is only known to lie above its
`censor` value (the run had not reached the target when its budget ended), and a t
interval with a censored value in it is no bound at all (a larger true value widens it
downwards), so the lower end is then the smallest per-seed value, each miss at its censor
value: it lies below the seeds' median with probability 1 - 2^-S (0.875 at S = 3, 0.94
at 4), and it only rises with every value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.9  # every interval of the report: 90 %, two-sided
POWER = 0.8  # the power an `inconclusive` verdict's smallest detectable effect is stated at
MIN_SEEDS = 3  # fewer seeds: every quality-based verdict is provisional


def seeded_name(name: str, seed: int) -> str:
    """The run folder of the run `name` trained at seed offset `seed` (itself at 0): the
    one naming rule of every study's seeded runs."""
    return f"{name}-seed{seed}" if seed else name


@dataclass(frozen=True)
class SeedEstimate:
    """Per-seed estimates (`seeds`, `values`), their median, and the interval of their
    mean (`estimate`, `lo`, `hi`); `mde`: the smallest effect the design detects (NaN for
    fewer than 2 seeds, inf with a miss)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    estimate: float
    median: float
    lo: float
    hi: float
    mde: float
    level: float = LEVEL

    @property
    def provisional(self) -> bool:
        return len(self.values) < MIN_SEEDS

    def row(self) -> dict:
        return asdict(self) | dict(provisional=self.provisional)

    def exp(self) -> SeedEstimate:
        """The same estimate on the ratio scale (for log ratios): every figure exponentiated
        except `mde`, which stays a log ratio."""
        e = lambda v: math.exp(v) if v != -math.inf else 0.0  # noqa: E731
        values = tuple(e(v) for v in self.values)
        return SeedEstimate(self.seeds, values, e(self.estimate), e(self.median), e(self.lo),
                            e(self.hi), self.mde, self.level)  # fmt: skip


def t_quantile(df: int, q: float) -> float:
    return float(stats.t.ppf(q, df))


def paired(values: list[float], seeds: list[int], level: float = LEVEL,
           censor: list[float | None] | None = None) -> SeedEstimate:  # fmt: skip
    """The seed-aware estimate of per-seed paired estimates `values` (see the module
    docstring). One seed: the value itself with an unbounded interval. A +inf value (a
    miss): estimate and upper end +inf, the lower end the smallest value with each miss at
    its `censor` value (per seed; -inf when a miss has none)."""
    if len(values) != len(seeds) or not values:
        raise ValueError(f"{len(values)} per-seed values for {len(seeds)} seeds")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"a per-seed value is NaN: {values} (seeds {seeds})")
    d = np.asarray(values, dtype=float)
    s = len(d)
    median = float(np.median(d))
    missed = np.isinf(d) & (d > 0)
    if missed.any():
        bounds = censor if censor is not None else [None] * s
        known = [v if not m else (b if b is not None else -math.inf)
                 for v, m, b in zip(values, missed, bounds)]  # fmt: skip
        return SeedEstimate(tuple(seeds), tuple(values), math.inf, median, float(min(known)),
                            math.inf, math.inf, level)  # fmt: skip
    if s == 1:
        return SeedEstimate(tuple(seeds), tuple(values), float(d[0]), median,
                            -math.inf, math.inf, math.nan, level)  # fmt: skip
    t_hi = t_quantile(s - 1, (1 + level) / 2)
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(s)
    mde = (t_hi + t_quantile(s - 1, POWER)) * se
    return SeedEstimate(tuple(seeds), tuple(values), mean, median, mean - t_hi * se,
                        mean + t_hi * se, mde, level)  # fmt: skip


def seed_bootstrap(values: list[float], level: float = LEVEL, draws: int = 2000,
                   seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The percentile interval of the mean over a bootstrap of the seeds: the rule `paired`
    replaces (kept to measure its coverage against, see the module docstring)."""
    d = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(len(d), size=(draws, len(d)))].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def spread(values: list[float]) -> float | None:
    """The seed-to-seed standard deviation of one arm's per-seed scores (None for one)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None
