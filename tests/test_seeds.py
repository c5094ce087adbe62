"""Seed-aware intervals (harness.studies.core.seeds): coverage on synthetic seeds with known
seed and video noise, and the known answers of the interval rule."""

import math

import numpy as np
import pytest

from harness.studies.core.seeds import MIN_SEEDS, paired, seed_bootstrap, t_quantile


def _paired_seeds(rng, truth, seeds, seed_sd=0.5, video_sd=0.3):
    """Per-seed paired differences of two arms that share a seed effect (common random
    numbers: it cancels), each with its own seed effect and its own video noise."""
    shared = rng.normal(0, 1.0, seeds)
    vanilla = 3.0 + shared + rng.normal(0, seed_sd, seeds) + rng.normal(0, video_sd, seeds)
    tpdiff = 3.0 - truth + shared + rng.normal(0, seed_sd, seeds) + rng.normal(0, video_sd, seeds)
    return list(vanilla - tpdiff)


def test_the_interval_covers_the_truth_near_its_nominal_rate_at_three_seeds():
    rng = np.random.default_rng(0)
    truth, sims = 1.0, 4000
    covered = boot = 0
    for _ in range(sims):
        d = _paired_seeds(rng, truth, 3)
        est = paired(d, [0, 1, 2])
        covered += est.lo <= truth <= est.hi
        lo, hi = seed_bootstrap(d, draws=400, seed=int(rng.integers(1 << 30)))
        boot += lo <= truth <= hi
    # 4,000 simulations: the coverage's standard error is 0.005
    assert abs(covered / sims - 0.90) < 0.02
    # the bootstrap over 3 seeds: the range of 3 values, far below its nominal 90 %
    assert boot / sims < 0.75


def test_known_answer_and_smallest_detectable_effect():
    est = paired([1.0, 2.0, 3.0], [0, 1, 2])
    half = t_quantile(2, 0.95) * 1.0 / math.sqrt(3)  # sd of (1, 2, 3) is 1
    assert est.estimate == 2.0 and est.median == 2.0
    assert est.lo == pytest.approx(2 - half) and est.hi == pytest.approx(2 + half)
    assert t_quantile(2, 0.95) == pytest.approx(2.919986, abs=1e-6)
    assert est.mde == pytest.approx((t_quantile(2, 0.95) + t_quantile(2, 0.8)) / math.sqrt(3))
    assert not est.provisional and len(est.values) == MIN_SEEDS


def test_every_interval_contains_its_estimate_and_misses_are_infinite():
    rng = np.random.default_rng(1)
    for _ in range(200):
        s = int(rng.integers(1, 7))
        values = list(rng.normal(0, rng.uniform(0.01, 3), s))
        if rng.random() < 0.3:
            values[int(rng.integers(s))] = math.inf
        censor = [5.0 if v == math.inf else None for v in values]
        est = paired(values, list(range(s)), censor=censor)
        assert est.lo <= est.estimate <= est.hi
        if math.inf in values:
            assert est.estimate == est.hi == math.inf and est.lo < math.inf
    one = paired([0.4], [7])
    assert one.provisional and (one.lo, one.hi) == (-math.inf, math.inf)
    ratio = paired([math.log(0.5), math.log(0.4), math.log(0.6)], [0, 1, 2]).exp()
    assert ratio.lo < 0.4 < 0.6 < ratio.hi and ratio.estimate == pytest.approx(0.4932, abs=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        paired([1.0, math.nan], [0, 1])


def test_a_miss_bounds_from_below_by_the_smallest_value_whatever_it_hides():
    """A miss only says "above its censor value": the lower end is the smallest per-seed
    value (each miss at its own censor value), so a larger hidden value never lowers it."""
    est = paired([0.2, 0.1, math.inf], [0, 1, 2], censor=[None, None, 0.5])
    assert (est.lo, est.estimate, est.hi) == (0.1, math.inf, math.inf)
    assert paired([0.9, 0.8, math.inf], [0, 1, 2], censor=[None, None, 0.7]).lo == 0.7
    assert paired([0.9, math.inf], [0, 1]).lo == -math.inf  # no censor value: unbounded
