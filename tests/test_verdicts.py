"""Known answers for the verdict rules: synthetic curves and scores whose verdict is known."""

import numpy as np
import pytest

from harness.studies.core import verdicts as v
from harness.studies.core.verdicts import Curve, Estimate


def curve(x, q, width=0.5):
    x, q = np.asarray(x, float), np.asarray(q, float)
    return Curve(x, q, q - width, q + width)


# vanilla: 8 points at cost 1..8, improving to a plateau at 10
VANILLA = curve(np.arange(1, 9), [40, 30, 22, 16, 12, 10.5, 10, 10])


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


def test_inference_verdicts():
    assert v.inference("dit", 1.86, None).verdict == "reproduced"
    assert v.inference("unet", 1.3, None).verdict == "not reproduced"
    noisy = v.inference("dit", 1.86, "dit-tpdiff is at noise level (...)")
    assert noisy.verdict == "inconclusive" and "noise level" in noisy.rule


def test_training_reproduced_when_tpdiff_reaches_the_target_at_half_the_cost():
    # TPDiff: the same curve at half the cost per step
    tp = curve(np.arange(1, 9) / 2, [40, 30, 22, 16, 12, 10.5, 10, 10])
    verdict = v.training("dit", VANILLA, tp, [None, None])
    assert verdict.verdict == "reproduced", verdict.rule
    assert verdict.numbers["target"] == 10
    assert verdict.numbers["ratio"] == pytest.approx(0.5)
    assert verdict.numbers["ratio_lo"] <= 0.5 <= verdict.numbers["ratio_hi"] <= v.RATIO_CLAIM


def test_training_not_reached():
    tp = curve(np.arange(1, 9) / 2, [40, 35, 30, 27, 25, 24, 23, 22])
    verdict = v.training("dit", VANILLA, tp, [None, None])
    assert verdict.verdict == "not reproduced" and "not reached" in verdict.rule


def test_training_inconclusive_when_the_bands_overlap_at_equal_cost():
    tp = curve(np.arange(1, 9) / 2, [40, 30, 22, 16, 12, 10.5, 10, 10], width=30)
    verdict = v.training("dit", VANILLA, tp, [None, None])
    assert verdict.verdict == "inconclusive" and "overlap" in verdict.rule


def test_training_not_reproduced_when_tpdiff_needs_about_as_much():
    # TPDiff improves as fast per unit cost as vanilla: same cost to the target
    tp = curve(np.arange(1, 9) * 0.95, [40, 30, 22, 16, 12, 10.5, 10, 10], width=0.1)
    slow = curve(np.arange(1, 9), [41, 32, 25, 19, 15, 12.5, 11, 11], width=0.1)
    verdict = v.training("dit", slow, tp, [None, None])
    assert verdict.verdict == "not reproduced" and verdict.numbers["ratio_lo"] > v.RATIO_CLAIM


def test_training_at_noise_level_is_never_reproduced():
    tp = curve(np.arange(1, 9) / 2, [40, 30, 22, 16, 12, 10.5, 10, 10])
    verdict = v.training("dit", VANILLA, tp, ["dit-vanilla is at noise level (x)", None])
    assert verdict.verdict == "inconclusive" and "noise level" in verdict.rule


def test_alignment_verdicts_respect_intervals_and_seed_spread():
    good, bad = Estimate(100, 90, 110), Estimate(150, 140, 160)
    assert v.alignment("dit", good, bad, 20, [None]).verdict == "reproduced"
    assert v.alignment("dit", good, bad, 60, [None]).verdict == "inconclusive"  # seeds
    assert v.alignment("dit", bad, good, 20, [None]).verdict == "not reproduced"
    close = Estimate(145, 120, 170)
    assert v.alignment("dit", close, bad, None, [None]).verdict == "inconclusive"
    assert v.alignment("unet", None, None, None, [None]).verdict == "inconclusive"
    assert v.alignment("dit", good, bad, 20, ["x is at noise level"]).verdict == "inconclusive"


def test_renoise_verdicts():
    on, off = Estimate(0.1, 0.05, 0.15), Estimate(0.6, 0.5, 0.7)
    assert v.renoise("dit", on, off, [None]).verdict == "reproduced"
    assert v.renoise("dit", off, on, [None]).verdict == "not reproduced"
    assert v.renoise("dit", on, Estimate(0.14, 0.1, 0.2), [None]).verdict == "inconclusive"
    assert v.renoise("dit", on, off, ["noise level"]).verdict == "inconclusive"


def test_the_ratio_interval_holds_the_ratio_and_compares_edges_like_with_like():
    # TPDiff's band is narrower than vanilla's: its edges reach their targets at other
    # costs than its centre, yet the interval must contain the central ratio
    x = np.arange(1, 9, dtype=float)
    q = np.array([40, 30, 22, 16, 12, 10.5, 10, 10])
    vanilla = Curve(x, q, q - 3, q + 3)
    tp = Curve(x / 2, q, q - 0.5, q + 0.5)
    t = v.time_to_target(vanilla, tp)
    assert t["ratio"] == pytest.approx(0.5)
    assert t["ratio_lo"] <= t["ratio"] <= t["ratio_hi"]
    # like with like: a TPDiff that is vanilla's curve exactly gives ratio 1 at every edge
    same = v.time_to_target(vanilla, vanilla)
    assert same["ratio_lo"] == same["ratio"] == same["ratio_hi"] == 1.0


def test_the_quality_bar_of_a_model_that_learns():
    assert v.bar_misses(400.0, 0.4, 100.0) == []
    too_far = v.bar_misses(401.0, 0.9, 100.0)  # too far from real vs real
    assert len(too_far) == 1 and too_far[0].startswith("FVD-md 4.01 x real")
    ignores = v.bar_misses(150.0, 0.39, 100.0)  # ignores its captions
    assert len(ignores) == 1 and ignores[0].startswith("PA-md-digit 0.390")
    assert len(v.bar_misses(500.0, 0.1, 100.0)) == 2


def test_ablation_verdicts_need_both_intervals_and_the_seed_spread_apart():
    paper = Estimate(10.0, 9.0, 11.0)
    lower = Estimate(7.0, 6.0, 8.0)  # interval wholly below, gap 3
    assert v.ablation("FVD-md", lower, paper, None, [])[0] == "better"
    assert v.ablation("FVD-md", lower, paper, 2.0, [])[0] == "better"
    assert v.ablation("FVD-md", lower, paper, 3.5, [])[0] == "within noise"  # seeds
    assert v.ablation("FVD-md", paper, lower, 2.0, [])[0] == "worse"
    near = Estimate(9.5, 8.5, 10.5)  # intervals overlap
    assert v.ablation("FVD-md", near, paper, 0.0, [])[0] == "within noise"
    found, why = v.ablation("FVD-md", lower, paper, 0.0, ["x is at noise level"])
    assert found == "within noise" and "noise level" in why


def test_ablation_verdicts_on_a_higher_is_better_share():
    paper = Estimate(0.5, 0.43, 0.57)
    assert v.ablation("PA-md-digit", Estimate(0.8, 0.74, 0.85), paper, 0.1, [], True)[0] == "better"
    assert v.ablation("PA-md-digit", Estimate(0.2, 0.15, 0.26), paper, 0.1, [], True)[0] == "worse"
    lo, hi = v.wilson_interval(0.75, 128)
    assert lo < 0.75 < hi and hi - lo == pytest.approx(0.12, abs=0.01)
    assert v.wilson_interval(0.0, 128)[0] == 0.0 and v.wilson_interval(1.0, 128)[1] == 1.0
