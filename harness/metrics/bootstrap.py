"""Bootstrap intervals for a two-sample statistic (a distance between real and generated sets).

Both sets are resampled, independently and with replacement, `draws` times. Resampling
repeats videos, and a repeated video shrinks a set's spread, so distances between sets
(Fréchet above all) come out larger on the resamples than on the data: the plain percentile
interval would sit above the estimate. The interval is therefore the spread of the draws
around their median, placed around the estimate:

    [d - (median* - q*_lo), d + (q*_hi - median*)]

with q*_lo, q*_hi the (1 - level) / 2 and (1 + level) / 2 quantiles of the draws. It
carries the sampling noise of a score at its n (which videos happened to be generated and
which real videos were drawn); it does not carry training-seed noise, which is measured by
retraining (see the report).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_interval(
    statistic: Statistic,
    real: np.ndarray,
    fake: np.ndarray,
    draws: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[float, float]:
    """(lo, hi) around statistic(real, fake): the central `level` spread of the statistic
    over `draws` bootstrap resamples of the rows of both sets, placed around the estimate
    (see the module docstring; a fixed seed: repeatable)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if draws < 10:
        raise ValueError(f"a bootstrap interval needs at least 10 draws, got {draws}")
    real, fake = np.asarray(real), np.asarray(fake)
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for i in range(draws):
        values[i] = statistic(
            real[rng.integers(len(real), size=len(real))],
            fake[rng.integers(len(fake), size=len(fake))],
        )
    tail = (1 - level) / 2 * 100
    lo, mid, hi = np.percentile(values, [tail, 50, 100 - tail])
    point = statistic(real, fake)
    return float(point - (mid - lo)), float(point + (hi - mid))
