"""pytest-benchmark suite, apart from the unit tests: `python -m pytest benchmarks
--benchmark-only` (or `nox -s bench`). Times of one machine, kept in .benchmarks/ for
`--benchmark-compare`; the cross-machine regression check on TPDiff/vanilla ratios is
`python -m harness.measure.gate`. Each benchmark carries its MAC count in extra_info.

Setting: each backbone of harness.measure.cost.PAIRS at size `small`, 16 frames at 32x32, the
paper's 3 uniform stages (frames 4 / 8 / 16) and 30 sampling steps, one thread.
"""

from functools import partial

import pytest
import torch

from harness.engine.pyramid import make_plan, uniform_plan
from harness.engine.sampler import sample
from harness.measure.cost import PAIRS, CostSetup, Probe
from harness.measure.flops import count_macs, plan_macs
from harness.models.backbones import build_backbone

FRAMES, SIZE, CHANNELS, TEXT_DIM, TEXT_LEN = 16, 32, 1, 64, 12
STAGE_FRAMES = (4, 8, 16)
FORMS = dict(PAIRS)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=[b for b, _ in PAIRS])
def backbone(request):
    torch.manual_seed(0)
    model = build_backbone(request.param, "small", CHANNELS, TEXT_DIM, FRAMES, SIZE)
    return request.param, model


def inputs(batch, frames):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, CHANNELS, frames, SIZE, SIZE, generator=g),
        torch.rand(batch, generator=g),
        torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g),
    )


@pytest.mark.parametrize("frames", STAGE_FRAMES)
def test_forward_per_stage(benchmark, backbone, frames):
    name, model = backbone
    args = inputs(1, frames)
    benchmark.extra_info["macs"] = count_macs(model, args).macs
    with torch.no_grad():
        benchmark.pedantic(model, args, rounds=10, warmup_rounds=2)


@pytest.mark.parametrize("method", ["vanilla", "tpdiff"])
def test_sampling(benchmark, backbone, method):
    name, model = backbone
    form = FORMS[name]
    plan = (make_plan(form, FRAMES, (), (30,)) if method == "vanilla"
            else uniform_plan(form, FRAMES, 3, total_steps=30))  # fmt: skip
    macs = {f: count_macs(model, inputs(1, f)).macs for f in {s.frames for s in plan.stages}}
    benchmark.extra_info["plan_macs"] = plan_macs(macs, plan)
    cond = inputs(1, FRAMES)[2]
    run = partial(sample, model, form, plan, (1, CHANNELS, FRAMES, SIZE, SIZE), cond=cond,
                  generator=torch.Generator().manual_seed(0), progress=False)  # fmt: skip
    with torch.no_grad():
        videos = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert videos.shape == (1, CHANNELS, FRAMES, SIZE, SIZE)


@pytest.mark.parametrize("stage", ["vanilla", 0, 1, 2])
def test_training_step(benchmark, backbone, stage):
    """One real training step (stage-wise noising with aligned noise, the loss, backward,
    AdamW) on a batch of 8 videos: vanilla at 16 frames, TPDiff in each stage of the paper's
    3-stage plan (4 / 8 / 16 frames)."""
    name, _ = backbone
    probe = Probe(CostSetup(backbone=name, form=FORMS[name]), torch.device("cpu"))
    if stage == "vanilla":
        plan, k = make_plan(FORMS[name], FRAMES, (), (30,)), 0
    else:
        plan, k = uniform_plan(FORMS[name], FRAMES, 3, total_steps=30), stage
    frames = plan.stages[k].frames
    benchmark.extra_info["train_macs"] = (
        3 * 8 * count_macs(probe.model, probe.inputs(1, frames)).macs
    )
    args = (plan, k, probe.video(8, FRAMES), probe.cond(8))
    loss = benchmark.pedantic(probe.train_step, args, rounds=3, warmup_rounds=1)
    assert torch.isfinite(loss)
