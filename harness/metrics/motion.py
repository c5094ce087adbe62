"""Motion gap: does frame-to-frame change look like real motion? (the renoising metric).

For every consecutive frame pair of a video, its change is the mean absolute difference
d_t = mean |x[t+1] - x[t]| / 2 (a fraction of the intensity range). Real moving digits move
1-2 px every frame, so d_t has a characteristic distribution. Generated videos with
stage-boundary artifacts depart from it both ways: repeated or near-frozen frames (the
stutter of frames upsampled from a lower rate whose shared noise was not corrected) give
d_t near 0 in every other pair and larger jumps in between; flicker and reshuffled content
give d_t too large. So

    motion-gap = W1(d_fake, d_real) / mean(d_real)

the 1-Wasserstein distance between the pooled change distributions of the generated and
the real set, in units of the real mean change: 0 for a set that moves like the real one,
larger for any departure (lower is better). Unlike the flicker metric (a second
difference, which frozen or stuttering video makes small), it scores stutter as worse
than real motion. `stutter` is the share of pairs that barely change (d_t below a quarter
of the real median), beside the same share in the real set.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance
from torch import Tensor

STILL = 0.25  # a pair "barely changes" below this fraction of the real median change


def frame_changes(videos: Tensor) -> np.ndarray:
    """Videos (N, C, F, H, W) in [-1, 1], F >= 2 -> changes d (N, F-1), float64."""
    if videos.ndim != 5:
        raise ValueError(f"expected videos (N, C, F, H, W), got {tuple(videos.shape)}")
    if videos.shape[2] < 2:
        raise ValueError(f"motion needs at least 2 frames, got {videos.shape[2]}")
    x = videos.double()
    return ((x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 3, 4)) / 2).cpu().numpy()


def motion_gap(real: np.ndarray, fake: np.ndarray) -> float:
    """W1 between the pooled frame changes (rows: videos) of two sets, over the real mean."""
    scale = float(np.mean(real))
    if scale <= 0:
        raise ValueError("the real videos do not move (mean frame change 0): no motion scale")
    return float(wasserstein_distance(np.ravel(fake), np.ravel(real))) / scale


def stutter(changes: np.ndarray, real: np.ndarray) -> float:
    """Share of consecutive pairs whose change is below STILL x the real median change."""
    return float(np.mean(np.ravel(changes) < STILL * np.median(real)))
