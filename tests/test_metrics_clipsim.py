"""CLIPSIM through torchmetrics' CLIPScore on a tiny random CLIP written to a temp dir."""

import pytest
import torch
from tiny_models import save_tiny_clip, save_tiny_clip_processor

from harness.metrics import MetricOptions, VideoSet, compute_metrics, default_metrics
from harness.metrics.clipsim import ClipSim


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return save_tiny_clip_processor(tmp_path_factory.mktemp("clip") / "tiny-clip")


def _reference(path, videos, captions):
    """100 * cos(frame, caption) averaged over all frames, computed with transformers."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(path), CLIPProcessor.from_pretrained(path)
    scores = []
    with torch.no_grad():
        for video, caption in zip(videos, captions):
            frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            frames = frames.expand(3, -1, -1, -1).transpose(0, 1)  # (F, 3, H, W)
            inputs = processor(
                text=[caption], images=list(frames), return_tensors="pt", padding=True
            )
            out = model(**inputs)
            img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
            txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
            scores.append(100 * (img @ txt.T).flatten())
    return max(torch.cat(scores).mean().item(), 0.0)


def test_clipsim_matches_a_direct_computation(clip_path):
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(3, 1, 4, 32, 32, generator=g) * 2 - 1
    captions = ["a 3 moving up", "a 4 moving down", "a 1 moving right"]
    score = ClipSim(clip_path, batch_frames=5)(videos, captions)  # batches split videos
    assert 0 <= score <= 100
    assert score == pytest.approx(_reference(clip_path, videos, captions), abs=1e-3)


def test_registry_uses_clipsim_when_a_clip_folder_is_given(clip_path):
    videos = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    fake = VideoSet(videos, ("a 3 moving up", "a 4 moving down"))
    options = MetricOptions(clip=str(clip_path))
    assert "clipsim" in default_metrics(options) and "pa-md" not in default_metrics(options)
    row = compute_metrics(fake, fake, ["clipsim"], options)
    assert set(row) == {"CLIPSIM"} and 0 <= row["CLIPSIM"] <= 100


def test_missing_or_incomplete_clip_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        ClipSim(save_tiny_clip(tmp_path / "text-only"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        ClipSim(tmp_path / "nowhere")
