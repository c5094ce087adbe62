"""Latent space: a frozen VAE between videos and the backbone, and the on-disk latent cache.

A pretrained pipeline trains and samples on normalised VAE latents (B, C, F', h, w);
the temporal pyramid acts on latent frames F'. Two VAEs are supported:

- `AutoencoderKLWan` (Wan2.1): temporal compression 4 with a causal first frame,
  1 + 4n video frames <-> 1 + n latent frames; z = (mean - latents_mean) / latents_std.
- `AutoencoderKL` (SD1.5 / AnimateDiff): per-frame 2D, F' = F; z = scaling_factor * mean.

Rule for the plan (`plan_frame_count`): the plan's frame count IS the latent count
F', so a K-stage plan needs F' divisible by 2^(K-1). For Wan that means
frames = 1 + 4 (F' - 1) video frames with F' a multiple of 2^(K-1), e.g. 77 frames
(20 latent) for K = 3. The causal first latent frame is treated like any other
(averaged with latent frame 1 by Down, repeated by Up).

Latents are the posterior mean (no sampling), encoded once per (VAE, data config) into a
folder of float16 shards of `SHARD_SIZE` videos (`harness.data.shards`: `latents_00000.npy`
memory-mapped when read, `latents_00000.json` with its rows, captions, labels and `ids`: the
identities (content hashes) of the source videos it encodes, null for generated data whose
config is its identity), then `index.json` with the provenance and the source folder's
fingerprint (`source`), written last. A killed encoding resumes at the missing shards.
Shards are positional (video i of the dataset), so a changed, added or removed source video
shifts every later item: the shards from the first one whose rows, captions or ids differ
from the dataset's are encoded again (one line says which and why), the earlier ones kept.
The encoding job holds the folder (`harness.common.lock`, waiting for another writer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from harness.common.io import write_json
from harness.common.lock import owned
from harness.data.shards import (
    INDEX,
    check_marker,
    open_shards,
    read_records,
    shard_done,
    shard_files,
    shard_name,
    write_index,
    write_shard,
)

# backbone -> (temporal compression, causal first frame) of its pretrained pipeline's VAE
VAE_FRAMES = {"dit": (4, True), "unet": (1, False)}
SHARD_SIZE = 256  # videos per latent shard


def latent_frame_count(frames: int, temporal: int, causal: bool) -> int:
    """Latent frames of a `frames`-frame video; ValueError when the VAE cannot take it."""
    if temporal == 1:
        return frames
    if causal:
        if (frames - 1) % temporal:
            n = (frames - 1) // temporal
            raise ValueError(
                f"frames={frames}: this VAE (temporal compression {temporal}, causal first frame) "
                f"encodes 1 + {temporal}n video frames; use frames={1 + temporal * n} or "
                f"{1 + temporal * (n + 1)}"
            )
        return 1 + (frames - 1) // temporal
    if frames % temporal:
        raise ValueError(
            f"frames={frames} must be a multiple of the VAE's temporal factor {temporal}"
        )
    return frames // temporal


def video_frame_count(latent: int, temporal: int, causal: bool) -> int:
    """Inverse of `latent_frame_count`: the video frames that encode to `latent` frames."""
    if temporal == 1:
        return latent
    return 1 + temporal * (latent - 1) if causal else temporal * latent


def plan_frame_count(frames: int, num_stages: int, temporal: int, causal: bool) -> int:
    """The plan's frame count (latent frames) for `frames` video frames; ValueError, with the
    nearest valid `frames`, when it is not divisible by 2^(num_stages - 1)."""
    latent = latent_frame_count(frames, temporal, causal)
    factor = 2 ** (num_stages - 1)
    if latent % factor:
        below, above = latent // factor * factor, (latent // factor + 1) * factor
        options = [b for b in (below, above) if b > 0]
        hint = " or ".join(
            f"frames={video_frame_count(n, temporal, causal)} ({n} latent)" for n in options
        )
        raise ValueError(
            f"frames={frames} video frames encode to {latent} latent frames and the temporal "
            f"pyramid runs on latent frames: K={num_stages} stages need a latent count divisible "
            f"by 2^(K-1)={factor}; use {hint}"
        )
    return latent


def vae_geometry(kind: str, config) -> tuple[int, int, bool, int]:
    """(channels, temporal factor, causal first frame, spatial factor) of a diffusers VAE of
    class `kind` with `config` (its config.json as a dict), read without loading weights."""
    if kind == "AutoencoderKLWan":
        temporal = config.get("scale_factor_temporal", 4)
        return config["z_dim"], temporal, True, config.get("scale_factor_spatial", 8)
    if kind == "AutoencoderKL":
        return config["latent_channels"], 1, False, 2 ** (len(config["block_out_channels"]) - 1)
    raise ValueError(f"no latent codec for {kind}; use AutoencoderKLWan or AutoencoderKL")


class LatentCodec:
    """A frozen diffusers VAE: video (B, 3, F, H, W) in [-1, 1] <-> latents (B, C, F', h, w).

    Attributes: `channels` (C), `temporal`, `causal`, `spatial` (compression factors),
    `vae` (the diffusers module, eval mode, float32)."""

    def __init__(self, vae: torch.nn.Module):
        kind = type(vae).__name__
        config = vae.config
        self.channels, self.temporal, self.causal, self.spatial = vae_geometry(kind, config)
        if kind == "AutoencoderKLWan":
            self._mean = torch.tensor(config.latents_mean, dtype=torch.float32)
            self._std = torch.tensor(config.latents_std, dtype=torch.float32)
        else:
            shift = config.shift_factor or 0.0
            self._mean = torch.full((self.channels,), float(shift))
            self._std = torch.full((self.channels,), 1.0 / config.scaling_factor)
        self.kind = kind
        self.vae = vae.requires_grad_(False).eval()

    def to(self, device: torch.device | str) -> LatentCodec:
        self.vae.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def latent_frames(self, frames: int) -> int:
        return latent_frame_count(frames, self.temporal, self.causal)

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        """(C, F', h, w) of a (3, frames, size, size) video."""
        if size % self.spatial:
            raise ValueError(
                f"resolution={size} is not divisible by the VAE's spatial factor {self.spatial}"
            )
        return (
            self.channels,
            self.latent_frames(frames),
            size // self.spatial,
            size // self.spatial,
        )

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, self.channels, 1, 1, 1)
        return self._mean.to(like).reshape(shape), self._std.to(like).reshape(shape)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> normalised posterior means (B, C, F', h, w), float32."""
        b, _, f, _, _ = video.shape
        x = video.to(self.device, torch.float32)
        if self.kind == "AutoencoderKLWan":
            z = self.vae.encode(x).latent_dist.mean
        else:  # per frame: (B*F, 3, H, W)
            frames = x.permute(0, 2, 1, 3, 4).flatten(0, 1)
            z = self.vae.encode(frames).latent_dist.mean
            z = z.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)
        mean, std = self._stats(z)
        return ((z - mean) / std).float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents (B, C, F', h, w) -> video (B, 3, F, H, W) in [-1, 1], float32."""
        z = latents.to(self.device, torch.float32)
        mean, std = self._stats(z)
        z = z * std + mean
        b, _, f, _, _ = z.shape
        if self.kind == "AutoencoderKLWan":
            video = self.vae.decode(z).sample
        else:
            frames = self.vae.decode(z.permute(0, 2, 1, 3, 4).flatten(0, 1)).sample
            video = frames.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)
        return video.float().clamp(-1, 1)

    def decode_batched(self, latents: Tensor, batch: int) -> Tensor:
        """`decode` in chunks of `batch` videos, returned on CPU."""
        return torch.cat([self.decode(z).cpu() for z in latents.split(batch)])


class LatentDataset(Dataset):
    """Cached latents: item -> {"video": (C, F', h, w) float32 latents, "caption", "labels"}.

    Same item contract as the video datasets (the key stays "video" so the training
    loop is unchanged); `channels`, `frames` and `size` describe the latents. Construction
    reads the JSON records only; shards are memory-mapped on first use."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        fix = "rerun python -m harness.prepare (or the training) with the same config to finish it"
        index, self.latents, records = open_shards(self.folder, "latent cache", fix)
        self.meta = index
        self.captions: list[str] = [c for r in records for c in r["captions"]]
        self.labels: list[dict] = [lab for r in records for lab in r["labels"]]
        self.channels, self.frames, height, width = index["shape"]
        if height != width:
            raise ValueError(f"{self.folder}: latents must be square, got {height}x{width}")
        self.size = height

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        latent = torch.from_numpy(self.latents[index])
        return {"video": latent, "caption": self.captions[index], "labels": self.labels[index]}


def _shard_name(k: int) -> str:
    return shard_name("latents", k)


def _encode_shard(folder: Path, k: int, videos: Dataset, rows: range, codec: LatentCodec,
                  batch: int, shape: tuple, ids: list | None) -> None:  # fmt: skip
    """Encode videos `rows` in VAE calls of `batch` and write them as latent shard `k`, with
    the identities `ids` of the dataset's videos (None: generated data)."""
    parts, captions, labels = [], [], []
    for start in range(rows.start, rows.stop, batch):
        items = [videos[i] for i in range(start, min(start + batch, rows.stop))]
        z = codec.encode(torch.stack([item["video"] for item in items]))
        if tuple(z.shape[1:]) != shape:
            raise ValueError(
                f"the VAE encoded a video {tuple(items[0]['video'].shape)} into "
                f"{tuple(z.shape[1:])}, expected {shape}: the VAE's config does not match "
                "its weights"
            )
        parts.append(z.cpu().numpy().astype(np.float16))
        captions += [item["caption"] for item in items]
        labels += [item["labels"] for item in items]
    mine = None if ids is None else ids[rows.start : rows.stop]
    record = dict(rows=[rows.start, rows.stop], captions=captions, labels=labels, ids=mine)
    write_shard(folder, _shard_name(k), np.concatenate(parts), record)


def _difference(record: dict, span: range, ids: list | None, captions: list | None) -> str:
    """Why shard `record` does not hold videos `span` of the dataset now ("" if it does)."""
    for what, now in (("ids", ids), ("captions", captions)):
        if now is None:
            continue
        was, now = record.get(what) or [], now[span.start : span.stop]
        i = next((j for j, (a, b) in enumerate(zip(was, now)) if a != b), None)
        if i is not None:
            kind = "is another video" if what == "ids" else "has another caption"
            return f"video {span.start + i} {kind} (a source clip was changed, added or removed)"
    (a, b), n = record["rows"], span.stop
    if [a, b] != [span.start, span.stop]:
        return f"it held videos {a} to {b - 1}, the dataset has them up to {n - 1} now"
    return ""


def _drop_stale(folder: Path, spans: list[range], videos: Dataset) -> None:
    """Remove the index, and every shard from the first one that does not hold the dataset's
    videos now (later items have shifted), saying so in one line; earlier shards stay."""
    ids, captions = getattr(videos, "identities", None), getattr(videos, "captions", None)
    done = sorted(shard_files(folder, "latents", ".json").values())
    first, why = None, ""
    for k in done:
        if k >= len(spans):
            first, why = k, f"the dataset has {spans[-1].stop} videos, fewer than before"
            break
        (record,) = read_records(folder, [_shard_name(k)])
        why = _difference(record, spans[k], ids, captions)
        if why:
            first = k
            break
    (folder / INDEX).unlink(missing_ok=True)
    if first is None:
        return
    print(f"latent cache {folder}: {_shard_name(first)}: {why}; encoding again from it on")
    for k in (k for k in done if k >= first):
        (folder / f"{_shard_name(k)}.json").unlink(missing_ok=True)
        if k >= len(spans):
            (folder / f"{_shard_name(k)}.npy").unlink(missing_ok=True)


def encode_to_cache(
    folder: Path,
    make_videos: Callable[[], Dataset],
    codec: LatentCodec,
    batch: int,
    provenance: dict,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    shard_size: int = SHARD_SIZE,
    progress: bool = False,
    source: dict | None = None,
) -> LatentDataset:
    """Encode the videos of `make_videos()` into latent shards in `folder` and open it.

    Shards already there are kept while they hold the dataset's videos (rows, captions and
    `identities`); from the first that does not, everything is encoded again, and missing
    shards are encoded. `source` (the source folder's fingerprint) goes into the index for
    the caller's next check. Under DDP rank 0 holds the folder (other jobs wait) and the
    missing shards are dealt out to the ranks (rank, rank + world, ...); rank 0 writes the
    index last. Call on every rank, when the cache is missing or may be out of date."""
    folder = Path(folder)
    videos = make_videos()
    n = len(videos)
    first = videos[0]["video"]
    shape = codec.latent_shape(first.shape[1], first.shape[2])
    spans = [range(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]
    ids = getattr(videos, "identities", None)
    with owned(folder, "latent cache", wait=True) if rank == 0 else nullcontext():
        if rank == 0:
            want = dict(provenance, shard_size=shard_size, shape=list(shape))
            check_marker(folder, want, "latent cache")
            _drop_stale(folder, spans, videos)
        barrier()
        todo = [k for k in range(len(spans)) if not shard_done(folder, _shard_name(k))]
        barrier()  # every rank has its list before any shard is written: the same list
        mine = tqdm(todo[rank::world], desc="encode", unit="shard", disable=not progress)
        for k in mine:
            _encode_shard(folder, k, videos, spans[k], codec, batch, shape, ids)
        barrier()
        if rank == 0:
            names = [_shard_name(k) for k in range(len(spans))]
            fields = dict(provenance, shape=list(shape), source=source)
            write_index(folder, names, read_records(folder, names), fields)
        barrier()
    return LatentDataset(folder)


def record_source(folder: Path, source: dict) -> None:
    """Store new stats of the unchanged source files in the index (the next check's fast
    path), unless the cache changed meanwhile."""
    with owned(folder, "latent cache", wait=True):
        path = Path(folder) / INDEX
        index = json.loads(path.read_text()) if path.is_file() else {}
        if (index.get("source") or {}).get("digest") == source["digest"]:
            write_json(path, dict(index, source=source))
