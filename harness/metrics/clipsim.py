"""CLIPSIM: the CLIP score of every frame against its video's caption, averaged over frames
and videos (the text-video metric of TPDiff's tables, about 29 for their models).

Uses torchmetrics' `CLIPScore`: 100 * cos(frame, caption) in CLIP space, averaged over all
frames, then clamped at 0 (torchmetrics clamps the mean, not each frame). The CLIP model
and processor come from a local transformers folder (`--clip PATH`), never downloaded:
torchmetrics only accepts hub names it knows or a callable, so a loader callable is passed.
Frames are quantised to uint8 RGB as saved videos are (grayscale repeated to 3 channels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


class _ClipFeatures(nn.Module):
    """A CLIPModel whose get_*_features return the projected embeddings (B, D) as tensors.

    transformers >= 5 returns a ModelOutput with the projection in `pooler_output`, which
    torchmetrics (<= 1.9) cannot normalise; older versions return the tensor itself."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(out) -> Tensor:
        return out if isinstance(out, Tensor) else out.pooler_output

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        return self._tensor(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return self._tensor(out)


def _load_clip(path: Path):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    return _ClipFeatures(model), processor


def check_clip_folder(path: str | Path) -> Path:
    """The folder as a Path; FileNotFoundError naming the expected layout if it is not one."""
    path = Path(path).expanduser()
    needed = ["config.json", "preprocessor_config.json"]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CLIP folder {path} lacks {missing}: expected a transformers CLIPModel folder with "
            "config.json, weights, tokenizer files and preprocessor_config.json (e.g. "
            "openai/clip-vit-base-patch32 saved with save_pretrained); nothing is downloaded"
        )
    return path


class ClipSim:
    """__call__(videos (N, C, F, H, W) in [-1, 1], captions [N]) -> CLIPSIM (float, 0-100)."""

    name = "CLIPSIM"

    def __init__(
        self, path: str | Path, device: str | torch.device = "cpu", batch_frames: int = 64
    ):
        from torchmetrics.multimodal.clip_score import CLIPScore

        self.path = check_clip_folder(path)
        self.device = torch.device(device)
        self.batch_frames = batch_frames
        self.metric = CLIPScore(model_name_or_path=lambda: _load_clip(self.path)).to(self.device)

    @torch.no_grad()
    def __call__(self, videos: Tensor, captions: list[str]) -> float:
        if videos.ndim != 5 or videos.shape[1] not in (1, 3):
            raise ValueError(f"expected videos (N, 1|3, F, H, W), got {tuple(videos.shape)}")
        if len(captions) != len(videos):
            raise ValueError(f"{len(captions)} captions for {len(videos)} videos")
        n, _, f = videos.shape[:3]
        frames = ((videos.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = frames.expand(-1, 3, -1, -1, -1).transpose(1, 2).flatten(0, 1)  # (N F, 3, H, W)
        texts = [c for c in captions for _ in range(f)]  # caption of every frame
        self.metric.reset()
        for i in range(0, n * f, self.batch_frames):
            self.metric.update(
                frames[i : i + self.batch_frames].to(self.device), texts[i : i + self.batch_frames]
            )
        return float(self.metric.compute())
