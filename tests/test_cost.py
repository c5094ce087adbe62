import pytest
import torch

from harness.engine.pyramid import make_plan, uniform_plan
from harness.measure.cost import CostSetup, measure_costs
from harness.measure.flops import plan_macs


@pytest.mark.parametrize("backbone,form", [("dit", "flow"), ("unet", "ddim")])
def test_stage_table_totals_and_bound(backbone, form):
    setup = CostSetup(backbone=backbone, size="tiny", form=form, frames=8, train_batch=2,
                      repeats=1, throughput_batch=2)  # fmt: skip
    plan = uniform_plan(form, 8, 3, total_steps=6)
    table, summary = measure_costs(setup, plan, torch.device("cpu"))
    stages, total = table[table.stage != "total"], table[table.stage == "total"].iloc[0]
    assert list(stages.frames) == [2, 4, 8]
    assert total.plan_macs == stages.plan_macs.sum() == summary["tpdiff_plan_macs"]
    assert total.steps == 6
    assert (stages.plan_macs == stages.steps * stages.macs).all()
    macs = dict(zip(stages.frames, stages.macs))
    assert summary["vanilla_plan_macs"] == plan_macs(macs, make_plan(form, 8, (), (6,)))
    assert summary["flop_ratio_bound"] == pytest.approx(
        summary["vanilla_plan_macs"] / summary["tpdiff_plan_macs"]
    )
    assert summary["flop_ratio_bound"] > 1 and summary["inference_speedup"] > 0
    assert summary["measured_over_bound"] == pytest.approx(
        summary["inference_speedup"] / summary["flop_ratio_bound"]
    )
    assert (stages.flops == 2 * stages.macs).all()
    if backbone == "dit":
        assert (stages.attention_share > 0).all()
    # both modes; achieved GMAC/s per stage = batch x MACs / forward time
    assert summary["latency"]["batch"] == 1 and summary["throughput"]["batch"] == 2
    for mode in ("latency", "throughput"):
        figures = summary[mode]
        assert figures["measured_over_bound"] == pytest.approx(
            figures["inference_speedup"] / summary["flop_ratio_bound"]
        )
        assert set(figures["gmacs_per_s"]) == {"2", "4", "8"}
    assert summary["latency"]["inference_speedup"] == summary["inference_speedup"]
    assert list(stages.gmacs_per_s) == pytest.approx(list(stages.macs / stages.forward_ms / 1e6))
    assert list(stages.gmacs_per_s_b2) == pytest.approx(
        [summary["throughput"]["gmacs_per_s"][str(f)] for f in stages.frames]
    )
