"""Temporal flicker: high-frequency frame-to-frame change (the renoising ablation's symptom).

    flicker = mean |x[t+1] - 2 x[t] + x[t-1]| / 2

over videos, channels, interior frames and pixels, for videos in [-1, 1] (so the value is a
fraction of the full intensity range). The second difference ignores constant motion
components that the first difference sees, and it is largest for frame-to-frame jumps that
reverse: noise that repeats over frame pairs, shuffled frames, strobing. Static videos score
0; compare a sample set with its real reference (`flicker-real`), not with a fixed number.
"""

from __future__ import annotations

from torch import Tensor


def flicker_per_video(videos: Tensor) -> Tensor:
    """Videos (N, C, F, H, W) in [-1, 1], F >= 3 -> flicker (N,) float64."""
    if videos.ndim != 5:
        raise ValueError(f"expected videos (N, C, F, H, W), got {tuple(videos.shape)}")
    if videos.shape[2] < 3:
        raise ValueError(f"flicker needs at least 3 frames, got {videos.shape[2]}")
    x = videos.double()
    second = x[:, :, 2:] - 2 * x[:, :, 1:-1] + x[:, :, :-2]  # (N, C, F-2, H, W)
    return second.abs().mean((1, 2, 3, 4)) / 2


def flicker(videos: Tensor) -> float:
    """Mean flicker of a set of videos (N, C, F, H, W) in [-1, 1]."""
    return float(flicker_per_video(videos).mean())
