"""The speed gate: its rules on given figures, and that it fails when the pyramid is off."""

import json

import pytest

import harness.measure.gate as gate

FIGURES = {
    "dit": {
        "flop_ratio_bound": 2.152,
        "training_step_flop_ratio": 0.492,
        "inference_speedup": 1.9,
        "measured_over_bound": 0.88,
        "training_step_time_ratio": 0.52,
        "sampling_spread": 0.05,
    }
}


def test_rules_exact_min_max():
    runs = [FIGURES, {"dit": FIGURES["dit"] | {"inference_speedup": 2.1}}]
    baseline = gate.make_baseline(runs, gate.GateSetup(backbones=("dit",)), margin=0.1)
    limits = baseline["backbones"]["dit"]
    assert limits["flop_ratio_bound"] == {"expected": 2.152}
    assert limits["inference_speedup"] == {"min": round(1.9 * 0.9, 4)}  # worst run less 10 %
    assert limits["training_step_time_ratio"] == {"max": round(0.52 * 1.1, 4)}
    table, failures = gate.check(FIGURES, baseline)
    assert failures == [] and table["ok"].all() and len(table) == 5

    # a FLOP ratio is exact: a change in the 5th digit fails; wall-clock ratios have slack
    drift = {"dit": FIGURES["dit"] | {"flop_ratio_bound": 2.1521, "inference_speedup": 1.75}}
    _, failures = gate.check(drift, baseline)
    assert len(failures) == 1 and failures[0].startswith("dit flop_ratio_bound = 2.152")
    slow = {"dit": FIGURES["dit"] | {"inference_speedup": 1.6, "training_step_time_ratio": 0.7}}
    _, failures = gate.check(slow, baseline)
    assert [f.split(" =")[0] for f in failures] == [
        "dit inference_speedup",
        "dit training_step_time_ratio",
    ]


def test_committed_baseline_covers_both_backbones():
    saved = json.loads(gate.BASELINE.read_text())
    assert set(saved["backbones"]) == {"dit", "unet"}
    throughput = {n for n in gate.AT_LEAST if n.startswith("throughput_")}
    measured = {*gate.EXACT, *gate.AT_LEAST, *gate.AT_MOST}
    if not saved["setup"].get("throughput_batch"):  # latency mode only
        measured -= throughput
    for limits in saved["backbones"].values():
        assert set(limits) == measured
        assert limits["inference_speedup"]["min"] > 1.2  # the pyramid's advantage is real


@pytest.mark.slow
def test_gate_fails_naming_inference_speedup_without_the_pyramid(capsys):
    code = gate.main(["--backbones", "dit", "--repeats", "2", "--compile", "off"], pyramid=False)
    out = capsys.readouterr().out
    assert code == 1
    regressed = out.split("GATE FAILED, regressed: ")[1]
    assert "dit inference_speedup" in regressed
    assert "dit flop_ratio_bound = 1, needs == 2.15" in regressed


def test_throughput_figures_get_limits_and_targets_are_reported_not_enforced():
    both = {"dit": FIGURES["dit"] | {"throughput_inference_speedup": 2.05,
                                     "throughput_measured_over_bound": 0.953}}  # fmt: skip
    baseline = gate.make_baseline([both], gate.GateSetup(backbones=("dit",)), margin=0.1)
    assert baseline["backbones"]["dit"]["throughput_measured_over_bound"] == {
        "min": round(0.953 * 0.9, 4)
    }
    # a run in latency mode only: the throughput limits are skipped, not failed
    table, failures = gate.check(FIGURES, baseline)
    assert failures == [] and "throughput_measured_over_bound" not in set(table.figure)
    # the targets: DiT 0.93 at batch 1 (0.88 misses it), 0.95 at batch 8 (0.953 meets it)
    targets = gate.target_table(both).set_index("figure")
    assert targets.loc["measured_over_bound", "target"] == 0.93
    assert not targets.loc["measured_over_bound", "met"]
    assert targets.loc["throughput_measured_over_bound", "met"]
    _, failures = gate.check(both, baseline)
    assert failures == []  # a missed target does not fail the gate (yet)


def test_a_missing_or_torn_baseline_is_one_line_with_exit_2(tmp_path, capsys):
    for content, message in ((None, "no baseline at"), ('{"setup": {', "is not a gate baseline")):
        path = tmp_path / "baseline.json"
        if content is not None:
            path.write_text(content)
        with pytest.raises(SystemExit) as stop:
            gate.main(["--baseline", str(path)])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert path.read_text() == '{"setup": {'  # the torn file is left as it was
