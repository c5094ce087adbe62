"""KVD (unbiased kernel distance), bootstrap intervals and the motion gap: known answers."""

import numpy as np
import pytest
import torch

from harness.data import MovingDigits, collate
from harness.metrics.bootstrap import bootstrap_interval
from harness.metrics.frechet import frechet_distance_of_features
from harness.metrics.kernel import kernel_distance
from harness.metrics.motion import frame_changes, motion_gap, stutter


def test_kvd_is_unbiased_at_small_n_where_the_frechet_distance_is_not():
    rng = np.random.default_rng(0)
    d = 32
    kvd, fd = [], []
    for _ in range(200):  # two samples of the SAME distribution, n < d
        a, b = rng.normal(size=(16, d)), rng.normal(size=(16, d))
        kvd.append(kernel_distance(a, b))
        with pytest.warns(UserWarning, match="rank-deficient"):
            fd.append(frechet_distance_of_features(a, b))
    mean, sem = np.mean(kvd), np.std(kvd) / np.sqrt(len(kvd))
    assert abs(mean) < 3 * sem  # expectation 0: unbiased
    assert min(kvd) < 0 < max(kvd)  # the unbiased estimator straddles zero
    assert min(fd) > 0  # the Fréchet distance of one distribution with itself never is 0
    shifted = [kernel_distance(rng.normal(size=(16, d)), rng.normal(0.5, 1, size=(16, d)))
               for _ in range(50)]  # fmt: skip
    assert np.mean(shifted) > 10 * sem  # a real difference stands out


def test_kvd_checks_its_input():
    with pytest.raises(ValueError, match="same shape"):
        kernel_distance(np.zeros((4, 3)), np.zeros((5, 3)))


def test_bootstrap_interval_covers_the_sampling_spread():
    rng = np.random.default_rng(1)

    def mean_gap(a, b):
        return float(b.mean() - a.mean())

    a, b = rng.normal(size=(200, 1)), rng.normal(1.0, 1, size=(200, 1))
    lo, hi = bootstrap_interval(mean_gap, a, b, draws=400)
    # known answer: the gap's standard error is sqrt(2 / 200) = 0.1, a 90 % interval +-0.16
    assert lo < mean_gap(a, b) < hi
    assert hi - lo == pytest.approx(2 * 1.645 * 0.1, rel=0.2)
    assert bootstrap_interval(mean_gap, a, b, draws=400) == (lo, hi)  # seeded: repeatable


def test_bootstrap_interval_contains_a_biased_estimate():
    """Resampling repeats rows, which inflates a Fréchet distance; the interval must still
    hold the estimate itself (the spread of the draws is placed around it)."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(80, 16)), rng.normal(size=(80, 16))
    point = frechet_distance_of_features(a, b)
    lo, hi = bootstrap_interval(frechet_distance_of_features, a, b, draws=100)
    assert lo < point < hi


def _real(n, seed, frames=16):
    data = MovingDigits(num_videos=n, frames=frames, size=32, seed=seed)
    return collate([data[i] for i in range(n)])["video"]


@pytest.fixture(scope="module")
def sets():
    return _real(64, 1), _real(64, 2)


def test_real_motion_scores_about_the_same_as_real(sets):
    real, other = sets
    gap = motion_gap(frame_changes(real), frame_changes(other))
    assert gap < 0.15
    assert stutter(frame_changes(other), frame_changes(real)) < 0.05


def test_duplicated_frame_pairs_score_worse_than_real(sets):
    real, other = sets
    stuttering = other.clone()
    stuttering[:, :, 1::2] = stuttering[:, :, 0::2]  # every frame pair repeated
    gap = motion_gap(frame_changes(real), frame_changes(stuttering))
    assert gap > 3 * motion_gap(frame_changes(real), frame_changes(other)) and gap > 0.4
    assert stutter(frame_changes(stuttering), frame_changes(real)) > 0.4


def test_frozen_video_scores_worse_than_real(sets):
    real, other = sets
    frozen = other[:, :, :1].expand_as(other).clone()
    assert motion_gap(frame_changes(real), frame_changes(frozen)) == pytest.approx(1.0)


def test_shuffled_frames_score_worse_than_real(sets):
    real, other = sets
    g = torch.Generator().manual_seed(0)
    shuffled = other[:, :, torch.randperm(other.shape[2], generator=g)]
    gap = motion_gap(frame_changes(real), frame_changes(shuffled))
    assert gap > 3 * motion_gap(frame_changes(real), frame_changes(other)) and gap > 0.4
