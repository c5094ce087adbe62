"""VP diffusion sampled with DDIM (eta = 0), as in SD1.5 / AnimateDiff.

The discrete schedule abar_t (t = 0 .. T-1) comes from diffusers' `DDIMScheduler`
(so it matches the pretrained models). It is made continuous by linear
interpolation of log(abar) over u = (t + 1) / T, with abar = 1 at u = 0:

    u = (t + 1) / T   <->   diffusers timestep t,   u = 0  <->  `set_alpha_to_one`

so DDIM on the grid u = (t + 1) / T reproduces `DDIMScheduler.step` exactly
(checked in the tests), and every u in [0, 1] has a well defined SNR.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler
from torch import Tensor

from harness.engine.forms.base import Form, Time, _as_time

PREDICTIONS = ("epsilon", "v_prediction")


class VPDiffusion(Form):
    """alpha = sqrt(abar(u)), sigma = sqrt(1 - abar(u)); predicts eps (or v = a eps - s x0)."""

    def __init__(
        self,
        name: str = "ddim",
        prediction: str = "epsilon",
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        num_train_timesteps: int = 1000,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
        self.name = name
        self.prediction = prediction
        self.config = dict(
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            num_train_timesteps=num_train_timesteps,
        )
        scheduler = DDIMScheduler(**self.config, clip_sample=False, set_alpha_to_one=True)
        abar = scheduler.alphas_cumprod.to(torch.float64)  # (T,)
        self.num_train_timesteps = num_train_timesteps
        # knots at u = j / T, j = 0 .. T; log abar(0) = 0
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), abar.log()])

    def scheduler(self) -> DDIMScheduler:
        """A diffusers scheduler with this form's discrete schedule (eta = 0, no clipping)."""
        return DDIMScheduler(
            **self.config, clip_sample=False, set_alpha_to_one=True, prediction_type=self.prediction
        )

    def log_abar(self, u: Time) -> Tensor:
        u = _as_time(u)
        if torch.any((u < -1e-12) | (u > 1 + 1e-12)):
            raise ValueError(f"time u must lie in [0, 1], got {u}")
        u = u.clamp(0.0, 1.0)
        knots = self._log_abar.to(u.device)
        t = u * self.num_train_timesteps
        i = t.floor().clamp(max=self.num_train_timesteps - 1).long()
        w = t - i
        return knots[i] * (1 - w) + knots[i + 1] * w

    def alpha(self, u: Time) -> Tensor:
        return (0.5 * self.log_abar(u)).exp()

    def sigma(self, u: Time) -> Tensor:
        return (-torch.expm1(self.log_abar(u))).sqrt()

    def u_at_snr(self, snr: float) -> float:
        if not snr > 0:
            raise ValueError(f"SNR must be positive, got {snr}")
        target = -np.log1p(1.0 / snr)  # log abar with abar / (1 - abar) = snr
        knots = self._log_abar.numpy()
        if target < knots[-1]:
            raise ValueError(
                f"SNR {snr:.4g} is below this schedule's terminal SNR "
                f"{float(self.snr(1.0)):.4g}: no time in [0, 1] reaches it; "
                "move the jump point closer to u = 0"
            )
        # knots decrease; find j with knots[j] >= target >= knots[j + 1]
        j = int(np.searchsorted(-knots, -target, side="right")) - 1
        j = min(max(j, 0), self.num_train_timesteps - 1)
        frac = (knots[j] - target) / (knots[j] - knots[j + 1])
        return float((j + frac) / self.num_train_timesteps)

    def target(self, data: Tensor, noise: Tensor, u: Time) -> Tensor:
        if self.prediction == "epsilon":
            return noise
        a, s = self.coefficients(u, data)
        return a * noise - s * data

    def split(self, x: Tensor, pred: Tensor, u: Time) -> tuple[Tensor, Tensor]:
        a, s = self.coefficients(u, x)
        if self.prediction == "epsilon":
            return (x - s * pred) / a, pred
        # alpha^2 + sigma^2 = 1
        return a * x - s * pred, s * x + a * pred
