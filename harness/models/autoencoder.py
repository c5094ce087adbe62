"""A tiny per-frame autoencoder for latent diffusion on CPU, trained once and cached.

`latent_channels > 0` in the config turns it on: every frame (1, H, W) is encoded to
(latent_channels, H / 2^down, W / 2^down) (no temporal compression, so the temporal pyramid
acts on latent frames exactly as on video frames); the backbone trains and samples on the
latents and samples are decoded back to video. Like the embedded evaluator it is trained
deterministically (fixed seed, deterministic algorithms, fresh moving-digits videos with a
seed no training run uses). The CPU recipe's weights are committed (`weights/`, see
`harness.models.cached`); other recipes are cached under
`$TPDIFF_CACHE/autoencoder/<key>.pt`, keyed by a hash of their recipe. Latents are scaled
to unit variance over the training frames (the scale is stored with the weights).
Gaussian noise added to the latents during training (`latent_noise`) keeps the decoder
smooth around the latents a diffusion model produces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from harness.data import MovingDigits
from harness.models import cached
from harness.models.cached import digits, recipe_key

VERSION = 2  # bump when the network or training code changes: old caches are then ignored


@dataclass(frozen=True)
class AutoencoderRecipe:
    """Everything the trained weights depend on; its hash names the cache file."""

    size: int = 16
    digit_size: int = 8
    max_digits: int = 1
    latent_channels: int = 2
    down: int = 1  # stride-2 stages: latents are size / 2^down
    width: int = 32
    steps: int = 800
    batch_size: int = 16  # videos per step (all their frames)
    lr: float = 2e-3
    latent_noise: float = 0.1
    seed: int = 7_001

    def key(self) -> str:
        return recipe_key(self, VERSION, f"ae-s{self.size}-c{self.latent_channels}")

    def dataset(self, num_videos: int, seed: int) -> MovingDigits:
        return digits(self, num_videos, seed, frames=8)


def recipe_for(cfg) -> AutoencoderRecipe:
    """The autoencoder recipe of a config with latent_channels > 0 (its data's shape)."""
    return AutoencoderRecipe(
        size=cfg.resolution,
        digit_size=cfg.digit_size,
        max_digits=cfg.max_digits,
        latent_channels=cfg.latent_channels,
        down=cfg.latent_down,
    )


def codec_for(cfg, progress: bool = True) -> TinyCodec | None:
    """The cached (trained once) autoencoder of `cfg`, or None in pixel space."""
    if not cfg.latent_channels:
        return None
    return load_autoencoder(recipe_for(cfg), progress=progress)


class FrameAutoencoder(nn.Module):
    """frames (N, 1, H, W) in [-1, 1] <-> latents (N, C, H / 2^down, W / 2^down)."""

    def __init__(self, latent_channels: int = 4, down: int = 2, width: int = 32):
        super().__init__()
        enc: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.SiLU()]
        for _ in range(down):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.SiLU()]
            enc += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(width, latent_channels, 1)]
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, width, 3, padding=1), nn.SiLU()]
        for _ in range(down):
            dec += [nn.Upsample(scale_factor=2, mode="nearest")]
            dec += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            dec += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        dec += [nn.Conv2d(width, 1, 3, padding=1)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def encode(self, frames: Tensor) -> Tensor:
        return self.encoder(frames)

    def decode(self, latents: Tensor) -> Tensor:
        """Unclamped output (trained with MSE against [-1, 1] frames; clamp to view)."""
        return self.decoder(latents)


def _frames(data: MovingDigits, start: int, size: int) -> Tensor:
    videos = torch.stack([data[i]["video"][:1] for i in range(start, start + size)])
    return videos.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (B F, 1, H, W)


def train_autoencoder(recipe: AutoencoderRecipe, progress: bool = False) -> tuple[dict, dict]:
    """Train from scratch -> (state_dict, info: train time, scale, held-out L1 / PSNR)."""
    from tqdm.auto import tqdm

    data = recipe.dataset(recipe.steps * recipe.batch_size, recipe.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        torch.use_deterministic_algorithms(True)
        try:
            net = FrameAutoencoder(recipe.latent_channels, recipe.down, recipe.width)
            opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, recipe.lr, total_steps=recipe.steps, pct_start=0.1
            )
            bar = tqdm(range(recipe.steps), desc="autoencoder", disable=not progress)
            for step in bar:
                x = _frames(data, step * recipe.batch_size, recipe.batch_size)
                z = net.encode(x)
                # scale-free noise: relative to the latents' own spread, so it cannot be
                # beaten by growing the latents
                z = z + recipe.latent_noise * z.detach().std() * torch.randn_like(z)
                # MSE, not L1: with ~10 % bright pixels an L1 fit collapses to black frames
                loss = F.mse_loss(net.decode(z), x) + 1e-4 * z.pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            net.eval()
            held = recipe.dataset(256, recipe.seed + 1)
            with torch.no_grad():
                x = _frames(held, 0, 256)
                z = net.encode(x)
                err = (net.decode(z).clamp(-1, 1) - x).abs().mean().item()
                mse = (net.decode(z).clamp(-1, 1) - x).pow(2).mean().item()
                scale = 1.0 / z.std().item()
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
    info = {
        "train_time_s": time.perf_counter() - start,
        "final_loss": loss.item(),
        "scale": scale,
        "heldout_l1": err,
        "heldout_psnr": 10 * torch.log10(torch.tensor(4.0 / mse)).item(),  # range 2
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return net.state_dict(), info


class TinyCodec:
    """A trained FrameAutoencoder as a codec: video (B, 1, F, H, W) in [-1, 1] <-> scaled
    latents (B, C, F, h, w); `latent_shape` like harness.models.latents.LatentCodec."""

    def __init__(self, recipe: AutoencoderRecipe, trained: cached.Trained):
        self.recipe, self.info = recipe, trained.info
        self.net = FrameAutoencoder(recipe.latent_channels, recipe.down, recipe.width)
        self.net.load_state_dict(trained.state_dict)
        self.net.requires_grad_(False).eval()
        self.sha = trained.sha  # the weights' identity
        self.scale = trained.info["scale"]
        self.channels = recipe.latent_channels
        self.spatial = 2**recipe.down

    def to(self, device: torch.device | str) -> TinyCodec:
        self.net.to(device)
        return self

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        if size % self.spatial:
            raise ValueError(f"resolution={size} is not divisible by {self.spatial}")
        return (self.channels, frames, size // self.spatial, size // self.spatial)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        b, _, f, _, _ = video.shape
        device = next(self.net.parameters()).device
        frames = video[:, :1].to(device, torch.float32).permute(0, 2, 1, 3, 4).flatten(0, 1)
        z = self.net.encode(frames) * self.scale
        return z.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        b, _, f, _, _ = latents.shape
        device = next(self.net.parameters()).device
        z = latents.to(device, torch.float32).permute(0, 2, 1, 3, 4).flatten(0, 1)
        frames = self.net.decode(z / self.scale).clamp(-1, 1)
        return frames.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)

    def decode_batched(self, latents: Tensor, batch: int) -> Tensor:
        return torch.cat([self.decode(z).cpu() for z in latents.split(max(batch, 64))])


def autoencoder_weights(
    recipe: AutoencoderRecipe, root: str | Path | None = None, progress: bool = True
) -> cached.Trained:
    """The weights of `recipe`: committed (weights/autoencoder/), cached, or trained now."""

    def train() -> tuple[dict, dict]:
        state_dict, info = train_autoencoder(recipe, progress=progress)
        if progress:
            print(f"autoencoder held-out: L1 {info['heldout_l1']:.4f}, "
                  f"PSNR {info['heldout_psnr']:.1f}")  # fmt: skip
        return state_dict, info

    return cached.obtain("autoencoder", recipe, VERSION, recipe.key(), train, root, progress)


def load_autoencoder(
    recipe: AutoencoderRecipe, root: str | Path | None = None, progress: bool = True
) -> TinyCodec:
    """The autoencoder of `recipe`: the committed weights when weights/manifest.json lists
    it, else the cached ones, training them once first."""
    trained = autoencoder_weights(recipe, root, progress)
    return TinyCodec(recipe, trained)


class EncodedDataset(Dataset):
    """Every video of `videos` encoded once in memory: items with "video" = latents
    (C, F, h, w); `channels`, `frames`, `size` describe the latents."""

    def __init__(self, videos: Dataset, codec: TinyCodec, batch: int = 64):
        latents, self.captions, self.labels = [], [], []
        for start in range(0, len(videos), batch):
            items = [videos[i] for i in range(start, min(start + batch, len(videos)))]
            latents.append(codec.encode(torch.stack([it["video"] for it in items])).cpu())
            self.captions += [it["caption"] for it in items]
            self.labels += [it["labels"] for it in items]
        self.latents = torch.cat(latents)
        _, self.channels, self.frames, self.size, _ = self.latents.shape

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict:
        return {
            "video": self.latents[index],
            "caption": self.captions[index],
            "labels": self.labels[index],
        }
