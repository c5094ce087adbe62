"""Video arrays as results folders keep them: uint8, small, readable without torch's
training code (reports import this, not the sampler)."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_videos(videos: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, F, H, W) in [-1, 1] -> the same layout in uint8 (0..255): samples kept small."""
    x = torch.as_tensor(videos).float().clamp(-1, 1)
    return ((x + 1) * 127.5).round().byte().cpu().numpy()


def rgb_frames(video: np.ndarray) -> np.ndarray:
    """One uint8 video (C, F, H, W), C = 1 or 3 -> its frames (F, H, W, 3), grey as RGB."""
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, F, H, W) uint8 video with C = 1 or 3, got "
                         f"{video.dtype} {video.shape}")  # fmt: skip
    x = np.repeat(video, 3, axis=0) if video.shape[0] == 1 else video
    return np.transpose(x, (1, 2, 3, 0))
