"""The contract every diffusion form follows (docs/method.md sec. 1).

A form is a pair of schedules over continuous time u in [0, 1] (u = 1 noise,
u = 0 data) and a prediction target:

    x_u = alpha(u) * data + sigma(u) * noise

Tensors are videos shaped (B, C, F, H, W) (any trailing shape works); a time
argument is either a Python float or a tensor of shape (B,), broadcast over
the sample's trailing dimensions. Schedule coefficients are evaluated in
float64 and cast to the sample's dtype.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

Time = float | Tensor


def _as_time(u: Time) -> Tensor:
    return torch.as_tensor(u, dtype=torch.float64)


def _expand(coef: Tensor, like: Tensor) -> Tensor:
    """Cast a (B,) or scalar coefficient to `like`'s dtype/device, shaped (B, 1, ..., 1)."""
    coef = coef.to(dtype=like.dtype, device=like.device)
    if coef.ndim == 0:
        return coef
    return coef.reshape(-1, *([1] * (like.ndim - 1)))


class Form(ABC):
    """A diffusion form: schedules, training target, and deterministic ODE step."""

    name: str
    prediction: str

    @abstractmethod
    def alpha(self, u: Time) -> Tensor:
        """Data coefficient alpha(u), float64, same shape as u."""

    @abstractmethod
    def sigma(self, u: Time) -> Tensor:
        """Noise coefficient sigma(u), float64, same shape as u."""

    @abstractmethod
    def u_at_snr(self, snr: float) -> float:
        """Inverse of snr(u): the time whose SNR equals `snr` (SNR is decreasing in u)."""

    @abstractmethod
    def target(self, data: Tensor, noise: Tensor, u: Time) -> Tensor:
        """The network's regression target for x_u = alpha(u) data + sigma(u) noise."""

    @abstractmethod
    def split(self, x: Tensor, pred: Tensor, u: Time) -> tuple[Tensor, Tensor]:
        """Recover (data, noise) from a state x_u and a prediction of the target."""

    def snr(self, u: Time) -> Tensor:
        """Signal-to-noise ratio alpha^2 / sigma^2 (inf at u = 0)."""
        return (self.alpha(u) / self.sigma(u)) ** 2

    def coefficients(self, u: Time, like: Tensor) -> tuple[Tensor, Tensor]:
        """alpha(u), sigma(u) cast and shaped to broadcast against `like`."""
        return _expand(self.alpha(u), like), _expand(self.sigma(u), like)

    def add_noise(self, data: Tensor, noise: Tensor, u: Time) -> Tensor:
        """The forward process x_u = alpha(u) data + sigma(u) noise."""
        a, s = self.coefficients(u, data)
        return a * data + s * noise

    def step(self, x: Tensor, pred: Tensor, u: float, u_next: float) -> Tensor:
        """One deterministic ODE step from time u to u_next (< u).

        Default: DDIM with eta = 0, x' = alpha(u') data_hat + sigma(u') noise_hat,
        which is exact whenever the prediction is.
        """
        data, noise = self.split(x, pred, u)
        return self.add_noise(data, noise, u_next)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, prediction={self.prediction!r})"
