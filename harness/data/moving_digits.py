"""Moving digits: a procedural video set built from scikit-learn's bundled 8x8 digits.

No downloads. Item i is drawn on the fly from a numpy Generator seeded by (seed, i), so it is
identical in every call and every worker process. A clip holds 1..max_digits digits, each
starting at a random position and moving in one of the 8 `DIRECTIONS` at 1-2 px/frame,
bouncing off the canvas walls. Digits are composited with max() on a black canvas.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

DIRECTIONS = (
    "up",
    "down",
    "left",
    "right",
    "up-left",
    "up-right",
    "down-left",
    "down-right",
)
# (dy, dx) per direction, image coordinates: rows grow downwards.
_STEPS = np.array(
    [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)], dtype=np.int64
)
SPEEDS = (1, 2)  # px/frame along each moving axis


@lru_cache(maxsize=4)
def _digit_bank(digit_size: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """sklearn digits resized once: images (N, S, S) float32 in [0, 1], indices per class 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    images = F.interpolate(images, size=(digit_size, digit_size), mode="bilinear")
    images = images[:, 0].clamp(0, 1).numpy()
    by_class = tuple(np.flatnonzero(digits.target == c) for c in range(10))
    return images, by_class


def _bounce(pos: int, vel: int, limit: int) -> tuple[int, int]:
    """One step along an axis with walls at 0 and limit (reflecting the overshoot)."""
    pos += vel
    if pos < 0:
        pos, vel = -pos, -vel
    elif pos > limit:
        pos, vel = 2 * limit - pos, -vel
    return min(max(pos, 0), limit), vel


class MovingDigits(torch.utils.data.Dataset):
    """Bouncing sklearn digits: item -> {"video": (C, F, H, W) in [-1, 1], "caption", "labels"}.

    Labels: `digit` (0-9, the first digit), `direction` (index into DIRECTIONS, the first
    digit's initial direction) and `num_digits`. A different `seed` gives a different set.
    """

    def __init__(
        self,
        num_videos: int = 4096,
        frames: int = 16,
        size: int = 32,
        channels: int = 1,
        seed: int = 0,
        max_digits: int = 2,
        digit_size: int = 12,
    ):
        checks = [
            (num_videos >= 1, f"num_videos={num_videos} must be >= 1"),
            (frames >= 1, f"frames={frames} must be >= 1"),
            (digit_size >= 1, f"digit_size={digit_size} must be >= 1"),
            (size >= digit_size, f"size={size} must be >= digit_size={digit_size}; "
             "pass a larger size or a smaller digit_size"),
            (channels in (1, 3), f"channels={channels} must be 1 (gray) or 3 (gray repeated)"),
            (seed >= 0, f"seed={seed} must be >= 0 (it seeds numpy's SeedSequence)"),
            (max_digits >= 1, f"max_digits={max_digits} must be >= 1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ValueError(f"MovingDigits: {message}")
        self.num_videos, self.frames, self.size = num_videos, frames, size
        self.channels, self.seed = channels, seed
        self.max_digits, self.digit_size = max_digits, digit_size
        self.images, self.by_class = _digit_bank(digit_size)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict:
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        index %= self.num_videos
        rng = np.random.default_rng((self.seed, index))
        limit = self.size - self.digit_size
        canvas = np.zeros((self.frames, self.size, self.size), dtype=np.float32)  # (F, H, W)
        parts, first = [], None
        for _ in range(int(rng.integers(1, self.max_digits + 1))):
            digit = int(rng.integers(10))
            pool = self.by_class[digit]
            image = self.images[pool[rng.integers(len(pool))]]  # (S, S)
            y, x = (int(v) for v in rng.integers(0, limit + 1, size=2))
            direction = int(rng.integers(len(DIRECTIONS)))
            speed = int(rng.choice(SPEEDS))
            vy, vx = (int(v) * speed for v in _STEPS[direction])
            for f in range(self.frames):
                window = canvas[f, y : y + self.digit_size, x : x + self.digit_size]
                np.maximum(window, image, out=window)
                y, vy = _bounce(y, vy, limit)
                x, vx = _bounce(x, vx, limit)
            parts.append(f"a {digit} moving {DIRECTIONS[direction]}")
            first = first or (digit, direction)
        video = torch.from_numpy(canvas * 2 - 1)[None]  # (1, F, H, W)
        return {
            "video": video.repeat(self.channels, 1, 1, 1),
            "caption": " and ".join(parts),
            "labels": {"digit": first[0], "direction": first[1], "num_digits": len(parts)},
        }
