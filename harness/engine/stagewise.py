"""Stage-wise diffusion training examples (docs/method.md sec. 3) and data-noise alignment (sec. 5).

Inside stage k both end points share one noise eps at F_k frames:

    end   x_e = alpha(u_e) x0^(k)           + sigma(u_e) eps
    start x_s = alpha(u_s) Up(x0^(k-1))     + sigma(u_s) eps   (x0^(0) itself for k = 0)

Solving alpha(u_s) X + sigma(u_s) E = x_s, alpha(u_e) X + sigma(u_e) E = x_e
elementwise gives the stage's effective data and noise; the noise cancels
from X, so in closed form (det = alpha_s sigma_e - alpha_e sigma_s < 0):

    X = (sigma_e alpha_s P - sigma_s alpha_e D) / det,   E = eps + alpha_s alpha_e (D - P) / det

with D = x0^(k), P = Up(x0^(k-1)). Training input and target are the form's
own: x_u = alpha(u) X + sigma(u) E, target = form.target(X, E, u).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from harness.engine.forms import Form, get_form
from harness.engine.pyramid import StagePlan, downsample, stage_data, upsample

STAGE_WEIGHTINGS = ("length", "uniform", "steps", "pyramid-flow")


@dataclass(frozen=True)
class StagePath:
    """The straight ODE path of one stage: x_u = alpha(u) data + sigma(u) noise.

    All tensors are (B, C, F_k, H, W); `start`/`end` are the two end points."""

    data: Tensor
    noise: Tensor
    start: Tensor
    end: Tensor


def _check_plan(form: Form, plan: StagePlan, stage: int) -> None:
    if plan.form != form.name:
        raise ValueError(
            f"the plan was made for form {plan.form!r} but form {form.name!r} was given; "
            "stage starts depend on the form's SNR, so rebuild the plan with make_plan"
        )
    if not 0 <= stage < plan.num_stages:
        raise ValueError(f"stage must be in 0..{plan.num_stages - 1}, got {stage}")


def stage_path(
    form: str | Form, plan: StagePlan, x0: Tensor, stage: int, noise: Tensor
) -> StagePath:
    """Effective data X and noise E of `stage` for full-rate videos x0 (B, C, F, H, W)."""
    form = get_form(form)
    _check_plan(form, plan, stage)
    st = plan.stages[stage]
    d = stage_data(x0, plan, stage)
    if noise.shape != d.shape:
        raise ValueError(
            f"noise must be shaped like stage {stage}'s data {tuple(d.shape)}, "
            f"got {tuple(noise.shape)}"
        )
    a_s, s_s = float(form.alpha(st.u_start)), float(form.sigma(st.u_start))
    a_e, s_e = float(form.alpha(st.u_end)), float(form.sigma(st.u_end))
    if stage == 0:
        # both end points carry x0^(0): the system is solved by the data and noise themselves
        data, eps = d, noise
        p = d
    else:
        p = upsample(downsample(d), plan.upsample)
        det = a_s * s_e - a_e * s_s
        data = (s_e * a_s / det) * p - (s_s * a_e / det) * d
        eps = noise + (a_s * a_e / det) * (d - p)
    return StagePath(
        data=data,
        noise=eps,
        start=a_s * p + s_s * noise,
        end=a_e * d + s_e * noise,
    )


def training_example(
    form: str | Form, plan: StagePlan, x0: Tensor, stage: int, u: Tensor, noise: Tensor
) -> tuple[Tensor, Tensor]:
    """Network input x_u and regression target for `stage` at times u (B,) inside it.

    x0: full-rate videos (B, C, F, H, W); noise: (B, C, F_k, H, W), already aligned
    by the caller if alignment is wanted. Deterministic. K = 1 is vanilla training.
    """
    form = get_form(form)
    _check_plan(form, plan, stage)
    st = plan.stages[stage]
    u = torch.as_tensor(u)
    if u.ndim != 1 or u.shape[0] != x0.shape[0]:
        raise ValueError(f"u must have shape (B,)=({x0.shape[0]},), got {tuple(u.shape)}")
    tol = 1e-6
    if bool(((u < st.u_end - tol) | (u > st.u_start + tol)).any()):
        raise ValueError(
            f"u must lie inside stage {stage}'s interval [{st.u_end:.4g}, {st.u_start:.4g}]"
        )
    path = stage_path(form, plan, x0, stage, noise)
    return form.add_noise(path.data, path.noise, u), form.target(path.data, path.noise, u)


# ----------------------------------------------------------------------------- alignment


def align_noise(data: Tensor, noise: Tensor) -> Tensor:
    """Reorder a batch of noises so the total data-to-noise L2 distance is minimal.

    data, noise: (B, ...) of the same shape. Returns noise[perm] where perm solves
    the B x B assignment problem (scipy's linear_sum_assignment), as in
    Immiscible Diffusion. Only the pairing changes, never the noises.
    """
    if data.shape != noise.shape:
        raise ValueError(f"data {tuple(data.shape)} and noise {tuple(noise.shape)} must match")
    cost = torch.cdist(
        data.detach().flatten(1).double().cpu(), noise.detach().flatten(1).double().cpu()
    )
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = torch.as_tensor(cols[np.argsort(rows)], device=noise.device)
    return noise[perm]


# ----------------------------------------------------------------------------- batches


def stage_probabilities(plan: StagePlan, weighting: str = "length") -> Tensor:
    """Probability of training each stage: proportional to its length in u (default),
    uniform, proportional to its sampling steps, or "pyramid-flow": weight 1 for the first
    and last stage and 2 for each stage between (25 / 50 / 25 for K = 3, Pyramid Flow's
    mix; other K is this harness's extension of it). Shape (K,), float64."""
    if weighting == "length":
        w = [s.length for s in plan.stages]
    elif weighting == "uniform":
        w = [1.0] * plan.num_stages
    elif weighting == "steps":
        w = [float(s.steps) for s in plan.stages]
    elif weighting == "pyramid-flow":
        k = plan.num_stages
        w = [1.0 if i in (0, k - 1) else 2.0 for i in range(k)]
    else:
        raise ValueError(f"unknown stage weighting {weighting!r}; choose one of {STAGE_WEIGHTINGS}")
    w = torch.tensor(w, dtype=torch.float64)
    return w / w.sum()


@dataclass(frozen=True)
class TrainingBatch:
    """One stage-wise batch: network input, target, and how it was drawn."""

    stage: int
    frames: int
    u: Tensor  # (B,)
    x_u: Tensor  # (B, C, F_k, H, W)
    target: Tensor  # (B, C, F_k, H, W)


def draw_training_batch(
    form: str | Form,
    plan: StagePlan,
    x0: Tensor,
    generator: torch.Generator | None = None,
    align: bool = True,
    weighting: str = "length",
    stage: int | None = None,
) -> TrainingBatch:
    """Draw a stage (shared by the whole batch), u uniform inside it, aligned noise,
    and build the training example. x0: full-rate videos (B, C, F, H, W).

    All draws use `generator` (on x0's device); give every DDP rank the same
    stage by seeding a separate generator identically (or pass `stage`)."""
    form = get_form(form)
    if stage is None:
        probs = stage_probabilities(plan, weighting)
        stage = int(torch.multinomial(probs, 1, generator=_cpu(generator)).item())
    st = plan.stages[stage]
    b = x0.shape[0]
    r = torch.rand(b, generator=generator, dtype=torch.float64, device=x0.device)
    u = st.u_end + (st.u_start - st.u_end) * r
    data = stage_data(x0, plan, stage)
    noise = torch.randn(data.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    if align:
        noise = align_noise(data, noise)
    x_u, target = training_example(form, plan, x0, stage, u, noise)
    return TrainingBatch(stage=stage, frames=st.frames, u=u.to(x0.dtype), x_u=x_u, target=target)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """multinomial on a CPU tensor needs a CPU generator; reuse it when it is one."""
    if generator is None or generator.device.type == "cpu":
        return generator
    g = torch.Generator()
    g.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
    return g
