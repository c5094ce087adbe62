"""Sampling from a trained run: `python -m harness.sample --run DIR [key=value ...]`.

Loads `<run>/checkpoint.pt` (EMA weights when the run kept them) and samples
`num_samples` videos with the run's own plan, or with the sampling overrides
given (`SAMPLING_KEYS`: method, stages, jump points, steps, upsample, renoise,
seed, ...; the model, form, frame count and data are the run's). Writes
`<run>/samples/<plan_tag>/`: one GIF and MP4 per video, a PNG grid (a row per
video, a column per frame, captions on the left), captions.txt, videos.pt
((N, C, F, H, W) in [-1, 1]) and sampling.json (plan, config, checkpoint step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from harness.common.cli import add_debug_flag, guarded
from harness.common.config import METHOD_FIELDS, Config
from harness.common.io import check_output_folder, umask
from harness.common.video import rgb_frames, to_uint8_videos
from harness.engine.pyramid import StagePlan
from harness.engine.sampler import autocast_model
from harness.engine.sampler import sample as run_sampler
from harness.models.execution import compile_backbone
from harness.pipeline.build import build, plan_for, resolve_device
from harness.pipeline.provenance import code_revision
from harness.pipeline.runfolder import read_checkpoint

# what sampling may change; everything else (model, form, frames, data) is the trained run's
SAMPLING_KEYS = (
    *(k for k in METHOD_FIELDS if k not in ("name", "align", "stage_weighting")),
    "sample_steps",
    "guidance",
    "num_samples",
    "seed",
    "device",
    "encode_batch",  # execution only: how sampling runs, not what it computes
    "attention",
    "compile",
)


def load_checkpoint(run_dir: Path, checkpoint: str | Path | None = None) -> dict:
    """The run's checkpoint.pt, or `checkpoint` (e.g. snapshots/step_000200.pt, relative to
    the run), loaded on CPU; a clear error when there is none."""
    path = Path(run_dir) / (checkpoint or "checkpoint.pt")
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (python -m harness.train ...) or pass "
            "the folder of an existing run"
        )
    return read_checkpoint(path)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(C, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return rgb_frames(to_uint8_videos(video[None])[0])


def save_gif(frames: np.ndarray, path: Path, fps: int = 8, scale: int = 4) -> None:
    images = [
        Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
        for f in frames
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def save_mp4(frames: np.ndarray, path: Path, fps: int = 8, scale: int = 4) -> None:
    """H.264 where available, else MPEG-4 part 2; sizes rounded up to even."""
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = big.shape[2], big.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in big:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def save_grid(videos: list[np.ndarray], captions: list[str], path: Path, scale: int = 3) -> None:
    """PNG grid: a row per video, a column per frame, caption on the left."""
    h, w = videos[0].shape[1] * scale, videos[0].shape[2] * scale
    label_w, pad = 150, 2
    cols = videos[0].shape[0]
    grid = Image.new("RGB", (label_w + cols * (w + pad), len(videos) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (video, caption) in enumerate(zip(videos, captions)):
        y = r * (h + pad)
        draw.text((4, y + h // 2 - 6), caption[:26], fill="black")
        for c, frame in enumerate(video):
            tile = Image.fromarray(frame).resize((w, h), Image.NEAREST)
            grid.paste(tile, (label_w + c * (w + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def sampling_config(trained: Config, changes: Mapping[str, Any]) -> Config:
    """The trained run's config with the sampling `changes` applied (only SAMPLING_KEYS)."""
    fixed = sorted(set(changes) - set(SAMPLING_KEYS))
    if fixed:
        raise ValueError(
            f"{fixed} are fixed by the trained run; sampling may change only "
            f"{', '.join(SAMPLING_KEYS)}"
        )
    return trained.replace(**changes)


def plan_tag(cfg: Config) -> str:
    """Folder name for one sampling setting, e.g. 'tpdiff-K3-30steps-seed0'."""
    plan = plan_for(cfg)
    tag = f"{cfg.method}-K{plan.num_stages}-{plan.total_steps}steps"
    if cfg.method == "tpdiff":
        if cfg.jump_points:
            tag += "-j" + ",".join(f"{j:g}" for j in cfg.jump_points)
        if cfg.stage_steps:
            tag += "-s" + ",".join(str(n) for n in cfg.stage_steps)
        if cfg.upsample != "nearest":
            tag += f"-{cfg.upsample}"
        if cfg.renoise != "exact":
            tag += {"off": "-norenoise", "pyramid-flow": "-pfrenoise"}[cfg.renoise]
    if cfg.guidance != 1.0:
        tag += f"-cfg{cfg.guidance:g}"
    return f"{tag}-seed{cfg.seed}"


def guided(model, null: torch.Tensor, scale: float):
    """Classifier-free guidance: uncond + scale (cond - uncond), both in one batch; `null` is
    the empty caption's conditioning, in the form `model` takes its `cond`."""

    def call(x: torch.Tensor, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n = len(x)
        out = model(torch.cat([x, x]), torch.cat([u, u]), torch.cat([cond, null[:n]]))
        cond, uncond = out[:n], out[n:]
        return uncond + scale * (cond - uncond)

    return call


@dataclass(frozen=True)
class Generated:
    """Videos (N, C, F, H, W) in [-1, 1] on CPU, their captions, and how they were made."""

    videos: torch.Tensor
    captions: list[str]
    config: Config  # the trained run's config with the sampling changes applied
    plan: StagePlan
    step: int  # training step of the weights used


# videos sampled per call: a large batch runs slower per video on CPU (cache-bound: 0.22 s
# per guided UNet video in chunks of 64, 0.29 s in one batch of 256, 1 thread)
SAMPLE_CHUNK = {"cpu": 64, "cuda": 512}


def chunk_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of the `index`-th chunk of a sampling call at `seed`: the first chunk
    draws from `seed` itself (so a call of up to one chunk is unchanged), the others from
    their own seeds. Vanilla and TPDiff at one seed draw the same starting noise per video."""
    return torch.Generator(device=device).manual_seed(seed + index * 1_000_003)


def generate(
    run_dir: str | Path,
    changes: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> Generated:
    """Sample from the trained run in `run_dir` (its own plan unless `changes`, SAMPLING_KEYS
    only, e.g. {"method": "vanilla"}, says otherwise; `checkpoint` picks a snapshot), in
    chunks of SAMPLE_CHUNK videos, each from its own generator (`chunk_generator`)."""
    state = load_checkpoint(Path(run_dir), checkpoint)
    cfg = sampling_config(Config.from_dict(state["config"]), changes or {})
    device = resolve_device(cfg.device)
    built = build(cfg, device, data=False, progress=progress)
    model = built.model
    model.load_state_dict(state["ema"] if state.get("ema") else state["model"])
    model.eval()
    compile_backbone(model.backbone, cfg.compile)
    captions = built.prompts(cfg.num_samples)

    def embed(texts: list[str]) -> torch.Tensor:  # once per call, not at every step
        with torch.no_grad():
            return model.text(model.tokenize(texts).to(device))

    net = autocast_model(model.backbone, device)
    latent = built.codec.latent_shape(cfg.frames, cfg.resolution)  # the backbone's space
    chunk = SAMPLE_CHUNK.get(device.type, 64)
    parts = []
    bar = tqdm(total=cfg.num_samples, desc="videos", disable=not progress or
               cfg.num_samples <= chunk, leave=False)  # fmt: skip
    for index, start in enumerate(range(0, cfg.num_samples, chunk)):
        texts = captions[start : start + chunk]
        chunk_net = net
        if cfg.guidance != 1.0:
            chunk_net = guided(net, embed([""] * len(texts)), cfg.guidance)
        parts.append(run_sampler(
            chunk_net, cfg.form, built.plan, (len(texts), *latent),
            generator=chunk_generator(cfg.seed, index, device), cond=embed(texts),
            renoise=cfg.renoise, device=device, progress=progress and index == 0,
        ))  # fmt: skip
        bar.update(len(texts))
    bar.close()
    videos = torch.cat(parts)  # (N, C, F', h, w): video, or latents decoded below
    videos = built.codec.decode(videos, device, cfg.encode_batch)
    return Generated(videos, captions, cfg, built.plan, state["step"])


FORMATS = ("gif", "mp4", "png")  # a GIF and an MP4 per video, the PNG grid of them all


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats asked for (a list, or one name), in FORMATS order; ValueError naming an
    unknown one."""
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        asked = ",".join(formats) or "(none)"
        raise ValueError(f"--format {asked}: choose one or more of {', '.join(FORMATS)}, "
                         "e.g. --format gif or --format gif,png")  # fmt: skip
    return tuple(f for f in FORMATS if f in formats)


def main(
    run_dir: str | Path,
    changes: Mapping[str, Any] | None = None,
    out: Path | None = None,
    checkpoint: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> Path:
    """Sample from the trained run in `run_dir` (see `generate`); returns the samples folder.

    The default folder is `<run>/samples/<plan_tag>/` (plus `-step<N>` for a
    snapshot); it is written to a temporary folder first and swapped in whole, so
    other settings' samples and an interrupted write never clobber earlier results.
    `formats`: which of FORMATS to write (the videos, captions and settings always)."""
    run_dir = Path(run_dir)
    formats = check_formats(formats)
    if out is not None:
        check_output_folder(out)  # before sampling
    gen = generate(run_dir, changes, checkpoint)
    bad = int((~torch.isfinite(gen.videos)).flatten(1).any(1).sum())
    if bad:
        raise FloatingPointError(
            f"{bad} of {len(gen.videos)} videos sampled from {run_dir} (step {gen.step}) hold "
            "NaN or Inf values; nothing was written. The model or its sampling settings "
            "diverged: try another --checkpoint or a lower guidance="
        )
    tag = plan_tag(gen.config) + (f"-step{gen.step}" if checkpoint else "")
    out = Path(out) if out is not None else run_dir / "samples" / tag
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o777 & ~umask())  # a folder like any other, not mkdtemp's 0700
    frames = [to_uint8(v) for v in gen.videos]
    for i, f in enumerate(frames):
        if "gif" in formats:
            save_gif(f, tmp / f"video_{i:03d}.gif")
        if "mp4" in formats:
            save_mp4(f, tmp / f"video_{i:03d}.mp4")
    if "png" in formats:
        save_grid(frames, gen.captions, tmp / "grid.png")
    lines = "".join(f"{i:03d}\t{c}\n" for i, c in enumerate(gen.captions))
    (tmp / "captions.txt").write_text(lines)
    torch.save(gen.videos, tmp / "videos.pt")
    meta = {
        "run": str(run_dir),
        "step": gen.step,
        "plan": gen.plan.to_dict(),
        "config": gen.config.to_dict(),
        "git": code_revision(),
    }
    (tmp / "sampling.json").write_text(json.dumps(meta, indent=2) + "\n")
    _swap_in(tmp, out)
    print(f"{len(frames)} videos from step {gen.step} with plan {gen.plan.to_dict()} -> {out}")
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace folder `out` by `tmp` (two renames; the old one is deleted only afterwards)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def cli(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m harness.sample",
        description="Sample videos from a trained run.",
        epilog="Overrides may change only: " + ", ".join(SAMPLING_KEYS),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="run folder, e.g. runs/dit-tpdiff")
    where.add_argument("--config", type=Path, help="the run's TOML (its out_dir/name locate it)")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. method=vanilla seed=3")
    parser.add_argument("--out", type=Path, help="samples folder (default <run>/samples/<tag>)")
    parser.add_argument("--checkpoint", help="a snapshot instead, e.g. snapshots/step_000200.pt")
    parser.add_argument("--format", default=",".join(FORMATS), metavar="gif,mp4,png",
                        help="which files to write: a GIF and an MP4 per video and the PNG "
                        "grid (default: all three; videos.pt, captions.txt and sampling.json "
                        "always)")  # fmt: skip
    add_debug_flag(parser)
    args = parser.parse_intermixed_args(argv)  # options may follow the key=value overrides

    def run() -> Path:
        changes = dict(item.split("=", 1) for item in args.overrides if "=" in item)
        bad = [item for item in args.overrides if "=" not in item]
        if bad:
            raise ValueError(f"overrides must be key=value, got {bad}")
        run_dir = args.run
        if run_dir is None:
            where = {k: changes.pop(k) for k in ("name", "out_dir") if k in changes}
            run_dir = Config.from_file(args.config).replace(**where).run_dir
        formats = check_formats([f.strip() for f in args.format.split(",") if f.strip()])
        return main(run_dir, changes, args.out, args.checkpoint, formats)

    return guarded("python -m harness.sample", args.debug, run)


if __name__ == "__main__":
    cli()
    sys.exit(0)
