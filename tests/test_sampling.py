import pytest
import torch
from conftest import random_valid_plans

from harness.engine.forms import FORMS
from harness.engine.oracle import OracleDenoiser
from harness.engine.pyramid import (
    corrective_root,
    jump,
    make_plan,
    stage_data,
    uniform_plan,
    upsample,
    upsample_matrix,
)
from harness.engine.sampler import sample


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("num_stages", [1, 2, 3, 4])
def test_oracle_lands_on_the_data_point(name, mode, num_stages):
    g = torch.Generator().manual_seed(num_stages)
    x_star = torch.randn(1, 2, 16, 3, 3, generator=g, dtype=torch.float64)
    plans = random_valid_plans(name, 16, num_stages, mode, count=4, seed=num_stages)
    plans.append(uniform_plan(name, 16, num_stages, total_steps=30, upsample=mode))
    for plan in plans:
        model = OracleDenoiser(name, plan, x_star)
        out = sample(model, name, plan, (3, 2, 16, 3, 3), generator=g, dtype=torch.float64)
        err = float((out - x_star).abs().max())
        assert err < 1e-4, f"{plan.to_dict()} missed x* by {err}"


def _entry_states(name, mode, x_star, n, renoise=True, seed=0):
    plan = uniform_plan(name, x_star.shape[2], 3, total_steps=6, upsample=mode)
    states = {}
    sample(
        OracleDenoiser(name, plan, x_star),
        name,
        plan,
        (n, *x_star.shape[1:]),
        generator=torch.Generator().manual_seed(seed),
        renoise=renoise,
        dtype=torch.float64,
        callback=lambda k, x: states.__setitem__(k, x.clone()),
    )
    return plan, states


def _assert_marginal(x, mean, std, tol=0.03):
    """x: (N, 1, F, 1, 1) samples; check mean and the F x F covariance against N(mean, std^2 I)."""
    flat = x.flatten(1)
    mu = mean.flatten()
    assert float((flat.mean(0) - mu).abs().max()) < tol * std
    cov = torch.cov(flat.T)
    err = (cov - std**2 * torch.eye(flat.shape[1], dtype=cov.dtype)).abs().max()
    assert float(err) < tol * std**2, f"covariance off by {float(err):.4f} (std^2 = {std**2:.4f})"


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_jump_produces_the_training_marginal(name, mode):
    """x_e drawn from the exact end-of-stage marginal; after the jump the state must be
    alpha(u_s') Up(x0^(k-1)) + sigma(u_s') eps with eps ~ N(0, I) (40k Monte Carlo draws)."""
    form = FORMS[name]
    n = 40_000
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(1, 1, 8, 1, 1, generator=g, dtype=torch.float64)
    plan = make_plan(form, 8, (0.8, 0.55, 0.25), (1, 1, 1, 1), mode)
    for k in range(1, plan.num_stages):
        prev, nxt = plan.stages[k - 1], plan.stages[k]
        d = stage_data(x0, plan, k - 1)
        eps = torch.randn(n, 1, prev.frames, 1, 1, generator=g, dtype=torch.float64)
        x_e = form.alpha(prev.u_end) * d + form.sigma(prev.u_end) * eps
        x_s = jump(x_e, form, plan, k, generator=g)
        _assert_marginal(
            x_s, form.alpha(nxt.u_start) * upsample(d, mode), float(form.sigma(nxt.u_start))
        )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_sampler_enters_every_stage_with_the_training_marginal(mode):
    """The full sampling loop (flow matching: u = 1 is exactly N(0, I)) with the oracle."""
    form = FORMS["flow"]
    x_star = torch.randn(
        1, 1, 8, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    plan, states = _entry_states("flow", mode, x_star, 30_000)
    for k in range(1, plan.num_stages):
        st = plan.stages[k]
        mean = form.alpha(st.u_start) * upsample(stage_data(x_star, plan, k - 1), mode)
        _assert_marginal(states[k], mean, float(form.sigma(st.u_start)))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_without_renoise_repeated_frames_are_correlated(mode):
    x_star = torch.zeros(1, 1, 8, 1, 1, dtype=torch.float64)
    checks = [(True, lambda c: abs(c) < 0.03), (False, lambda c: c > 0.8)]
    if mode == "nearest":  # the known answer 1/3 (below) holds for the repeated frames
        checks.append(("pyramid-flow", lambda c: abs(c - 1 / 3) < 0.03))
    for renoise, check in checks:
        plan, states = _entry_states("flow", mode, x_star, 20_000, renoise=renoise)
        x = states[2].flatten(1)  # 8 frames entering the last stage
        for i in range(0, 8, 2):
            corr = float(torch.corrcoef(x[:, i : i + 2].T)[0, 1])
            assert check(corr), f"renoise={renoise}: corr(frame {i}, {i + 1}) = {corr:.3f}"


def test_vanilla_sampling_is_plain_euler():
    def model(x, u, cond):
        return torch.tanh(x) * u.reshape(-1, 1, 1, 1, 1) + cond

    plan = make_plan("flow", 4, (), (7,))
    out = sample(
        model, "flow", plan, (2, 3, 4, 2, 2), generator=torch.Generator().manual_seed(1), cond=0.3
    )
    x = torch.randn(2, 3, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    for i in range(7):
        u, u_next = 1 - i / 7, 1 - (i + 1) / 7
        x = x + (u_next - u) * model(x, torch.full((2,), u), 0.3)
    torch.testing.assert_close(out, x)


def test_model_sees_each_stage_frame_count_and_batch_times():
    seen = []

    def model(x, u, cond):
        seen.append((x.shape[2], tuple(u.shape), round(float(u[0]), 6)))
        return torch.zeros_like(x)

    plan = uniform_plan("ddim", 8, 3, total_steps=6)
    sample(model, "ddim", plan, (2, 1, 8, 1, 1))
    assert [f for f, _, _ in seen] == [2, 2, 4, 4, 8, 8]
    assert all(shape == (2,) for _, shape, _ in seen)
    assert seen[0][2] == 1.0 and seen[2][2] == pytest.approx(plan.stages[1].u_start, abs=1e-6)


def test_sample_rejects_mismatches():
    plan = uniform_plan("flow", 8)
    with pytest.raises(ValueError, match="made for form 'flow'"):
        sample(lambda x, u, c: x, "ddim", plan, (1, 1, 8, 1, 1))
    with pytest.raises(ValueError, match="asks for 16 frames"):
        sample(lambda x, u, c: x, "flow", plan, (1, 1, 16, 1, 1))


def test_pyramid_flow_renoise_keeps_each_frame_variance_but_not_the_pair_correlation():
    """Known answer (docs/method.md sec. 4): at the SNR rule's starts (nearest: carried^2 /
    target^2 = 1/2) Pyramid Flow's blend gives each frame the training variance but leaves
    repeated frames correlated by 1/2 - gamma / 2 = 1/3; the exact rule leaves 0."""
    x_star = torch.zeros(1, 1, 8, 1, 1, dtype=torch.float64)
    plan, states = _entry_states("flow", "nearest", x_star, 20_000, renoise="pyramid-flow")
    for k in (1, 2):
        x = states[k].flatten(1)
        std = float(FORMS["flow"].sigma(plan.stages[k].u_start))
        assert float((x.std(0) / std - 1).abs().max()) < 0.03


@pytest.mark.parametrize("frames", [1, 3])
def test_pyramid_flow_blend_is_exact_where_pyramid_flow_places_its_jumps(frames):
    """With carried / target = 1/2 (gamma / (1 + gamma) = 1/4) the fixed blend and the exact
    covariance coincide for nearest upsampling; at the SNR rule's 1/2 they do not."""
    u = upsample_matrix(frames, "nearest")
    cov = {r: corrective_root(r, frames, "nearest", 0.5, 1.0) for r in ("exact", "pyramid-flow")}
    cov = {r: m @ m.T for r, m in cov.items()}
    eye = torch.eye(2 * frames, dtype=torch.float64)
    assert torch.allclose(cov["pyramid-flow"] + 0.25 * u @ u.T, eye, atol=1e-12)
    assert torch.allclose(cov["pyramid-flow"], cov["exact"], atol=1e-12)
    half = corrective_root("pyramid-flow", frames, "nearest", 0.5**0.5, 1.0)
    total = half @ half.T + 0.5 * u @ u.T
    assert torch.allclose(total.diagonal(), torch.ones(2 * frames, dtype=torch.float64))
    assert abs(float(total[0, 1]) - 1 / 3) < 1e-12


def test_unknown_renoise_rule_is_a_clear_error():
    plan = uniform_plan("flow", 8, 3)
    with pytest.raises(ValueError, match="renoise must be one of"):
        jump(torch.zeros(1, 1, 2, 1, 1), "flow", plan, 1, renoise="blend")


def test_pyramid_flow_renoise_needs_nearest_upsampling():
    from harness.common.config import Config

    with pytest.raises(ValueError, match="upsample=nearest"):
        Config(renoise="pyramid-flow", upsample="linear")
    with pytest.raises(ValueError, match="upsample=nearest"):
        corrective_root("pyramid-flow", 2, "linear", 0.5, 1.0)
    assert Config(renoise="Pyramid-Flow").renoise == "pyramid-flow"


@pytest.mark.parametrize("num_stages", [2, 3])
def test_tpdiff_starts_from_the_frame_reduced_draw_of_vanilla_noise(num_stages):
    """Paired arms: at one generator seed, TPDiff's stage-0 state is vanilla's starting
    noise at F_0 frames (pair means, K - 1 times) rescaled to unit variance."""
    shape = (512, 1, 16, 2, 2)
    vanilla = uniform_plan("flow", 16, 1, total_steps=2)
    tpdiff = uniform_plan("flow", 16, num_stages, total_steps=6)
    start = {}
    for name, plan in (("vanilla", vanilla), ("tpdiff", tpdiff)):
        sample(lambda x, u, c: torch.zeros_like(x), "flow", plan, shape,
               generator=torch.Generator().manual_seed(7), dtype=torch.float64,
               callback=lambda k, x, name=name: start.setdefault(name, x.clone()))  # fmt: skip
    factor = 2 ** (num_stages - 1)
    assert start["tpdiff"].shape[2] == 16 // factor
    expected = stage_data(start["vanilla"], tpdiff, 0) * factor**0.5
    assert torch.allclose(start["tpdiff"], expected, atol=1e-12)
    # still N(0, I): unit variance and uncorrelated neighbouring frames (8,192 values)
    x = start["tpdiff"]
    assert abs(float(x.var()) - 1) < 0.05 and abs(float(x.mean())) < 0.05
    corr = torch.corrcoef(torch.stack([x[:, :, 0].flatten(), x[:, :, 1].flatten()]))[0, 1]
    assert abs(float(corr)) < 0.05
