"""Fréchet video distance in a named feature space.

`fvd(extract, real, fake)` fits Gaussians to `extract(videos)` features of both sets and
returns their Fréchet distance. The feature space is part of the result's name: `FVD-I3D`
(Kinetics-400 I3D, comparable with published numbers when the protocol matches) or `FVD-md`
(the embedded moving-digits evaluator, comparable only with other FVD-md numbers of the
same evaluator key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.metrics.frechet import frechet_distance, gaussian_stats

Extractor = Callable[[Tensor], Tensor]  # videos (N, C, F, H, W) in [-1, 1] -> features (N, d)


@dataclass(frozen=True)
class FVDResult:
    """value: squared Fréchet distance in the `name` feature space of `dim` dimensions."""

    name: str
    value: float
    n_real: int
    n_fake: int
    dim: int


def fvd(extract: Extractor, real: Tensor, fake: Tensor, name: str | None = None) -> FVDResult:
    """FVD between real and fake videos (N, C, F, H, W) in [-1, 1] in `extract`'s space."""
    name = name or getattr(extract, "name", "FVD")
    with torch.no_grad():
        real_stats = gaussian_stats(extract(real), f"{name} real features")
        fake_stats = gaussian_stats(extract(fake), f"{name} generated features")
    return FVDResult(
        name=name,
        value=frechet_distance(real_stats, fake_stats),
        n_real=real_stats.n,
        n_fake=fake_stats.n,
        dim=real_stats.dim,
    )
