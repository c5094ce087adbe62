"""Sampling from a trained run: `python -m harness.sample [--config FILE] [key=value ...]`.

Loads `<out_dir>/<name>/checkpoint.pt` (EMA weights when the run kept them),
samples `num_samples` videos with the config's plan for captions of unseen
dataset items, and writes `<run>/samples/`: one GIF and MP4 per video, a PNG
grid (a row per video, a column per frame, captions on the left) and
captions.txt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw

from harness.build import build_data, build_model, resolve_device
from harness.config import Config, parse_cli
from harness.io import write_text
from harness.sampling import sample as run_sampler


def load_trained(cfg: Config, device: torch.device):
    """The run's model (EMA weights if kept), from its checkpoint; clear error if missing."""
    path = cfg.run_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (python -m harness.train name={cfg.name}) "
            "or point name=/out_dir= at an existing run"
        )
    state = torch.load(path, map_location=device, weights_only=False)
    trained = Config.from_dict(state["config"])
    model = build_model(trained).to(device)
    model.load_state_dict(state["ema"] if state.get("ema") else state["model"])
    return model.eval(), trained, state["step"]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(C, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, *x.shape[1:])
    return x.permute(1, 2, 3, 0).numpy()


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


def main(cfg: Config, out: Path | None = None) -> Path:
    """Sample cfg.num_samples videos from the run cfg.run_dir; returns the samples folder."""
    device = resolve_device(cfg.device)
    model, trained, step = load_trained(cfg, device)
    # the trained model fixes form and frame count; the plan (method, stages, steps) is free
    plan = cfg.replace(form=trained.form, frames=trained.frames).plan()
    heldout = build_data(trained, seed_offset=10_007)  # captions the model never trained on
    captions = [heldout[i]["caption"] for i in range(cfg.num_samples)]
    ids = model.tokenize(captions).to(device)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    shape = (
        cfg.num_samples,
        trained.channels,
        trained.frames,
        trained.resolution,
        trained.resolution,
    )
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        videos = run_sampler(
            model,
            trained.form,
            plan,
            shape,
            generator=g,
            cond=ids,
            renoise=cfg.renoise,
            device=device,
            progress=True,
        )
    out = out or cfg.run_dir / "samples"
    out.mkdir(parents=True, exist_ok=True)
    frames = [to_uint8(v) for v in videos]
    for i, f in enumerate(frames):
        save_gif(f, out / f"video_{i:03d}.gif")
        save_mp4(f, out / f"video_{i:03d}.mp4")
    save_grid(frames, captions, out / "grid.png")
    write_text(out / "captions.txt", "".join(f"{i:03d}\t{c}\n" for i, c in enumerate(captions)))
    torch.save(videos.cpu(), out / "videos.pt")
    print(f"{len(frames)} videos from step {step} with plan {plan.to_dict()} -> {out}")
    return out


if __name__ == "__main__":
    main(parse_cli("python -m harness.sample", "Sample videos from a trained run."))
    sys.exit(0)
