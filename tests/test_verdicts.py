"""Known answers for the verdict rules: synthetic curves and scores whose verdict is known."""

import numpy as np
import pytest

from harness.studies.core import verdicts as v
from harness.studies.core.verdicts import Curve, Estimate


def curve(x, q, width=0.5):
    x, q = np.asarray(x, float), np.asarray(q, float)
    return Curve(x, q, q - width, q + width)


def test_noise_level_names_its_reason():
    assert v.noise_level(100, 1000, 0.6, 0.1, "r") is None
    assert "FVD-md 300 > 0.25 x noise reference 1000" in v.noise_level(300, 1000, 0.6, 0.1, "r")
    assert "within 0.05 of chance" in v.noise_level(100, 1000, 0.14, 0.1, "r")


def test_agreement_is_judged_at_the_n_it_was_measured_on():
    # Wilson 90 % interval, known values: 1 hit in 12 -> from 0.019; 60 in 128 -> from 0.397
    assert v.wilson_low(1 / 12, 12) == pytest.approx(0.0188, abs=5e-4)
    assert v.wilson_low(60 / 128, 128) == pytest.approx(0.3973, abs=5e-4)
    assert v.wilson_low(0.0, 50) == 0.0
    # one lucky hit in 12 videos is noise; the same share on 2,000 videos is not
    assert "at n = 12" in v.noise_level(0.1, 10, 1 / 12, 0.0, "r", n=12)
    assert v.noise_level(0.1, 10, 1 / 12, 0.0, "r", n=2000) is None
    assert v.noise_level(0.1, 10, 60 / 128, 0.1, "r", n=128) is None


def _sweep(speedups, per_video_fall=(1.0, 0.5, 0.3, 0.29, 0.285), spread=0.02):
    """A batch sweep at batches 1, 2, 4, 8, 16: vanilla's time per video falls by
    `per_video_fall` (relative), TPDiff's is vanilla's / speedup."""
    rows = []
    for batch, fall, speed in zip((1, 2, 4, 8, 16), per_video_fall, speedups):
        van = batch * fall
        tp = van / speed
        rows.append(
            dict(
                batch=batch,
                vanilla_s=van,
                vanilla_s_min=van * (1 - spread),
                vanilla_s_max=van * (1 + spread),
                tpdiff_s=tp,
                tpdiff_s_min=tp * (1 - spread),
                tpdiff_s_max=tp * (1 + spread),
            )
        )
    return rows


def test_inference_is_decided_at_the_smallest_compute_bound_batch():
    # per-video time: 1, 0.5, 0.3, 0.29 (-3 %), 0.285: batch 8 is the first compute-bound
    regime = v.inference_regime(_sweep([1.1, 1.3, 1.75, 1.8, 1.8]), bound=1.9)
    assert regime["batch"] == 8 and regime["compute_bound"]
    assert regime["speedup"] == pytest.approx(1.8) and regime["batch1_speedup"] == 1.1
    assert regime["speedup_lo"] < 1.8 < regime["speedup_hi"]
    assert "overhead-bound" in regime["batch1_regime"]
    verdict = v.inference("dit", regime, None)
    assert verdict.verdict == "reproduced" and "batch 8 (compute-bound)" in verdict.rule
    assert not verdict.provisional and "batch 1: 1.1" in verdict.rule
    slow = v.inference("unet", v.inference_regime(_sweep([1, 1.1, 1.2, 1.3, 1.3]), 1.7), None)
    assert slow.verdict == "not reproduced"
    edge = v.inference("unet", v.inference_regime(_sweep([1.5] * 5, spread=0.05), 1.7), None)
    assert edge.verdict == "inconclusive"
    noisy = v.inference("dit", regime, "dit-tpdiff is at noise level (...)")
    assert noisy.verdict == "inconclusive" and "noise level" in noisy.rule
    # no batch is compute-bound: the largest measured, and the rule says so
    never = v.inference_regime(_sweep([1.6] * 5, per_video_fall=(1, 0.6, 0.4, 0.3, 0.2)), 1.8)
    assert never["batch"] == 16 and not never["compute_bound"]
    undecided = v.inference("dit", never, None)
    assert undecided.verdict == "inconclusive" and "none was measured" in undecided.rule
    # batch 1 is compute-bound when batch 2's time per video is within 10 % of it
    flat = v.inference_regime(_sweep([1.6] * 5, per_video_fall=(1, 0.95, 0.9, 0.88, 0.87)), 1.8)
    assert flat["batch"] == 2 and flat["batch1_regime"] == "compute-bound"


def _seeds(curve_of, scale=(1.0, 1.1, 0.9), ends=(10, 10.5, 9.6)):
    """One curve per seed, each seed's costs scaled and its plateau moved (seed noise)."""
    return {s: curve_of(k, end) for s, (k, end) in enumerate(zip(scale, ends))}


def _vanilla(k, end=10):
    """8 points at cost k..8k, improving to a plateau at `end` from the fifth point on."""
    return curve(np.arange(1, 9) * k, [40, 30, 22, 16, end + 0.2, end, end, end])


def test_training_reproduced_when_every_seed_reaches_the_target_at_half_the_cost():
    van = _seeds(_vanilla)
    tp = _seeds(lambda k, end: _vanilla(k / 2, end))
    verdict = v.training("dit", van, tp, [None, None])
    assert verdict.verdict == "reproduced", verdict.rule
    assert verdict.seeds == (0, 1, 2) and not verdict.provisional
    assert verdict.numbers["target"] == 10.5  # the worst vanilla seed's end level
    assert verdict.numbers["ratio"] == pytest.approx(0.5)
    assert verdict.numbers["ratio_lo"] <= 0.5 <= verdict.numbers["ratio_hi"] <= v.RATIO_CLAIM
    assert verdict.numbers["converged"]  # the last third improves by 0.13 < the seed spread


def test_training_a_miss_is_infinite_and_one_seed_is_provisional():
    van = _seeds(_vanilla)
    tp = _seeds(lambda k, end: _vanilla(k / 2, end))
    tp[1] = curve(np.arange(1, 9) / 2, [40, 35, 30, 27, 25, 24, 23, 22])  # never reaches 10
    verdict = v.training("dit", van, tp, [None, None])
    assert verdict.numbers["ratio_hi"] == np.inf and verdict.verdict != "reproduced"
    one = v.training("dit", {0: van[0]}, {0: tp[0]}, [None, None])
    assert one.provisional and one.verdict == "inconclusive" and "provisional" in one.rule


def test_training_not_reproduced_when_tpdiff_needs_about_as_much():
    van = _seeds(_vanilla)
    tp = _seeds(lambda k, end: _vanilla(k * 0.95, end))
    verdict = v.training("dit", van, tp, [None, None])
    assert verdict.verdict == "not reproduced" and verdict.numbers["ratio_lo"] > v.RATIO_CLAIM


def test_training_inconclusive_when_the_seeds_disagree_and_states_what_it_could_detect():
    van = _seeds(_vanilla)
    tp = {0: _vanilla(0.3, 10), 1: _vanilla(0.9, 10.5), 2: _vanilla(0.5, 9.6)}
    verdict = v.training("dit", van, tp, [None, None])
    assert verdict.verdict == "inconclusive" and "smallest effect" in verdict.rule


def test_training_against_a_budget_when_vanilla_still_improves():
    still = {s: curve(np.arange(1, 9) * k, [40, 34, 29, 25, 21, 18, 15, 12])
             for s, k in enumerate((1.0, 1.02, 0.98))}  # fmt: skip
    tp = {s: curve(np.arange(1, 9) * k / 2, [40, 34, 29, 25, 21, 18, 15, 12])
          for s, k in enumerate((1.0, 1.02, 0.98))}  # fmt: skip
    verdict = v.training("dit", still, tp, [None, None])
    assert not verdict.numbers["converged"] and "not a converged baseline" in verdict.rule


def test_training_at_noise_level_is_never_reproduced():
    van, tp = _seeds(_vanilla), _seeds(lambda k, end: _vanilla(k / 2, end))
    verdict = v.training("dit", van, tp, ["dit-vanilla is at noise level (x)", None])
    assert verdict.verdict == "inconclusive" and "noise level" in verdict.rule


def test_alignment_paired_over_seeds_and_provisional_on_one():
    good = {s: Estimate(100 + d, 90 + d, 110 + d) for s, d in enumerate((0, 20, -10))}
    bad = {s: Estimate(150 + d, 140 + d, 160 + d) for s, d in enumerate((0, 25, -5))}
    assert v.alignment("dit", good, bad, None, [None]).verdict == "reproduced"
    assert v.alignment("dit", bad, good, None, [None]).verdict == "not reproduced"
    # one seed: the bootstrap widths and the seed spread decide, provisionally
    one = v.alignment("dit", {0: good[0]}, {0: bad[0]}, 5, [None])
    assert one.verdict == "reproduced" and one.provisional
    assert v.alignment("dit", {0: good[0]}, {0: bad[0]}, 60, [None]).verdict == "inconclusive"
    assert v.alignment("unet", {}, {}, None, [None]).verdict == "inconclusive"
    assert v.alignment("dit", good, bad, None, ["x is at noise level"]).verdict == "inconclusive"


def test_renoise_verdicts():
    on = {s: Estimate(0.1 + d, 0.05 + d, 0.15 + d) for s, d in enumerate((0, 0.02, -0.01))}
    off = {s: Estimate(0.6 + d, 0.5 + d, 0.7 + d) for s, d in enumerate((0, 0.05, 0.01))}
    assert v.renoise("dit", on, off, [None]).verdict == "reproduced"
    assert v.renoise("dit", off, on, [None]).verdict == "not reproduced"
    mixed = {s: Estimate(e.value + d, e.lo + d, e.hi + d)
             for (s, e), d in zip(on.items(), (0.3, -0.2, 0.1))}  # fmt: skip
    assert v.renoise("dit", on, mixed, [None]).verdict == "inconclusive"
    assert v.renoise("dit", on, off, ["noise level"]).verdict == "inconclusive"


def test_the_quality_bar_of_a_model_that_learns():
    assert v.bar_misses(400.0, 0.4, 100.0) == []
    too_far = v.bar_misses(401.0, 0.9, 100.0)  # too far from real vs real
    assert len(too_far) == 1 and too_far[0].startswith("FVD-md 4.01 x real")
    ignores = v.bar_misses(150.0, 0.39, 100.0)  # ignores its captions
    assert len(ignores) == 1 and ignores[0].startswith("PA-md-digit 0.390")
    assert len(v.bar_misses(500.0, 0.1, 100.0)) == 2


def test_the_wilson_interval_of_a_share():
    lo, hi = v.wilson_interval(0.75, 128)
    assert lo < 0.75 < hi and hi - lo == pytest.approx(0.12, abs=0.01)
    assert v.wilson_interval(0.0, 128)[0] == 0.0 and v.wilson_interval(1.0, 128)[1] == 1.0
