import pytest
import torch

from harness.engine.forms import FORMS
from harness.engine.pyramid import make_plan, stage_data, uniform_plan, upsample
from harness.engine.stagewise import (
    align_noise,
    draw_training_batch,
    stage_path,
    stage_probabilities,
    training_example,
)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_k1_is_vanilla_bit_for_bit(name):
    form = FORMS[name]
    plan = make_plan(form, 8, (), (30,))
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(4, 3, 8, 6, 6, generator=g)
    u = torch.rand(4, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 3, 8, 6, 6, generator=g)
    x_u, target = training_example(form, plan, x0, 0, u, noise)
    # the vanilla forward process and target, written out
    a = form.alpha(u).float().reshape(-1, 1, 1, 1, 1)
    s = form.sigma(u).float().reshape(-1, 1, 1, 1, 1)
    assert torch.equal(x_u, a * x0 + s * noise)
    expected = {"flow": noise - x0, "ddim": noise, "ddim-v": a * noise - s * x0}[name]
    assert torch.equal(target, expected)


def _plan_and_data(name, mode, seed=0):
    form = FORMS[name]
    plan = make_plan(form, 16, (0.75, 0.45, 0.2), (2, 2, 2, 2), mode)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 2, 16, 3, 3, generator=g, dtype=torch.float64)
    return form, plan, x0, g


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_path_hits_both_end_points(name, mode):
    form, plan, x0, g = _plan_and_data(name, mode)
    for st in plan.stages:
        noise = torch.randn(3, 2, st.frames, 3, 3, generator=g, dtype=torch.float64)
        d = stage_data(x0, plan, st.index)
        prev = d if st.index == 0 else upsample(stage_data(x0, plan, st.index - 1), mode)
        start = form.alpha(st.u_start) * prev + form.sigma(st.u_start) * noise
        end = form.alpha(st.u_end) * d + form.sigma(st.u_end) * noise
        for u, point in [(st.u_start, start), (st.u_end, end)]:
            x_u, _ = training_example(
                form, plan, x0, st.index, torch.full((3,), u, dtype=torch.float64), noise
            )
            torch.testing.assert_close(x_u, point, rtol=0, atol=1e-12)
        path = stage_path(form, plan, x0, st.index, noise)
        torch.testing.assert_close(path.start, start, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_target_is_the_form_target_of_the_effective_pair(name):
    form, plan, x0, g = _plan_and_data(name, "nearest")
    st = plan.stages[2]
    noise = torch.randn(3, 2, st.frames, 3, 3, generator=g, dtype=torch.float64)
    u = st.u_end + (st.u_start - st.u_end) * torch.rand(3, generator=g, dtype=torch.float64)
    x_u, target = training_example(form, plan, x0, 2, u, noise)
    data, eps = form.split(x_u, target, u)
    path = stage_path(form, plan, x0, 2, noise)
    torch.testing.assert_close(data, path.data)
    torch.testing.assert_close(eps, path.noise)
    # the effective data does not depend on the noise
    other = stage_path(form, plan, x0, 2, torch.zeros_like(noise))
    torch.testing.assert_close(other.data, path.data)


def test_training_example_rejects_bad_input():
    form, plan, x0, _ = _plan_and_data("flow", "nearest")
    noise = torch.zeros(3, 2, 2, 3, 3, dtype=torch.float64)
    st = plan.stages[0]
    with pytest.raises(ValueError, match="inside stage 0's interval"):
        training_example(form, plan, x0, 0, torch.full((3,), 0.1, dtype=torch.float64), noise)
    with pytest.raises(ValueError, match="noise must be shaped like stage 1"):
        training_example(form, plan, x0, 1, torch.full((3,), 0.6, dtype=torch.float64), noise)
    with pytest.raises(ValueError, match="made for form 'flow'"):
        training_example(FORMS["ddim"], plan, x0, 0, torch.full((3,), st.u_start), noise)
    with pytest.raises(ValueError, match="stage must be in 0..3"):
        training_example(form, plan, x0, 4, torch.full((3,), 0.5), noise)


def test_alignment_is_a_permutation_that_shortens_distances():
    g = torch.Generator().manual_seed(3)
    gains, random_gap = [], []
    for _ in range(20):
        data = torch.randn(16, 2, 4, 4, 4, generator=g) * 0.5 + torch.randn(
            16, 1, 1, 1, 1, generator=g
        )
        noise = torch.randn(16, 2, 4, 4, 4, generator=g)
        aligned = align_noise(data, noise)
        # a permutation of the drawn noises, nothing else changed
        match = (aligned.flatten(1)[:, None] == noise.flatten(1)[None]).all(-1)
        assert match.sum(1).eq(1).all() and match.sum(0).eq(1).all()
        d_random = (data - noise).flatten(1).norm(dim=1).mean()
        d_aligned = (data - aligned).flatten(1).norm(dim=1).mean()
        assert d_aligned <= d_random + 1e-6
        gains.append(float(d_random - d_aligned))
        random_gap.append(float(d_random))
    assert sum(gains) / len(gains) > 0.01 * sum(random_gap) / len(random_gap)


def test_alignment_finds_the_optimal_assignment():
    data = torch.tensor([[0.0], [10.0], [20.0]])
    noise = torch.tensor([[19.0], [1.0], [11.0]])
    assert align_noise(data, noise).flatten().tolist() == [1.0, 11.0, 19.0]


def test_stage_probabilities():
    plan = uniform_plan("flow", 16)
    p = stage_probabilities(plan)
    lengths = torch.tensor([s.u_start - s.u_end for s in plan.stages], dtype=torch.float64)
    torch.testing.assert_close(p, lengths / lengths.sum())
    assert stage_probabilities(plan, "uniform").tolist() == pytest.approx([1 / 3] * 3)
    # Pyramid Flow's mix: 25 / 50 / 25 for K = 3; ends 1, middle stages 2 otherwise
    assert stage_probabilities(plan, "pyramid-flow").tolist() == pytest.approx([0.25, 0.5, 0.25])
    five = uniform_plan("flow", 16, 5)
    assert stage_probabilities(five, "pyramid-flow").tolist() == pytest.approx(
        [1 / 8, 2 / 8, 2 / 8, 2 / 8, 1 / 8]
    )
    two = uniform_plan("flow", 16, 2)
    assert stage_probabilities(two, "pyramid-flow").tolist() == pytest.approx([0.5, 0.5])
    # a config names an unknown weighting at construction, not at the first training step
    from harness.common.config import Config

    with pytest.raises(ValueError, match="stage_weighting must be one of"):
        Config(stage_weighting="snr")
    assert Config(stage_weighting="pyramid-flow").stage_weighting == "pyramid-flow"
    with pytest.raises(ValueError, match="unknown stage weighting"):
        stage_probabilities(plan, "snr")


@pytest.mark.parametrize("align", [True, False])
def test_draw_training_batch(align):
    plan = uniform_plan("flow", 8)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, 8, 4, 4, generator=g)
    counts = [0, 0, 0]
    for _ in range(300):
        batch = draw_training_batch("flow", plan, x0, generator=g, align=align)
        st = plan.stages[batch.stage]
        assert batch.x_u.shape == (5, 2, st.frames, 4, 4) == batch.target.shape
        assert bool(((batch.u >= st.u_end - 1e-6) & (batch.u <= st.u_start + 1e-6)).all())
        counts[batch.stage] += 1
    expected = stage_probabilities(plan) * 300
    assert all(abs(c - e) < 4 * e**0.5 for c, e in zip(counts, expected.tolist()))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    b1 = draw_training_batch("flow", plan, x0, generator=g1, align=align)
    b2 = draw_training_batch("flow", plan, x0, generator=g2, align=align)
    assert b1.stage == b2.stage and torch.equal(b1.x_u, b2.x_u)
