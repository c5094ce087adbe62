import pytest
import torch

from harness.data import MovingDigits, collate
from harness.metrics.flicker import flicker, flicker_per_video


def test_known_values():
    static = torch.zeros(2, 1, 6, 4, 4)
    assert flicker(static) == 0.0
    ramp = torch.linspace(-1, 1, 6).view(1, 1, 6, 1, 1).expand(2, 3, 6, 4, 4)
    assert flicker(ramp) == pytest.approx(0.0, abs=1e-6)  # constant change is not flicker
    strobe = torch.tensor([-1.0, 1.0] * 3).view(1, 1, 6, 1, 1).expand(1, 1, 6, 4, 4)
    assert flicker(strobe) == pytest.approx(2.0)  # |1 - 2(-1) + 1| / 2 = 2 everywhere
    assert flicker_per_video(torch.cat([static[:1], strobe])).tolist() == pytest.approx([0, 2])


def test_shuffled_frames_flicker_more_than_real_motion():
    videos = collate([MovingDigits(num_videos=32, frames=16, seed=3)[i] for i in range(32)])[
        "video"
    ]
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([v[:, torch.randperm(16, generator=g)] for v in videos])
    real, mixed = flicker_per_video(videos), flicker_per_video(shuffled)
    assert flicker(shuffled) > 1.5 * flicker(videos)
    assert (mixed > real).float().mean() > 0.9  # per video, not just on average


def test_needs_three_frames():
    with pytest.raises(ValueError, match="at least 3 frames"):
        flicker(torch.zeros(1, 1, 2, 4, 4))
