"""Fréchet distance between two Gaussians fitted to feature sets (the maths behind FID / FVD).

    d^2 = ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)

Statistics are float64. The trace term is computed from symmetric eigendecompositions
(C_a^1/2 first, then the eigenvalues of the symmetric PSD matrix C_a^1/2 C_b C_a^1/2), so it
is real by construction and never goes through a complex `sqrtm`; eigenvalues that round to
slightly below zero are clamped to zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

MIN_SAMPLES = 2  # a covariance needs at least two samples


@dataclass(frozen=True)
class GaussianStats:
    """Mean (d,) and covariance (d, d), float64, of `n` feature vectors."""

    mu: np.ndarray
    cov: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def gaussian_stats(features: torch.Tensor | np.ndarray, what: str = "features") -> GaussianStats:
    """Mean and unbiased (n - 1) covariance of `features` (n, d), computed in float64.

    Raises ValueError for fewer than MIN_SAMPLES rows or non-finite values; warns when
    n <= d, where the covariance is rank-deficient and the distance is strongly biased."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a (n, d) array of feature vectors, got {x.shape}")
    n, d = x.shape
    if n < MIN_SAMPLES:
        raise ValueError(
            f"{what}: a Fréchet distance needs at least {MIN_SAMPLES} samples, got {n}; "
            "evaluate more videos"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN or inf")
    if n <= d:
        warnings.warn(
            f"{what}: {n} samples for {d}-d features; the covariance is rank-deficient and "
            f"the Fréchet distance is biased (use more than {d} samples)",
            UserWarning,
            stacklevel=2,
        )
    return GaussianStats(mu=x.mean(axis=0), cov=np.cov(x, rowvar=False).reshape(d, d), n=n)


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((C_a C_b)^1/2) = tr((C_a^1/2 C_b C_a^1/2)^1/2) for PSD C_a, C_b (float64)."""
    root_a = _psd_sqrt(np.asarray(cov_a, dtype=np.float64))
    inner = root_a @ np.asarray(cov_b, dtype=np.float64) @ root_a
    vals = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(a.mu, a.cov) and N(b.mu, b.cov)."""
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    mean_term = float(np.sum((a.mu - b.mu) ** 2))
    trace_term = float(np.trace(a.cov) + np.trace(b.cov)) - 2.0 * trace_sqrt_product(a.cov, b.cov)
    # the trace term is >= 0 in exact arithmetic; clamp float round-off
    return mean_term + max(trace_term, 0.0)


def frechet_distance_of_features(
    features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray
) -> float:
    """frechet_distance of the Gaussians fitted to two feature sets (n_a, d) and (n_b, d)."""
    return frechet_distance(
        gaussian_stats(features_a, "first set"), gaussian_stats(features_b, "second set")
    )
