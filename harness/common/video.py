"""Video arrays as results folders keep them: uint8, small, readable without torch's
training code (reports import this, not the sampler)."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_videos(videos: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, F, H, W) in [-1, 1] -> the same layout in uint8 (0..255): samples kept small."""
    x = torch.as_tensor(videos).float().clamp(-1, 1)
    return ((x + 1) * 127.5).round().byte().cpu().numpy()
