import math

import pytest
import torch

from harness.engine.forms import FORMS
from harness.engine.pyramid import (
    downsample,
    lambda_max,
    make_plan,
    restart_time,
    stage_data,
    uniform_plan,
    upsample,
    upsample_matrix,
)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("frames", [1, 2, 3, 8])
def test_down_inverts_up(mode, frames, gen):
    y = torch.randn(2, 3, frames, 4, 5, generator=gen, dtype=torch.float64)
    x = upsample(y, mode)
    assert x.shape == (2, 3, 2 * frames, 4, 5)
    torch.testing.assert_close(downsample(x), y, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_matrix_is_the_operator(mode, gen):
    y = torch.randn(2, 1, 5, 1, 1, generator=gen, dtype=torch.float64)
    u = upsample_matrix(5, mode)
    assert u.shape == (10, 5)
    torch.testing.assert_close(upsample(y, mode).flatten(), (y.reshape(2, 5) @ u.T).flatten())


def test_nearest_repeats_and_downsample_averages():
    y = torch.arange(3.0).reshape(1, 1, 3, 1, 1)
    assert upsample(y, "nearest").flatten().tolist() == [0, 0, 1, 1, 2, 2]
    x = torch.tensor([1.0, 3.0, 4.0, 8.0]).reshape(1, 1, 4, 1, 1)
    assert downsample(x).flatten().tolist() == [2.0, 6.0]


def test_linear_upsample_is_exact_on_linear_motion():
    # frame i of the coarse video covers fine frames 2i, 2i+1 (centres at 2i + 0.5)
    y = (3.0 + 2.0 * torch.arange(6.0)).reshape(1, 1, 6, 1, 1)
    fine_t = (torch.arange(12.0) - 0.5) / 2
    torch.testing.assert_close(upsample(y, "linear").flatten(), 3.0 + 2.0 * fine_t)


def test_lambda_max():
    assert lambda_max(4, "nearest") == pytest.approx(2.0, abs=1e-12)
    assert lambda_max(1, "linear") == pytest.approx(2.0, abs=1e-12)
    # any U with Down U = I is U = N + D with N^T D = 0, so U^T U = 2I + D^T D:
    # a non-trivial linear interpolation has lambda_max strictly above 2
    for f in (2, 4, 8):
        u = upsample_matrix(f, "linear")
        assert lambda_max(f, "linear") == pytest.approx(float(torch.linalg.eigvalsh(u.T @ u).max()))
        assert lambda_max(f, "linear") > 2.0


def test_snr_rule_reproduces_pyramid_flow_known_answer():
    # Pyramid Flow (spatial 2x2 nearest, lambda = 4): d' = d / (2 (1 - d) + d), d = 1 - u
    for d in [0.1, 0.25, 0.5, 0.8]:
        u_next = restart_time("flow", 1 - d, 4.0)
        assert 1 - u_next == pytest.approx(d / (2 * (1 - d) + d), abs=1e-12)
        u_next = restart_time("flow", 1 - d, 2.0)  # temporal x2: lambda = 2
        assert 1 - u_next == pytest.approx(d / (math.sqrt(2) * (1 - d) + d), abs=1e-12)


def test_uniform_three_stage_flow_known_answer():
    plan = uniform_plan("flow", 16, num_stages=3, total_steps=30)
    assert [s.frames for s in plan.stages] == [4, 8, 16]
    assert [s.steps for s in plan.stages] == [10, 10, 10]
    assert [s.u_end for s in plan.stages] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert plan.stages[0].u_start == 1.0
    assert plan.stages[1].u_start == pytest.approx(0.7388, abs=5e-4)
    assert plan.stages[2].u_start == pytest.approx(0.4142, abs=5e-4)


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_every_jump_halves_snr_by_lambda(name, mode):
    form = FORMS[name]
    plan = make_plan(form, 16, (0.8, 0.5, 0.2), (3, 3, 3, 3), mode)
    for prev, nxt in zip(plan.stages, plan.stages[1:]):
        lam = lambda_max(prev.frames, mode)
        assert float(form.snr(nxt.u_start)) == pytest.approx(
            float(form.snr(prev.u_end)) / lam, rel=1e-9
        )
        assert nxt.u_start > prev.u_end


def test_vanilla_plan():
    plan = make_plan("flow", 16, jump_points=(), steps=(30,))
    assert plan.num_stages == 1
    (s,) = plan.stages
    assert (s.frames, s.u_start, s.u_end, s.steps) == (16, 1.0, 0.0, 30)


def test_plan_round_trips_through_dict():
    plan = make_plan("ddim", 24, (0.7, 0.4), (4, 5, 6), "linear")
    assert make_plan(**plan.to_dict()) == plan
    rows = plan.rows()
    assert [r["frames"] for r in rows] == [6, 12, 24] and rows[1]["snr_start"] < rows[0]["snr_end"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(num_frames=12, jump_points=(0.7, 0.5, 0.2), steps=(1, 1, 1, 1)),
            "not divisible by 2\\^\\(K-1\\)=8",
        ),
        (dict(num_frames=16, jump_points=(0.3, 0.6), steps=(1, 1, 1)), "strictly descending"),
        (dict(num_frames=16, jump_points=(1.2,), steps=(1, 1)), "strictly inside \\(0, 1\\)"),
        (dict(num_frames=16, jump_points=(0.0,), steps=(1, 1)), "strictly inside"),
        (dict(num_frames=16, jump_points=(0.5,), steps=(10,)), "exactly one step count per stage"),
        (dict(num_frames=16, jump_points=(0.5,), steps=(10, 0)), "positive integers"),
        (
            dict(num_frames=16, jump_points=(0.5,), steps=(10, 10), upsample="cubic"),
            "unknown upsample mode",
        ),
    ],
)
def test_invalid_plans_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_plan("flow", **kwargs)


def test_ddim_jump_too_close_to_pure_noise_is_a_clear_error():
    # SNR(0.995) / 2 is below the SD schedule's terminal SNR: no start time exists
    with pytest.raises(ValueError, match="terminal SNR.*closer to u = 0"):
        make_plan("ddim", 8, (0.995,), (5, 5))


def test_unknown_form_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown form"):
        make_plan("edm", 16)
    with pytest.raises(ValueError, match="even frame count"):
        downsample(torch.zeros(1, 1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        upsample(torch.zeros(3, 1, 1))
    plan = make_plan("flow", 8, (0.5,), (2, 2))
    with pytest.raises(ValueError, match="plan was made for 8"):
        stage_data(torch.zeros(1, 1, 16, 1, 1), plan, 0)
