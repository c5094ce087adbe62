"""Vanilla and temporal-pyramid sampling over a stage plan (docs/method.md sec. 2, 4).

A model is any callable `model(x, u, cond) -> prediction` with x shaped
(B, C, F_k, H, W) at the current stage's frame count, u of shape (B,) and the
form's target as output. K = 1 plans are ordinary (vanilla) sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from harness.engine.forms import Form, get_form
from harness.engine.pyramid import StagePlan, jump, stage_data

Model = Callable[[Tensor, Tensor, Any], Tensor]


def autocast_model(model: Model, device: torch.device | str) -> Model:
    """`model` run under bf16 autocast on CUDA (unchanged elsewhere), returning float32.

    Only the network runs in bf16: the sampler state, the solver steps and the
    jump between stages stay in float32."""
    device = torch.device(device)
    if device.type != "cuda":
        return model

    def call(x: Tensor, u: Tensor, cond: Any) -> Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x, u, cond).float()

    return call


def stage_times(u_start: float, u_end: float, steps: int) -> list[float]:
    """steps + 1 times, uniform in u, from u_start down to u_end (inclusive)."""
    return [u_start + (u_end - u_start) * i / steps for i in range(steps)] + [u_end]


def initial_noise(
    plan: StagePlan,
    shape: tuple[int, int, int, int, int],
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Stage 0's starting noise, derived from one full-rate draw eps ~ N(0, I) of `shape`
    (B, C, F, H, W): eps itself for a one-stage plan (vanilla), else eps at stage 0's frame
    rate (`stage_data`: K - 1 halvings, each the mean of a frame pair) times
    sqrt(F / F_0). The mean of 2^(K-1) independent unit normals has variance 2^-(K-1), so
    the result is again N(0, I), at F_0 frames; and vanilla and TPDiff sampled with one
    generator seed start from the same draw (paired arms: common random numbers), TPDiff
    from its frame-rate-reduced version."""
    eps = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if plan.num_stages == 1:
        return eps
    first = stage_data(eps, plan, 0)  # (B, C, F_0, H, W)
    return first * math.sqrt(shape[2] / first.shape[2])


@torch.no_grad()
def sample(
    model: Model,
    form: str | Form,
    plan: StagePlan,
    shape: tuple[int, int, int, int, int],
    generator: torch.Generator | None = None,
    cond: Any = None,
    renoise: str | bool = "exact",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """Sample videos of the final `shape` (B, C, F, H, W) by running every stage of `plan`.

    Stage 0 starts from N(0, I) at F_0 frames (`initial_noise`: the full-rate draw at F_0
    frames, so vanilla and TPDiff at one seed share it); between stages `pyramid.jump`
    upsamples and renoises (`renoise`: a rule of pyramid.RENOISE_RULES).
    `callback(k, x)` sees the state entering stage k. Random draws use
    `generator` (on `device`, default the generator's device or CPU).
    """
    form = get_form(form)
    if plan.form != form.name:
        raise ValueError(
            f"the plan was made for form {plan.form!r} but form {form.name!r} was given; "
            "rebuild the plan with make_plan for this form"
        )
    if len(shape) != 5:
        raise ValueError(f"shape must be (B, C, F, H, W), got {tuple(shape)}")
    b, c, f, h, w = shape
    if f != plan.num_frames:
        raise ValueError(f"shape asks for {f} frames but the plan was made for {plan.num_frames}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")

    u_dtype = torch.promote_types(dtype, torch.float32)  # u never in reduced precision
    x = initial_noise(plan, (b, c, f, h, w), generator, dtype, device)
    bar = tqdm(total=plan.total_steps, desc="sampling", disable=not progress, leave=False)
    for stage in plan.stages:
        if stage.index > 0:
            x = jump(x, form, plan, stage.index, generator=generator, renoise=renoise)
        if callback is not None:
            callback(stage.index, x)
        times = stage_times(stage.u_start, stage.u_end, stage.steps)
        for u, u_next in zip(times[:-1], times[1:]):
            u_vec = torch.full((b,), u, dtype=u_dtype, device=device)
            pred = model(x, u_vec, cond)
            x = form.step(x, pred, u, u_next)
            bar.update(1)
    bar.close()
    return x
