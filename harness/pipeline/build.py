"""From a Config to the objects of one run, decided once: `build(cfg) -> Built`.

Everything that differs between a pixel-space run, a tiny-autoencoder run and a pretrained
pipeline is decided here and inside the codec (`harness.models.codec`); train, sample,
evaluate, cost and the studies consume a `Built` and never ask which kind of run it is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from harness.common.config import Config
from harness.data import build_dataset
from harness.data.prepared import MARKER, PreparedVideos, Source, prepared_folder, refresh
from harness.engine.forms import Form, get_form
from harness.engine.pyramid import StagePlan, make_plan
from harness.models.backbones import build_backbone
from harness.models.codec import Codec, codec_for
from harness.models.execution import configure_backbone
from harness.models.text import build_text_encoder


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


@dataclass(frozen=True)
class Built:
    """One run's objects. `dataset` items hold "video" in the backbone's space (latents for a
    latent codec); None when built for sampling only."""

    cfg: Config
    form: Form
    plan: StagePlan
    codec: Codec
    model: TextConditionedModel
    dataset: Dataset | None

    def prompts(self, n: int) -> list[str]:
        """n captions to sample for: unseen moving-digits items (a disjoint seed), or for a
        video folder the folder's own captions (seen in training; read from the codec's
        cache when it holds them, so nothing is decoded)."""
        if self.cfg.dataset == "video-folder":
            cached = self.codec.cached_captions()
            if cached:
                return [cached[i % len(cached)] for i in range(n)]
        offset = 10_007 if self.cfg.dataset == "moving-digits" else 0
        data = build_data(self.cfg, seed_offset=offset)
        return [data[i % len(data)]["caption"] for i in range(n)]


def build(
    cfg: Config,
    device: torch.device | str = "cpu",
    *,
    data: bool = True,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: bool = True,
) -> Built:
    """The run `cfg` names, on `device`: codec, plan, training data (with `data`; call on every
    rank, the codec encodes once and shares it) and the model, initialised from
    `torch.manual_seed(cfg.seed)` or from the pretrained pipeline's weights."""
    codec = codec_for(cfg, progress=progress and rank == 0)
    plan = plan_for(cfg, codec=codec)
    dataset = None
    if data:
        make_videos = lambda: build_data(cfg)  # noqa: E731
        dataset = codec.training_data(make_videos, torch.device(device), rank, world, barrier)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, codec).to(device)
    return Built(cfg, get_form(cfg.form), plan, codec, model, dataset)


def build_model(cfg: Config, codec: Codec | None = None) -> TextConditionedModel:
    """Random initialisation from torch's global RNG (seed it first), or with
    `cfg.pretrained` the pipeline's weights from that local folder."""
    if cfg.pretrained:
        from harness.models.pretrained import load_pretrained

        text, backbone = load_pretrained(cfg)
    else:
        codec = codec or codec_for(cfg)
        channels, _, size, _ = codec.latent_shape(cfg.frames, cfg.resolution)
        text = build_text_encoder(cfg.text_encoder, dim=cfg.text_dim, length=cfg.text_len)
        backbone = build_backbone(
            cfg.backbone,
            size=cfg.size,
            in_channels=channels,
            text_dim=text.dim,
            max_frames=cfg.frames,
            sample_size=size,
        )
    configure_backbone(backbone, cfg.attention, cfg.grad_checkpointing)
    return TextConditionedModel(text, backbone)


def plan_for(cfg: Config, sample_steps: int | None = None, codec: Codec | None = None) -> StagePlan:
    """The stage plan `cfg` trains and samples with (K = 1 for vanilla), at the frame count the
    model runs at (latent frames for a temporally compressing VAE). ValueError naming a valid
    setting when the plan cannot be built."""
    codec = codec or codec_for(cfg, progress=False)
    total = sample_steps or cfg.sample_steps
    if cfg.method == "vanilla":
        return make_plan(cfg.form, codec.plan_frames(cfg.frames, 1), (), (total,), cfg.upsample)
    k = cfg.num_stages
    jumps = cfg.jump_points or tuple(1.0 - (i + 1) / k for i in range(k - 1))
    steps = cfg.stage_steps
    if not steps or sample_steps is not None:
        base, extra = divmod(total, k)
        steps = tuple(base + (1 if i < extra else 0) for i in range(k))
    return make_plan(cfg.form, codec.plan_frames(cfg.frames, k), jumps, steps, cfg.upsample)


def parse_config(args: argparse.Namespace) -> Config:
    """The Config of parsed `config_parser` arguments, its plan checked; ValueError or
    FileNotFoundError naming the bad key, value, plan or file."""
    cfg = Config.from_file(args.config) if args.config else Config()
    cfg = cfg.override(args.overrides)
    plan_for(cfg)  # a plan that cannot be built (jump points, frames per stage) fails here
    return cfg


def video_source(cfg: Config) -> Source:
    """The decoding settings of a video-folder config (what its prepared arrays depend on)."""
    return Source(cfg.data_root, cfg.frames, cfg.resolution, cfg.channels, cfg.frame_stride)


def prepared_base(cfg: Config) -> Path:
    """Where prepared video folders live: `data_cache`, else `<out_dir>/prepared`."""
    return Path(cfg.data_cache) if cfg.data_cache else Path(cfg.out_dir) / "prepared"


def build_data(cfg: Config, seed_offset: int = 0):
    """The videos named by cfg.dataset (seed_offset > 0: a disjoint draw); for a video folder
    its prepared shards when `python -m harness.prepare` has made (or begun) them, first
    brought up to date with the folder (changed shards prepared again, holding the prepared
    folder; under torchrun rank 0 does it and the other ranks wait at a barrier), else the
    folder decoded now."""
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
        source = video_source(cfg)
        prepared = prepared_folder(source, prepared_base(cfg))
        ddp = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not ddp or dist.get_rank() == 0:
            refresh(source, prepared, os.cpu_count() or 1)
        if ddp:
            dist.barrier()
        if (prepared / MARKER).is_file():  # python -m harness.prepare made it: no decoding
            return PreparedVideos(prepared)
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
