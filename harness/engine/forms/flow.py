"""Flow matching / rectified flow (SD3, Flux, Wan): alpha = 1 - u, sigma = u, v = eps - x0."""

from __future__ import annotations

import math

from torch import Tensor

from harness.engine.forms.base import Form, Time, _as_time, _expand


class FlowMatching(Form):
    """Rectified flow. The sampler is Euler on dx/du = v, which diffusers'
    `FlowMatchEulerDiscreteScheduler.step` also computes (checked in the tests)."""

    prediction = "velocity"

    def __init__(self, name: str = "flow"):
        self.name = name

    def alpha(self, u: Time) -> Tensor:
        return 1.0 - _as_time(u)

    def sigma(self, u: Time) -> Tensor:
        return _as_time(u).clone()

    def u_at_snr(self, snr: float) -> float:
        # sqrt(snr) = (1 - u) / u
        if not snr > 0:
            raise ValueError(f"SNR must be positive, got {snr}")
        return 1.0 / (1.0 + math.sqrt(snr))

    def target(self, data: Tensor, noise: Tensor, u: Time) -> Tensor:
        return noise - data

    def split(self, x: Tensor, pred: Tensor, u: Time) -> tuple[Tensor, Tensor]:
        u = _expand(_as_time(u), x)
        return x - u * pred, x + (1.0 - u) * pred

    def step(self, x: Tensor, pred: Tensor, u: float, u_next: float) -> Tensor:
        """Euler step x' = x + (u' - u) v."""
        return x + (float(u_next) - float(u)) * pred
