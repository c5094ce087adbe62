import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from harness.engine.forms import FORMS, get_form


@pytest.mark.parametrize("name", sorted(FORMS))
def test_schedule_end_points(name):
    form = FORMS[name]
    assert float(form.alpha(0.0)) == 1.0 and float(form.sigma(0.0)) == 0.0
    assert float(form.sigma(1.0)) > 0.99
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    snr = form.snr(u[1:])
    assert torch.all(snr[1:] < snr[:-1]), "SNR must decrease with u"


def test_flow_schedule_closed_form():
    u = torch.rand(50, dtype=torch.float64)
    form = FORMS["flow"]
    assert torch.equal(form.alpha(u), 1 - u) and torch.equal(form.sigma(u), u)
    assert float(form.alpha(1.0)) == 0.0


@pytest.mark.parametrize("name", ["ddim", "ddim-v"])
def test_vp_schedule_matches_diffusers_on_its_grid(name):
    form = FORMS[name]
    abar = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    ).alphas_cumprod
    t = torch.arange(1000)
    u = (t + 1).double() / 1000
    torch.testing.assert_close(form.alpha(u) ** 2, abar.double(), rtol=1e-12, atol=0)
    torch.testing.assert_close(
        form.alpha(u) ** 2 + form.sigma(u) ** 2, torch.ones(1000, dtype=torch.float64)
    )


@pytest.mark.parametrize("name", sorted(FORMS))
def test_u_at_snr_inverts_snr(name):
    form = FORMS[name]
    for u in [0.003, 0.1, 0.3333, 0.5, 0.77, 0.95, 0.999]:
        assert form.u_at_snr(float(form.snr(u))) == pytest.approx(u, abs=1e-9)


def test_vp_snr_below_terminal_is_an_error():
    form = FORMS["ddim"]
    with pytest.raises(ValueError, match="terminal SNR"):
        form.u_at_snr(float(form.snr(1.0)) / 3)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_split_inverts_target(name, gen):
    form = FORMS[name]
    data = torch.randn(4, 2, 3, 2, 2, generator=gen, dtype=torch.float64)
    noise = torch.randn(4, 2, 3, 2, 2, generator=gen, dtype=torch.float64)
    u = torch.tensor([0.05, 0.4, 0.7, 0.98], dtype=torch.float64)
    x = form.add_noise(data, noise, u)
    d, n = form.split(x, form.target(data, noise, u), u)
    torch.testing.assert_close(d, data)
    torch.testing.assert_close(n, noise)


def test_forward_process_matches_diffusers(gen):
    x0 = torch.randn(3, 4, 2, 5, 5, generator=gen)
    eps = torch.randn(3, 4, 2, 5, 5, generator=gen)
    t = torch.tensor([0, 417, 999])
    ddpm = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ours = FORMS["ddim"].add_noise(x0, eps, (t + 1).double() / 1000)
    torch.testing.assert_close(ours, ddpm.add_noise(x0, eps, t), rtol=1e-6, atol=1e-6)
    v_ref = ddpm.get_velocity(x0, eps, t)
    v_ours = FORMS["ddim-v"].target(x0, eps, (t + 1).double() / 1000)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-6, atol=1e-6)

    fm = FlowMatchEulerDiscreteScheduler()
    fm.set_timesteps(10)
    ts = fm.timesteps[[0, 4, 9]]
    sig = fm.sigmas[[0, 4, 9]]
    ref = torch.stack(
        [fm.scale_noise(x0[i : i + 1], ts[i : i + 1], eps[i : i + 1])[0] for i in range(3)]
    )
    torch.testing.assert_close(FORMS["flow"].add_noise(x0, eps, sig.double()), ref)


def _model(x, u):
    """A fixed nonlinear stand-in network."""
    return torch.sin(3 * x) * (0.5 + u.reshape(-1, 1, 1, 1, 1)) + 0.1 * x


@pytest.mark.parametrize("name,prediction", [("ddim", "epsilon"), ("ddim-v", "v_prediction")])
def test_ddim_step_equals_diffusers(name, prediction, gen):
    form = FORMS[name]
    sched = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type=prediction,
    )
    sched.set_timesteps(12)
    x_ref = torch.randn(2, 3, 4, 4, 4, generator=gen, dtype=torch.float64)
    x = x_ref.clone()
    step = 1000 // 12
    for t in sched.timesteps.tolist():
        u, u_next = (t + 1) / 1000, max(t - step + 1, 0) / 1000
        u_vec = torch.full((2,), u, dtype=torch.float64)
        x_ref = sched.step(_model(x_ref, u_vec), t, x_ref).prev_sample
        x = form.step(x, _model(x, u_vec), u, u_next)
    torch.testing.assert_close(x, x_ref, rtol=1e-5, atol=1e-5)


def test_euler_step_equals_diffusers(gen):
    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(15)
    x_ref = torch.randn(2, 3, 4, 4, 4, generator=gen)
    x = x_ref.clone()
    sig = sched.sigmas.tolist()
    for i, t in enumerate(sched.timesteps):
        u_vec = torch.full((2,), sig[i])
        x_ref = sched.step(_model(x_ref, u_vec), t, x_ref).prev_sample
        x = FORMS["flow"].step(x, _model(x, u_vec), sig[i], sig[i + 1])
    torch.testing.assert_close(x, x_ref, rtol=1e-5, atol=1e-5)


def test_unknown_form_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown form 'rectified'.*ddim.*flow"):
        get_form("rectified")


def test_vp_u_at_snr_matches_closed_form_log_linear():
    form = FORMS["ddim"]
    snr = 0.37
    u = form.u_at_snr(snr)
    abar = float(form.alpha(u)) ** 2
    assert abar / (1 - abar) == pytest.approx(snr, rel=1e-10)
    assert math.isfinite(u) and 0 < u < 1
