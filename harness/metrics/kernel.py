"""Kernel video distance (KVD): an unbiased polynomial-kernel MMD between feature sets.

    KVD^2 = E k(r, r') + E k(f, f') - 2 E k(r, f),   k(a, b) = (a . b / d + 1)^3

the KID recipe (Binkowski et al. 2018) applied to video features. The estimator is
torchmetrics' `poly_mmd`, which leaves out the diagonal terms, so its expectation is the
population MMD^2 at any n (it can come out slightly negative when two sets are close).
Unlike the Fréchet distance it is unbiased at small n, which makes it the curve metric when
a run is scored many times on few videos; the Fréchet distance is kept for the final point,
at an n of at least twice the feature dimension.

Features are standardised first with fixed statistics (the evaluator's held-out real
videos), so no dimension dominates the dot product and the scale is the same for every
comparison made with one evaluator.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.image.kid import poly_mmd


def kernel_distance(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray) -> float:
    """Unbiased polynomial-kernel MMD^2 of two feature sets (n, d) of the same n (float64)."""
    real, fake = (torch.as_tensor(np.asarray(x), dtype=torch.float64) for x in (real, fake))
    if real.ndim != 2 or real.shape != fake.shape:
        raise ValueError(
            f"KVD needs two (n, d) feature sets of the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    if len(real) < 2:
        raise ValueError(f"KVD needs at least 2 samples per set, got {len(real)}")
    return float(poly_mmd(real, fake, degree=3, gamma=1.0 / real.shape[1], coef=1.0))
