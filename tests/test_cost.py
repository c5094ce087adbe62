from dataclasses import replace

import pytest
import torch

from harness.engine.pyramid import make_plan, uniform_plan
from harness.measure.cost import CostSetup, cost_tables, measure_costs
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


def test_compiled_probe_samples_with_the_compiled_module_and_counts_on_the_eager_one():
    import torch._dynamo

    from harness.measure.cost import Probe
    from harness.models.execution import compiled

    setup = CostSetup(backbone="dit", size="tiny", form="flow", frames=4, repeats=1,
                      train_batch=2, compile="eager")  # fmt: skip
    probe = Probe(setup, torch.device("cpu"))
    assert probe.infer is not probe.model and compiled(probe.model, "off") is probe.model
    x = probe.inputs(1, 4)
    with torch.inference_mode():
        assert torch.allclose(probe.infer(*x), probe.model(*x), atol=1e-6)
    # parameters are read on every call: a training step's update reaches the compiled module
    probe.train_step(uniform_plan("flow", 4, 2, total_steps=4), 0, probe.video(2, 4), probe.cond(2))
    with torch.inference_mode():
        assert torch.allclose(probe.infer(*x), probe.model(*x), atol=1e-6)
    assert torch._dynamo.config.recompile_limit >= 16  # 3 frame counts x 2 batches x 2 nets
    plan = uniform_plan("flow", 4, 2, total_steps=4)
    _, summary = measure_costs(setup, plan, torch.device("cpu"))
    _, eager = measure_costs(replace(setup, compile="off"), plan, torch.device("cpu"))
    assert summary["flop_ratio_bound"] == eager["flop_ratio_bound"] > 1


def test_two_compiled_backbones_in_one_process_each_run_their_own_graph():
    from harness.measure.cost import Probe

    probes = [
        Probe(
            CostSetup(backbone=b, size="tiny", form=f, frames=4, compile="eager"),
            torch.device("cpu"),
        )  # fmt: skip
        for b, f in (("dit", "flow"), ("unet", "ddim"))
    ]
    with torch.inference_mode():
        for probe in probes + probes:  # the same wrapper class, called alternately
            x = probe.inputs(1, 4)
            assert torch.allclose(probe.infer(*x), probe.model(*x), atol=1e-6)


def test_the_cost_tables_say_each_backbone_and_phase_as_it_starts(capsys):
    setups = [CostSetup(backbone=b, size="tiny", form=f, frames=8, train_batch=2, repeats=1)
              for b, f in (("dit", "flow"), ("unet", "ddim"))]  # fmt: skip
    stages, plans = cost_tables(torch.device("cpu"), num_stages=2, total_steps=4,
                                setups=setups, throughput_batch=2, progress=True)  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(plans) == 2 and len(lines) == 8  # 2 backbones x 4 phases, one line each
    heads = ("cost [1/2] dit (flow)", "cost [2/2] unet (ddim)")
    for head, chunk in zip(heads, (lines[:4], lines[4:])):
        assert all(line.startswith(head) and line.endswith(" s]") for line in chunk), chunk
        phases = " | ".join(chunk)
        for phase in ("FLOPs (fvcore)", "training steps", "latency mode", "throughput mode"):
            assert phase in phases
    cost_tables(torch.device("cpu"), num_stages=2, total_steps=4, setups=setups[:1])
    assert capsys.readouterr().err == ""  # quiet unless asked
