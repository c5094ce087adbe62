"""The codec between videos and the space the backbone works in, chosen once per run.

Three codecs share one small interface, so training, sampling, evaluation and cost never ask
which one a run uses:

- `PixelCodec`: the identity; the backbone sees the videos (C, F, H, W).
- `TinyAutoencoderCodec` (`latent_channels > 0`): the per-frame autoencoder of
  `harness.models.autoencoder`, trained once and cached; latents (C', F, H / 2^d, W / 2^d).
- `PretrainedVAECodec` (`pretrained=`, in `harness.models.pretrained`): the pipeline's VAE;
  latents (C', F', h, w), with F' < F for Wan's temporally compressing VAE.

Interface (every method is cheap until it needs weights; weights load on first use):
- `plan_frames(frames, num_stages) -> int`: the frame count the stage plan runs at (the
  model's frames), with a ValueError naming a valid `frames` when K stages cannot split it;
- `latent_shape(frames, size) -> (C, F', h, w)`: what the backbone sees of one video;
- `training_data(make_videos, device, rank, world, barrier) -> Dataset`: items whose "video"
  is in the backbone's space (call on every rank);
- `decode(latents, device, batch) -> videos`: (N, C, F, H, W) in [-1, 1] on CPU;
- `cached_captions() -> list[str] | None`: captions stored with encoded data, if any.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from harness.models.autoencoder import (
    EncodedDataset,
    TinyCodec,
    autoencoder_weights,
    load_autoencoder,
    recipe_for,
)

if TYPE_CHECKING:
    from harness.common.config import Config

MakeVideos = Callable[[], Dataset]


class Codec(Protocol):
    def plan_frames(self, frames: int, num_stages: int) -> int: ...

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]: ...

    def training_data(
        self,
        make_videos: MakeVideos,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        barrier: Callable[[], None] = lambda: None,
    ) -> Dataset: ...

    def decode(self, latents: Tensor, device: torch.device, batch: int) -> Tensor: ...

    def cached_captions(self) -> list[str] | None: ...


class PixelCodec:
    """The identity: the backbone trains and samples on the videos themselves."""

    def __init__(self, channels: int):
        self.channels = channels

    def plan_frames(self, frames: int, num_stages: int) -> int:
        return frames  # the plan itself checks divisibility by 2^(K-1)

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        return (self.channels, frames, size, size)

    def training_data(self, make_videos, device, rank=0, world=1, barrier=lambda: None):
        return make_videos()

    def decode(self, latents: Tensor, device: torch.device, batch: int) -> Tensor:
        return latents.cpu()

    def cached_captions(self) -> list[str] | None:
        return None


class TinyAutoencoderCodec:
    """The tiny per-frame autoencoder (trained once and cached on first use)."""

    def __init__(self, cfg: Config, progress: bool = True):
        self.recipe = recipe_for(cfg)
        self.channels = self.recipe.latent_channels
        self.progress = progress

    @cached_property
    def net(self) -> TinyCodec:
        return load_autoencoder(self.recipe, progress=self.progress)

    def plan_frames(self, frames: int, num_stages: int) -> int:
        return frames  # no temporal compression

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        spatial = 2**self.recipe.down
        if size % spatial:
            raise ValueError(f"resolution={size} is not divisible by {spatial}")
        return (self.channels, frames, size // spatial, size // spatial)

    def training_data(self, make_videos, device, rank=0, world=1, barrier=lambda: None):
        return EncodedDataset(make_videos(), self.net)  # in memory: the latents are small

    def decode(self, latents: Tensor, device: torch.device, batch: int) -> Tensor:
        return self.net.to(device).decode_batched(latents, batch)

    def cached_captions(self) -> list[str] | None:
        return None


def trained_codec_hash(cfg: Config) -> str | None:
    """The hash of the trained weights cfg's codec decodes with (the tiny autoencoder's:
    committed, cached or trained now), or None for pixels and pretrained VAEs (named by
    their folder in the config)."""
    if cfg.latent_channels and not cfg.pretrained:
        return autoencoder_weights(recipe_for(cfg), progress=False).sha
    return None


def codec_for(cfg: Config, progress: bool = True) -> Codec:
    """The codec `cfg` names: its pretrained pipeline's VAE, the tiny autoencoder, or pixels.
    ValueError naming the conflicting keys when the config cannot use it."""
    if cfg.pretrained:
        from harness.models.pretrained import PretrainedVAECodec

        return PretrainedVAECodec(cfg, progress)
    if cfg.latent_channels:
        if cfg.dataset != "moving-digits" or cfg.channels != 1:
            raise ValueError(
                "latent_channels > 0 (the tiny autoencoder) is for gray (channels=1) "
                "moving-digits without pretrained=; set latent_channels=0"
            )
        return TinyAutoencoderCodec(cfg, progress)
    return PixelCodec(cfg.channels)
