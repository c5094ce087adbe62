"""The exact denoiser of a one-point data set {x*} (docs/method.md sec. 6).

For data concentrated on x*, every stage's effective data X is a known
function of x* (the noise cancels from it, see `stagewise`), so for any state
x_u the effective noise is E = (x_u - alpha(u) X) / sigma(u) and the exact
target is form.target(X, E, u). Sampling with this model must land on x*
through every stage and jump: the end-to-end proof that training targets,
samplers and plans agree. Also used by the `engine` suite as a self-check.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from harness.engine.forms import Form, get_form
from harness.engine.pyramid import StagePlan
from harness.engine.stagewise import stage_path


class OracleDenoiser:
    """model(x, u, cond) -> exact target, for the data set {x_star}; x_star: (1, C, F, H, W)."""

    def __init__(self, form: str | Form, plan: StagePlan, x_star: Tensor):
        self.form = get_form(form)
        self.plan = plan
        self._data = {}  # frames -> (stage index, effective data X of shape (1, C, F_k, H, W))
        for st in plan.stages:
            zero = torch.zeros_like(x_star[:, :, : st.frames])
            self._data[st.frames] = stage_path(self.form, plan, x_star, st.index, zero).data

    def __call__(self, x: Tensor, u: Tensor, cond: Any = None) -> Tensor:
        frames = x.shape[2]
        if frames not in self._data:
            raise ValueError(f"no stage of the plan runs at {frames} frames")
        data = self._data[frames].to(dtype=x.dtype, device=x.device).expand_as(x)
        a, s = self.form.coefficients(u.to(torch.float64), x)
        noise = (x - a * data) / s
        return self.form.target(data, noise, u.to(torch.float64))
