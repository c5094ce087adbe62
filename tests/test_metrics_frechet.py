import numpy as np
import pytest
import scipy.linalg
import torch

from harness.metrics.frechet import (
    GaussianStats,
    frechet_distance,
    frechet_distance_of_features,
    gaussian_stats,
    trace_sqrt_product,
)


def _stats(mu, cov, n=1000):
    return GaussianStats(np.asarray(mu, float), np.asarray(cov, float), n)


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_the_closed_form():
    # W2^2 of diagonal Gaussians = ||mu_a - mu_b||^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    got = frechet_distance(_stats(mu_a, np.diag(var_a)), _stats(mu_b, np.diag(var_b)))
    assert got == pytest.approx(expected, rel=1e-12)  # 1 + 6.25 + 4 + 1 = 12.25
    assert expected == pytest.approx(12.25)


def test_non_commuting_covariances_match_a_direct_float64_computation():
    rng = np.random.default_rng(0)
    for d in (2, 5, 16):
        ca, cb = _random_spd(rng, d), _random_spd(rng, d)
        assert not np.allclose(ca @ cb, cb @ ca)
        mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
        root_a = scipy.linalg.sqrtm(ca).real
        cross = scipy.linalg.sqrtm(root_a @ cb @ root_a).real
        expected = ((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * cross)
        got = frechet_distance(_stats(mu_a, ca), _stats(mu_b, cb))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-10)
        # symmetric in its arguments, zero for identical Gaussians
        assert frechet_distance(_stats(mu_b, cb), _stats(mu_a, ca)) == pytest.approx(got, rel=1e-9)
        assert frechet_distance(_stats(mu_a, ca), _stats(mu_a, ca)) == pytest.approx(0, abs=1e-9)


def test_trace_sqrt_product_survives_singular_and_tiny_negative_eigenvalues():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 2))
    singular = v @ v.T - 1e-15 * np.eye(6)  # rank 2, slightly indefinite from round-off
    value = trace_sqrt_product(singular, singular)
    assert np.isfinite(value) and value == pytest.approx(np.trace(v @ v.T), rel=1e-6)


def test_sample_estimate_converges_to_the_population_value():
    rng = np.random.default_rng(2)
    d = 4
    ca, cb = _random_spd(rng, d), _random_spd(rng, d)
    mu_a, mu_b = np.zeros(d), np.full(d, 0.5)
    exact = frechet_distance(_stats(mu_a, ca), _stats(mu_b, cb))
    xa = rng.multivariate_normal(mu_a, ca, size=200_000)
    xb = rng.multivariate_normal(mu_b, cb, size=200_000)
    assert frechet_distance_of_features(xa, torch.from_numpy(xb)) == pytest.approx(exact, rel=0.02)


def test_statistics_are_float64_and_unbiased():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=torch.float32)
    s = gaussian_stats(x)
    assert s.mu.dtype == np.float64 and s.cov.dtype == np.float64 and s.n == 3 and s.dim == 2
    np.testing.assert_allclose(s.mu, [2.0, 4.0])
    np.testing.assert_allclose(s.cov, np.cov(x.numpy().astype(np.float64), rowvar=False))


def test_too_few_samples_is_an_error_and_few_samples_a_warning():
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.warns(UserWarning, match="rank-deficient"):
        gaussian_stats(np.random.default_rng(0).normal(size=(5, 8)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(_stats([0.0], [[1.0]]), _stats([0.0, 0.0], np.eye(2)))
