"""From a Config to the objects it names: dataset, text-conditioned model, device."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.backbones import build_backbone
from harness.config import Config
from harness.data import build_dataset
from harness.gpu import configure_backbone
from harness.text import build_text_encoder


class TextConditionedModel(nn.Module):
    """Text encoder + video backbone: forward(x (B, C, F, H, W), u (B,), ids (B, L)) -> target.

    `tokenize(captions)` turns captions into the `ids` this module takes, so one
    module (and one DDP wrapper) owns every trainable parameter. (For a pretrained
    pipeline the frozen encoder runs in `tokenize`: the `ids` are embeddings (B, L, D).)"""

    def __init__(self, text: nn.Module, backbone: nn.Module):
        super().__init__()
        self.text = text
        self.backbone = backbone

    def tokenize(self, captions: list[str]) -> Tensor:
        return self.text.tokenize(captions)

    def forward(self, x: Tensor, u: Tensor, ids: Tensor) -> Tensor:
        return self.backbone(x, u, self.text(ids))


def build_model(cfg: Config) -> TextConditionedModel:
    """Random initialisation from torch's global RNG (seed it first), or with
    `cfg.pretrained` the pipeline's weights from that local folder (harness.pretrained)."""
    if cfg.pretrained:
        from harness.pretrained import load_pretrained

        text, backbone = load_pretrained(cfg)
    else:
        text = build_text_encoder(cfg.text_encoder, dim=cfg.text_dim, length=cfg.text_len)
        latent = cfg.latent_channels > 0  # tiny autoencoder: the backbone sees latents
        backbone = build_backbone(
            cfg.backbone,
            size=cfg.size,
            in_channels=cfg.latent_channels if latent else cfg.channels,
            text_dim=text.dim,
            max_frames=cfg.frames,
            sample_size=cfg.resolution // 2**cfg.latent_down if latent else cfg.resolution,
        )
    configure_backbone(backbone, cfg.attention, cfg.grad_checkpointing)
    return TextConditionedModel(text, backbone)


def build_data(cfg: Config, seed_offset: int = 0):
    """The training dataset named by cfg.dataset (seed_offset > 0: a disjoint draw)."""
    shape = dict(frames=cfg.frames, size=cfg.resolution, channels=cfg.channels)
    if cfg.dataset == "moving-digits":
        return build_dataset(
            "moving-digits",
            num_videos=cfg.num_videos,
            seed=cfg.seed + seed_offset,
            max_digits=cfg.max_digits,
            digit_size=cfg.digit_size,
            **shape,
        )
    if cfg.dataset == "video-folder":
        if not cfg.data_root:
            raise ValueError("dataset=video-folder needs data_root=FOLDER (videos + captions.csv)")
        return build_dataset(
            "video-folder",
            root=cfg.data_root,
            stride=cfg.frame_stride,
            cache_dir=cfg.data_cache or None,
            **shape,
        )
    return build_dataset(cfg.dataset)  # raises with the list of valid names


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        spec = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif spec == "cuda":
        spec = f"cuda:{local_rank}"
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but no CUDA device is visible; use device=cpu")
    return device


def git_revision() -> str:
    """Commit of the harness checkout (with '+dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
