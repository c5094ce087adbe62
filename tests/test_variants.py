"""Variants against the paper setting: known answers for the paired gap, Holm and the mde."""

import math

import pytest

from harness.studies.core.variants import Gap, decide, expected_false_calls, gap, holm

PAPER = {0: (100.0, 90.0, 110.0), 1: (120.0, 110.0, 130.0), 2: (110.0, 100.0, 120.0)}


def _scores(*values):
    return {s: (v, v - 10, v + 10) for s, v in enumerate(values)}


def test_a_clear_gap_over_three_seeds_is_worse_with_its_t_interval():
    g = gap("FVD-md", _scores(160, 185, 165), PAPER, paper_sd=10.0)
    assert g.values == (60, 65, 55) and g.gap == 60 and g.df == 2
    assert g.se == pytest.approx(5 / math.sqrt(3))
    assert g.interval() == pytest.approx((51.571, 68.429), abs=1e-3)  # t(2, 0.95) = 2.92
    assert g.p == pytest.approx(0.00231, abs=5e-5)
    (call,) = decide("FVD-md", [(g, None)])
    assert call.verdict == "worse" and not call.provisional and call.seeds == (0, 1, 2)


def test_within_noise_states_the_smallest_effect_it_could_have_seen():
    g = gap("FVD-md", _scores(105, 110, 125), PAPER, paper_sd=10.0)
    assert g.values == (5, -10, 15)
    (call,) = decide("FVD-md", [(g, None)])
    assert call.verdict == "within noise"
    # (t(2, 0.95) + t(2, 0.80)) * sd / sqrt(3) = (2.920 + 1.061) * 12.583 / 1.732
    assert call.mde == pytest.approx(28.92, abs=0.01)
    assert call.mde_share == pytest.approx(28.92 / 110, abs=1e-4)
    assert "28.92" in call.why and "26%" in call.why


def test_holm_adjusts_step_down_and_keeps_the_input_order():
    adjusted, levels = holm([0.01, 0.04, 0.03, 0.2])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert levels == pytest.approx([0.1 / 4, 0.1 / 2, 0.1 / 3, 0.1])
    assert holm([]) == ([], [])


def test_two_marginal_rows_are_not_called_once_adjusted():
    # each alone would be called at 90 % (p = 0.06); as a family of two, neither is
    rows = [Gap("FVD-md", (0,), (d,), d, 1.0, None, 100.0) for d in (1.8808, -1.8808)]
    assert [r.p for r in rows] == pytest.approx([0.06, 0.06], abs=1e-4)
    assert decide("FVD-md", [(rows[0], None)])[0].verdict == "worse"
    calls = decide("FVD-md", [(r, None) for r in rows])
    assert [c.verdict for c in calls] == ["within noise", "within noise"]
    assert all(c.p_holm == pytest.approx(0.12, abs=2e-4) for c in calls)
    # the mde is at Holm's strictest threshold, 0.1 / 2, for both rows whatever their rank:
    # (z(1 - 0.025) + z(0.8)) * se = (1.95996 + 0.84162) * 1
    assert [c.mde for c in calls] == pytest.approx([2.80158, 2.80158], abs=1e-4)
    # alone, the same row is a family of one: (z(0.95) + z(0.8)) * se
    assert decide("FVD-md", [(rows[0], None)])[0].mde == pytest.approx(2.48648, abs=1e-4)


def test_one_seed_uses_both_bootstrap_widths_and_the_paper_spread():
    g = gap("FVD-md", {0: (150.0, 140.0, 160.0)}, PAPER, paper_sd=10.0)
    z = 1.6449
    assert g.df is None
    assert g.se == pytest.approx(math.sqrt(2 * (20 / (2 * z)) ** 2 + 2 * 10.0**2), rel=1e-4)
    (call,) = decide("FVD-md", [(g, None)])
    assert call.verdict == "worse" and call.provisional and call.seeds == (0,)
    assert call.p == pytest.approx(2 * (1 - 0.998740), abs=2e-4)  # z = 50 / 16.55 = 3.02


def test_higher_is_better_flips_the_sign():
    g = gap("PA-md-digit", {0: (0.9, 0.85, 0.95), 1: (0.95, 0.9, 1.0), 2: (0.92, 0.87, 0.97)},
            {0: (0.5, 0.45, 0.55), 1: (0.55, 0.5, 0.6), 2: (0.52, 0.47, 0.57)}, None,
            higher_is_better=True)  # fmt: skip
    assert g.gap == pytest.approx(-0.4)
    assert decide("PA-md-digit", [(g, None)])[0].verdict == "better"


def test_a_row_at_noise_level_is_not_tested_and_not_counted():
    clear = gap("FVD-md", _scores(160, 185, 165), PAPER, None)
    noisy = gap("FVD-md", _scores(900, 950, 990), PAPER, None)
    calls = decide("FVD-md", [(clear, None), (noisy, "K=1 is at noise level")])
    assert calls[0].verdict == "worse" and calls[0].p_holm == pytest.approx(clear.p)  # m = 1
    assert calls[1].verdict == "within noise" and calls[1].p_holm is None
    assert "not tested, K=1 is at noise level" in calls[1].why and calls[1].mde > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="shares no seed"):
        gap("FVD-md", {5: (1.0, 0.0, 2.0)}, PAPER, None)
    with pytest.raises(ValueError, match="NaN"):
        gap("FVD-md", {0: (math.nan, 0.0, 2.0)}, PAPER, None)
    assert expected_false_calls(18) == pytest.approx(1.8)


def test_seeds_that_agree_exactly_fall_back_to_the_videos_noise():
    g = gap("PA-md-digit", {s: (0.5, 0.4, 0.6) for s in range(3)},
            {s: (0.6, 0.5, 0.7) for s in range(3)}, 0.0, higher_is_better=True)  # fmt: skip
    # sd(d) = 0; se = sqrt(3 x 2 x (0.2 / 3.29)^2) / 3 = 0.0496, not 0 (which would call it)
    assert g.se == pytest.approx(math.sqrt(6 * (0.2 / (2 * 1.6449)) ** 2) / 3, rel=1e-4)
    # gap 0.1 / 0.0496 = 2.02 on 2 degrees of freedom: p = 0.18, not called
    assert g.p == pytest.approx(0.181, abs=2e-3)
    assert decide("PA-md-digit", [(g, None)])[0].verdict == "within noise"
