import json

import pandas as pd
import pytest
import torch

from harness.io import write_csv
from harness.report import build, cost_to_reach, main, training_cost


def test_cost_to_reach_interpolates_between_evaluations():
    curve = pd.DataFrame({"quality": [90.0, 50.0, 30.0], "x": [1.0, 2.0, 3.0]})
    assert cost_to_reach(curve, 40.0, "x") == pytest.approx(2.5)
    assert cost_to_reach(curve, 50.0, "x") == pytest.approx(2.0)
    assert cost_to_reach(curve, 95.0, "x") == 1.0  # reached at the first evaluation
    assert cost_to_reach(curve, 10.0, "x") is None


def _curves(tp_quality):
    rows = []
    for variant, qualities, flops in (
        ("vanilla", [80.0, 60.0, 40.0], [2.0, 4.0, 6.0]),
        ("tpdiff", tp_quality, [1.0, 2.0, 3.0]),
    ):
        for step, (q, f) in enumerate(zip(qualities, flops), start=1):
            rows.append(dict(backbone="dit", form="flow", variant=variant, renoise=True,
                             step=step, quality=q, train_flops=f, train_hours=f / 10))  # fmt: skip
    return pd.DataFrame(rows)


def test_training_cost_ratio_known_answer_and_not_reached():
    # TPDiff reaches vanilla's final 40 halfway between its 2nd (50) and 3rd (30) evaluation
    costs = training_cost(_curves([70.0, 50.0, 30.0]))
    assert costs.train_flops_ratio.iloc[0] == pytest.approx(2.5 / 6.0)
    assert costs.train_hours_ratio.iloc[0] == pytest.approx(0.25 / 0.6)
    missed = training_cost(_curves([70.0, 60.0, 45.0]))
    assert not missed.reached.iloc[0] and pd.isna(missed.train_flops_ratio.iloc[0])


def _fake_suite(out, tp_final=30.0):
    """A results folder written the way the paper suite writes it (evals.csv carries each
    run's training FLOPs and compute time at the step; no run folders), known numbers."""
    runs = {"dit-flow-vanilla": ("vanilla", 2.0, [80, 60, 40]),
            "dit-flow-tpdiff": ("tpdiff", 1.0, [70, 50, tp_final]),
            "dit-flow-tpdiff-noalign": ("tpdiff-noalign", 1.0, [75, 55, 45])}  # fmt: skip
    evals = [dict(run=run, backbone="dit", form="flow", variant=variant, step=s, renoise=True,
                  n=8, train_flops=per_step * s, train_wall_s=36.0 * s,
                  **{"FVD-md": q[s - 1]}, **{"PA-md": 0.5}, flicker=0.2, **{"flicker-real": 0.1})
             for run, (variant, per_step, q) in runs.items() for s in (1, 2, 3)]  # fmt: skip
    evals.append(dict(run="dit-flow-tpdiff", backbone="dit", form="flow", variant="tpdiff", step=3,
                      renoise=False, n=8, train_flops=3.0, train_wall_s=108.0,
                      **{"FVD-md": 33.0}, **{"PA-md": 0.4}, flicker=0.9,
                      **{"flicker-real": 0.1}))  # fmt: skip
    write_csv(out / "evals.csv", pd.DataFrame(evals))
    plans = dict(backbone="dit", form="flow", vanilla_sampling_s=2.0, tpdiff_sampling_s=1.0,
                 inference_speedup=2.0, flop_ratio_bound=2.2, measured_over_bound=2 / 2.2,
                 training_step_cost_ratio=0.5, training_step_flop_ratio=0.49)  # fmt: skip
    write_csv(out / "cost_plans.csv", pd.DataFrame([plans]))
    write_csv(out / "cost_stages.csv", pd.DataFrame([dict(backbone="dit", stage="0", macs=1)]))
    strip = {"renoise": torch.zeros(1, 1, 4, 8, 8), "no_renoise": torch.ones(1, 1, 4, 8, 8),
             "captions": ["a 3 moving up"]}  # fmt: skip
    torch.save(strip, out / "renoise_strip.pt")


def test_build_draws_every_table_and_plot_from_files(tmp_path):
    _fake_suite(tmp_path)
    summary = build(tmp_path)
    dit = summary["backbones"]["dit"]
    # flops: vanilla reaches 40 at 6.0; TPDiff (1.0 per step) reaches 40 at step 2.5 -> 2.5 / 6
    assert dit["training_cost_ratio"] == pytest.approx(2.5 / 6.0)
    assert dit["inference_speedup"] == 2.0 and dit["flop_ratio_bound"] == 2.2
    assert dit["tpdiff-noalign_final_FVD-md"] == 45 and dit["no_renoise_flicker"] == 0.9
    for name in ("fig5_quality_vs_flops.png", "fig5_quality_vs_time.png",
                 "fig6_renoise_strip.png", "table1_latency.csv", "table3_alignment.csv",
                 "fig6_renoise.csv", "training_cost.csv", "summary.json", "report.md"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    align = pd.read_csv(tmp_path / "table3_alignment.csv").set_index("alignment")
    assert align.loc["on", "FVD-md"] == 30 and align.loc["off", "FVD-md"] == 45
    report = (tmp_path / "report.md").read_text()
    assert "fig5_quality_vs_flops.png" in report and "1.71" in report
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_not_reached_is_said_plainly(tmp_path):
    _fake_suite(tmp_path, tp_final=41.0)
    assert build(tmp_path)["backbones"]["dit"]["training_cost_ratio"] == "not reached"


def test_report_cli_names_what_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "lacks ['evals.csv', 'cost_plans.csv']" in capsys.readouterr().err


def test_old_evals_without_costs_are_refused_by_name(tmp_path):
    write_csv(tmp_path / "evals.csv", pd.DataFrame([dict(run="x", step=1, renoise=True)]))
    with pytest.raises(ValueError, match=r"lacks the columns \['backbone'.*older harness"):
        build(tmp_path)


def test_report_sets_figures_beside_the_committed_reference(tmp_path):
    ref = tmp_path / "ref"
    _fake_suite(ref)
    (ref / "job.json").write_text(json.dumps(dict(suite="paper", scale="cpu", code="abc", n=8)))
    build(ref)
    mine = tmp_path / "mine"
    _fake_suite(mine, tp_final=35.0)
    (mine / "job.json").write_text(json.dumps(dict(suite="paper", scale="cpu", code="def", n=8)))
    build(mine, reference=ref)
    report = (mine / "report.md").read_text()
    section = report.split("## Beside the committed reference")[1].split("## Summary")[0]
    assert "code `def`" in section and "code `abc`" in section
    row = next(line for line in section.splitlines() if "tpdiff_final_FVD-md" in line)
    assert "35" in row and "30" in row  # this run's figure, then the committed one
    assert "Not comparable" not in section
    (ref / "job.json").write_text(json.dumps(dict(suite="smoke", scale="smoke", code="abc")))
    build(ref)
    build(mine, reference=ref)
    assert "Not comparable" in (mine / "report.md").read_text()
