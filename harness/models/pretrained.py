"""Pretrained diffusers pipelines from local folders, wrapped to `model(x, u, cond)`.

Nothing is downloaded: every component is read with `from_pretrained(folder,
local_files_only=True)`. The config key `pretrained` names the folder; `$VAR` and
`${VAR}` in it are expanded from the environment, so `baselines/gpu/` says
`pretrained = "${TPDIFF_WAN}"` or `"${TPDIFF_ANIMATEDIFF}"`.

- backbone=dit, form=flow: Wan2.1 T2V (`WanTransformer3DModel`, `AutoencoderKLWan`,
  UMT5 text encoder), in the MiniFlux-vid role. Wan predicts v = eps - x0 at
  t = 1000 sigma, which is the harness's flow form with u = sigma.
- backbone=unet, form=ddim: AnimateDiff (SD1.5 `UNet2DConditionModel` + `MotionAdapter`
  joined as `UNetMotionModel`, `AutoencoderKL`, CLIP text encoder).

The layout is checked before anything is loaded (`check_layout`); a missing or
mismatched piece raises FileNotFoundError / ValueError that names it and prints
the expected tree. The text encoder runs frozen inside `tokenize` (outside the
trainable module); the VAE is used only to fill the latent cache and to decode
samples (`harness.models.latents`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

from harness.data.shards import INDEX
from harness.data.video_folder import folder_fingerprint
from harness.models.backbones import BACKBONES, VideoBackbone
from harness.models.latents import (
    VAE_FRAMES,
    LatentCodec,
    LatentDataset,
    encode_to_cache,
    latent_frame_count,
    plan_frame_count,
    record_source,
    vae_geometry,
)
from harness.models.text import PretrainedTextEncoder

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from harness.common.config import Config

# the form each pretrained pipeline was trained with (docs/gpu.md)
PRETRAINED_FORMS = {"dit": "flow", "unet": "ddim"}

WEIGHTS = {
    "diffusers": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                  "diffusion_pytorch_model.safetensors.index.json",
                  "diffusion_pytorch_model.bin.index.json"),
    "transformers": ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                     "pytorch_model.bin.index.json"),
    "tokenizer": ("tokenizer_config.json", "tokenizer.json"),
}  # fmt: skip


@dataclass(frozen=True)
class Part:
    """One subfolder: `library` is diffusers / transformers / tokenizer; `classes` the accepted
    `_class_name` (diffusers) or `model_type` (transformers)."""

    folder: str
    library: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    title: str
    example: str
    parts: tuple[Part, ...]


LAYOUTS = {
    "dit": Layout(
        "Wan2.1 text-to-video",
        "a local copy of Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        (
            Part("transformer", "diffusers", ("WanTransformer3DModel",)),
            Part("vae", "diffusers", ("AutoencoderKLWan",)),
            Part("text_encoder", "transformers", ("umt5", "t5")),
            Part("tokenizer", "tokenizer"),
        ),
    ),
    "unet": Layout(
        "AnimateDiff = SD1.5 + motion adapter",
        "a local SD1.5 pipeline folder plus an AnimateDiff MotionAdapter (e.g. "
        "guoyww/animatediff-motion-adapter-v1-5-2) copied into motion_adapter/",
        (
            Part("unet", "diffusers", ("UNet2DConditionModel",)),
            Part("motion_adapter", "diffusers", ("MotionAdapter",)),
            Part("vae", "diffusers", ("AutoencoderKL",)),
            Part("text_encoder", "transformers", ("clip_text_model",)),
            Part("tokenizer", "tokenizer"),
        ),
    ),
}


def expected_tree(backbone: str, root: str | Path = "<pretrained>") -> str:
    """The folder layout `backbone` needs, as an indented tree (for error messages and docs)."""
    layout = LAYOUTS[backbone]
    lines = [f"expected layout for backbone={backbone} ({layout.title}), {layout.example}:",
             f"  {root}/"]  # fmt: skip
    for part in layout.parts:
        weights = WEIGHTS[part.library][0]
        if part.library == "tokenizer":
            what = "tokenizer_config.json or tokenizer.json (+ vocab / spiece files)"
        else:
            what = f"config.json ({' | '.join(part.classes)}) + {weights}"
        lines.append(f"    {part.folder + '/':<16}{what}")
    return "\n".join(lines)


def resolve_folder(spec: str) -> Path:
    """`spec` with `~`, `$VAR` and `${VAR}` expanded; ValueError naming an unset variable."""
    names = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", spec)
    unset = [n for n in names if n not in os.environ]
    if unset:
        raise ValueError(
            f"pretrained={spec!r} uses environment variable {unset[0]}, which is not set: "
            f"export {unset[0]}=/path/to/the/pipeline (docs/gpu.md)"
        )
    return Path(os.path.expanduser(os.path.expandvars(spec)))


def _read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def check_layout(spec: str, backbone: str) -> Path:
    """The resolved pipeline folder after checking every subfolder, its class and weights,
    and that the parts fit together (channels, text width). Loads no weights."""
    if backbone not in LAYOUTS:
        raise ValueError(
            f"pretrained pipelines exist for backbone {sorted(LAYOUTS)}, not {backbone!r}"
        )
    root = resolve_folder(spec)
    tree = expected_tree(backbone, root)
    if not root.is_dir():
        raise FileNotFoundError(f"pretrained folder {root} does not exist.\n{tree}")
    missing, wrong = [], []
    for part in LAYOUTS[backbone].parts:
        folder = root / part.folder
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if not folder.is_dir():
            missing.append(f"{part.folder}/ (no such folder)")
        elif part.library != "tokenizer" and "config.json" not in names:
            missing.append(f"{part.folder}/config.json")
        elif not set(names) & set(WEIGHTS[part.library]):
            kind = "tokenizer files" if part.library == "tokenizer" else "weights"
            missing.append(f"{part.folder}/ {kind} (one of {', '.join(WEIGHTS[part.library])}; "
                           f"found {names or 'nothing'})")  # fmt: skip
        elif part.classes:
            config = _read_config(folder)
            found = config.get("_class_name") or config.get("model_type")
            if found not in part.classes:
                wrong.append(
                    f"{part.folder}/ holds a {found}, expected {' or '.join(part.classes)}"
                )
    if missing:
        other = [
            b for b in LAYOUTS if b != backbone and (root / LAYOUTS[b].parts[0].folder).is_dir()
        ]
        hint = f" (it looks like a backbone={other[0]} folder)" if other else ""
        raise FileNotFoundError(
            f"pretrained folder {root} is incomplete{hint}: missing {'; '.join(missing)}.\n{tree}"
        )
    wrong += _mismatches(root, backbone)
    if wrong:
        raise ValueError(
            f"pretrained folder {root} does not fit together: {'; '.join(wrong)}.\n{tree}"
        )
    return root


def _mismatches(root: Path, backbone: str) -> list[str]:
    """Parts that would not fit together (read from the configs only)."""
    vae = _read_config(root / "vae")
    text = _read_config(root / "text_encoder")
    width = text.get("d_model") or text.get("hidden_size")
    if backbone == "dit":
        net = _read_config(root / "transformer")
        pairs = [
            ("transformer in_channels", net.get("in_channels"), "vae z_dim", vae.get("z_dim", 16)),
            ("transformer text_dim", net.get("text_dim"), "text_encoder width", width),
            ("vae scale_factor_temporal", vae.get("scale_factor_temporal", 4),
             "Wan's temporal factor", VAE_FRAMES["dit"][0]),
        ]  # fmt: skip
    else:
        net = _read_config(root / "unet")
        adapter = _read_config(root / "motion_adapter")
        pairs = [
            ("unet in_channels", net.get("in_channels"),
             "vae latent_channels", vae.get("latent_channels")),
            ("unet cross_attention_dim", net.get("cross_attention_dim"),
             "text_encoder width", width),
            ("motion_adapter block_out_channels", list(adapter.get("block_out_channels", [])),
             "unet block_out_channels", list(net.get("block_out_channels", []))),
        ]  # fmt: skip
    return [f"{a} {x} != {b} {y}" for a, x, b, y in pairs if x != y]


# ----------------------------------------------------------------------------- config


def check_config(cfg: Config) -> None:
    """ValueError naming the key to change when `cfg` cannot use its pretrained pipeline
    (checked before anything is loaded)."""
    if cfg.backbone not in PRETRAINED_FORMS:
        raise ValueError(
            f"pretrained= loads backbone dit (Wan2.1) or unet (AnimateDiff), not {cfg.backbone!r}"
        )
    form = PRETRAINED_FORMS[cfg.backbone]
    if cfg.form != form:
        raise ValueError(
            f"the pretrained {cfg.backbone} pipeline was trained with form={form}; "
            f"set form={form} (got {cfg.form!r})"
        )
    if cfg.channels != 3:
        raise ValueError(f"pretrained VAEs take RGB video: set channels=3 (got {cfg.channels})")
    if cfg.text_encoder != "learned":
        raise ValueError(
            "with pretrained=, the text encoder is the folder's text_encoder/ and tokenizer/; "
            f"leave text_encoder at its default (got {cfg.text_encoder!r})"
        )
    if cfg.latent_channels:
        raise ValueError(
            "latent_channels > 0 (the tiny autoencoder) is for gray (channels=1) "
            "moving-digits without pretrained=; set latent_channels=0"
        )
    _latent_frames(cfg)  # raises on a `frames` the VAE cannot take


def _latent_frames(cfg: Config) -> int:
    """Latent frames of the run's videos (Wan: 1 + (frames - 1) / 4; AnimateDiff: frames)."""
    return latent_frame_count(cfg.frames, *VAE_FRAMES[cfg.backbone])


# ----------------------------------------------------------------------------- loading


class _Shared:
    """Holds a module outside the module tree; a deep copy (EMA) shares it."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo):
        return self


class FrozenTextEncoder(nn.Module):
    """A frozen pretrained text encoder run in `tokenize`: captions -> (B, L, D) float32.

    `forward` passes those embeddings through, so `TextConditionedModel` keeps its
    contract. The encoder is held outside the module tree: it is not in parameters(),
    state_dict(), checkpoints, DDP or FSDP; `.to(device)` still moves it (bf16 on CUDA)."""

    def __init__(self, encoder: PretrainedTextEncoder):
        super().__init__()
        self._frozen = _Shared(encoder)
        self.dim, self.length = encoder.dim, encoder.length

    @property
    def encoder(self) -> PretrainedTextEncoder:
        return self._frozen.module

    def tokenize(self, captions: list[str]) -> Tensor:
        device = next(self.encoder.parameters()).device
        return self.encoder(self.encoder.tokenize(captions).to(device)).float()

    def forward(self, embeddings: Tensor) -> Tensor:
        return embeddings

    def _apply(self, fn, recurse=True):
        self.encoder._apply(fn, recurse)
        if next(self.encoder.parameters()).is_cuda:
            self.encoder.to(torch.bfloat16)
        return super()._apply(fn, recurse)


def load_backbone(root: Path, backbone: str, max_frames: int) -> VideoBackbone:
    """The pretrained video network wrapped to `forward(x, u, cond)` (float32 weights)."""
    from diffusers import (
        MotionAdapter,
        UNet2DConditionModel,
        UNetMotionModel,
        WanTransformer3DModel,
    )

    if backbone == "dit":
        inner = WanTransformer3DModel.from_pretrained(root / "transformer", local_files_only=True)
    else:
        unet = UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True)
        adapter = MotionAdapter.from_pretrained(root / "motion_adapter", local_files_only=True)
        try:
            inner = UNetMotionModel.from_unet2d(unet, adapter)
        except ValueError as err:
            raise ValueError(f"{root}: motion_adapter/ does not fit unet/: {err}") from None
    return VideoBackbone(BACKBONES[backbone], "pretrained", dict(inner.config), max_frames, inner)


def load_codec(cfg: Config) -> LatentCodec:
    """The pipeline's VAE (float32, eval, CPU) as a `LatentCodec`."""
    from diffusers import AutoencoderKL, AutoencoderKLWan

    root = check_layout(cfg.pretrained, cfg.backbone)
    cls = AutoencoderKLWan if cfg.backbone == "dit" else AutoencoderKL
    return LatentCodec(cls.from_pretrained(root / "vae", local_files_only=True))


def load_pretrained(cfg: Config) -> tuple[FrozenTextEncoder, VideoBackbone]:
    """(frozen text encoder, backbone) of the pipeline at `cfg.pretrained`, after checking
    that `cfg.resolution` and `cfg.frames` fit the VAE and the network."""
    root = check_layout(cfg.pretrained, cfg.backbone)
    _check_shape(root, cfg)
    text = PretrainedTextEncoder(root / "text_encoder", cfg.text_len, root / "tokenizer")
    backbone = load_backbone(root, cfg.backbone, _latent_frames(cfg))
    return FrozenTextEncoder(text), backbone


def _check_shape(root: Path, cfg: Config) -> None:
    vae = _read_config(root / "vae")
    if cfg.backbone == "dit":
        spatial = vae.get("scale_factor_spatial", 8)
        patch = _read_config(root / "transformer")["patch_size"]
        multiple, why = spatial * patch[1], f"VAE factor {spatial} x patch {patch[1]}"
    else:
        net = _read_config(root / "unet")
        spatial = 2 ** (len(vae["block_out_channels"]) - 1)
        down = 2 ** (len(net["down_block_types"]) - 1)
        multiple, why = spatial * down, f"VAE factor {spatial} x UNet downsampling {down}"
        longest = _read_config(root / "motion_adapter").get("motion_max_seq_length", 32)
        if _latent_frames(cfg) > longest:
            raise ValueError(
                f"frames={cfg.frames} exceeds the motion adapter's motion_max_seq_length {longest}"
            )
    if cfg.resolution % multiple:
        raise ValueError(
            f"resolution={cfg.resolution} must be a multiple of {multiple} ({why}) for {root}"
        )


# ----------------------------------------------------------------------------- latents


def latent_cache_path(cfg: Config) -> tuple[Path, dict]:
    """(cache folder, provenance): keyed by a hash of the VAE folder and the data config
    (for a video folder its resolved path: its content is checked per shard, so a changed
    folder keeps its cache, updated in place). Checks `resolution` and `frames` against the
    pipeline first, before any encoding."""
    root = check_layout(cfg.pretrained, cfg.backbone)
    _check_shape(root, cfg)
    vae = (root / "vae").resolve()
    files = sorted(p for p in vae.iterdir() if p.is_file())
    data = {k: cfg.to_dict()[k] for k in ("dataset", "num_videos", "frames", "resolution",
                                          "channels", "frame_stride", "seed")}  # fmt: skip
    if cfg.data_root:
        data["data_root"] = str(Path(cfg.data_root).resolve())
    provenance = {
        "format": 3,  # 3: shards record their videos' identities (2: without; 1: one .npy)
        "vae": str(vae),
        "vae_files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        "vae_config": _read_config(vae),
        "data": data,
    }
    key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cfg.latent_cache) if cfg.latent_cache else Path(cfg.out_dir) / "latents"
    return folder / f"{cfg.backbone}-{key}", provenance


def data_source(cfg: Config, known: dict | None = None) -> dict | None:
    """The fingerprint of the run's video folder (`folder_fingerprint`: the CSV and every
    listed file, hashed only where their stats changed since `known`); None for generated
    data, whose config (in the provenance) is its identity."""
    if cfg.dataset != "video-folder" or not cfg.data_root:
        return None
    return folder_fingerprint(cfg.data_root, "captions.csv", known)


def latent_dataset(
    cfg: Config,
    make_videos: Callable[[], Dataset],
    device: torch.device,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: bool = True,
) -> LatentDataset:
    """The latents of `make_videos()`'s videos, encoded once (no grad, `encode_batch` videos
    per VAE call, shards dealt out to DDP ranks, resumable) and cached on disk; call on
    every rank. A complete cache whose source folder has not changed is opened without
    building the videos; otherwise the changed shards are encoded again."""
    path, provenance = latent_cache_path(cfg)
    index = json.loads((path / INDEX).read_text()) if (path / INDEX).is_file() else None
    before = (index or {}).get("source")
    source = data_source(cfg, before)
    fresh = index is not None and (source or {}).get("digest") == (before or {}).get("digest")
    if world > 1 and dist.is_initialized():  # rank 0 decides: ranks that disagreed would hang
        decision = [fresh]
        dist.broadcast_object_list(decision, src=0)
        fresh = decision[0]
    if fresh:
        if source != before and rank == 0:  # same content, new stats: the next fast path
            record_source(path, source)
        dataset = LatentDataset(path)
    else:
        codec = load_codec(cfg).to(device)
        dataset = encode_to_cache(
            path, make_videos, codec, cfg.encode_batch, provenance, rank, world, barrier,
            progress=progress and rank == 0, source=source,
        )  # fmt: skip
        del codec
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if dataset.frames != _latent_frames(cfg):
        raise ValueError(
            f"{path} holds {dataset.frames} latent frames but the plan needs "
            f"{_latent_frames(cfg)}; "
            "the VAE does not compress time as its backbone's pipeline should"
        )
    return dataset


def cached_captions(cfg: Config) -> list[str] | None:
    """The captions stored with the run's latent cache (None before it is written), so
    sampling need not decode a video folder again."""
    folder = latent_cache_path(cfg)[0]
    return LatentDataset(folder).captions if (folder / INDEX).is_file() else None


class PretrainedVAECodec:
    """The pipeline's VAE as the run's codec (harness.models.codec): the plan runs on latent
    frames, training data is the on-disk latent cache, samples are decoded by the VAE."""

    def __init__(self, cfg: Config, progress: bool = True):
        check_config(cfg)
        self.cfg = cfg
        self.progress = progress

    def plan_frames(self, frames: int, num_stages: int) -> int:
        return plan_frame_count(frames, num_stages, *VAE_FRAMES[self.cfg.backbone])

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        root = check_layout(self.cfg.pretrained, self.cfg.backbone)
        kind = next(p for p in LAYOUTS[self.cfg.backbone].parts if p.folder == "vae").classes[0]
        channels, temporal, causal, spatial = vae_geometry(kind, _read_config(root / "vae"))
        if size % spatial:
            raise ValueError(
                f"resolution={size} is not divisible by the VAE's spatial factor {spatial}"
            )
        latent = latent_frame_count(frames, temporal, causal)
        return (channels, latent, size // spatial, size // spatial)

    def training_data(self, make_videos, device, rank=0, world=1, barrier=lambda: None):
        return latent_dataset(self.cfg, make_videos, device, rank, world, barrier, self.progress)

    def decode(self, latents: Tensor, device: torch.device, batch: int) -> Tensor:
        return load_codec(self.cfg).to(device).decode_batched(latents, batch)

    def cached_captions(self) -> list[str] | None:
        return cached_captions(self.cfg)
