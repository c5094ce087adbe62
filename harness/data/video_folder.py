"""A folder of captioned videos (OpenVid-1M style), decoded with PyAV.

Layout:

    root/
      captions.csv      header `path,caption` (or `video,caption`); path relative to root
      clip_000.mp4      any container PyAV decodes: mp4, webm, gif, ...

Every listed file is decoded once at construction. Unreadable, corrupt, missing or too short
files are skipped with a warning and recorded in `ds.skipped` (path -> reason). With a
`cache_dir`, decoded clips are stored as .pt files and reused instead of decoding again.
"""

from __future__ import annotations

import csv as csvlib
import hashlib
import os
import warnings
from pathlib import Path

import av
import torch
import torch.nn.functional as F
from torch import Tensor

LAYOUT = (
    "expected a folder of videos (mp4/webm/gif) plus a CSV ({csv}) with header "
    "'path,caption' whose paths are relative to the folder"
)


def decode_clip(path: str | Path, frames: int, size: int, stride: int, channels: int) -> Tensor:
    """Frames 0, stride, 2*stride, ... of a video, short side resized to size, centre-cropped.

    Returns a float tensor (C, F, size, size) in [-1, 1]; raises ValueError when the video has
    fewer than (frames - 1) * stride + 1 frames or no video stream.
    """
    wanted = (frames - 1) * stride + 1
    fmt = "rgb24" if channels == 3 else "gray"
    picked = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        seen = 0
        for frame in container.decode(stream):
            if seen % stride == 0:
                picked.append(torch.from_numpy(frame.to_ndarray(format=fmt)))
            seen += 1
            if seen >= wanted:
                break
    if seen < wanted:
        raise ValueError(
            f"too short: {seen} frames, need {wanted} (frames={frames}, stride={stride})"
        )
    x = torch.stack(picked).float()  # (F, H, W) gray or (F, H, W, 3) rgb
    x = x[:, None] if channels == 1 else x.permute(0, 3, 1, 2)  # (F, C, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x / 127.5 - 1).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()  # (C, F, H, W)


def caption_file(root: Path, csv: str) -> Path:
    """root/csv, after checking that both exist (FileNotFoundError naming the layout)."""
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist; {LAYOUT.format(csv=csv)}")
    path = root / csv
    if not path.is_file():
        raise FileNotFoundError(f"caption file {path} does not exist; {LAYOUT.format(csv=csv)}")
    return path


def read_captions(csv_path: Path) -> list[tuple[str, str]]:
    """(relative path, caption) rows of a `path,caption` (or `video,caption`) CSV."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csvlib.DictReader(handle)
        fields = reader.fieldnames or []
        key = "path" if "path" in fields else "video" if "video" in fields else None
        if key is None or "caption" not in fields:
            raise ValueError(f"{csv_path} has header {fields}; {LAYOUT.format(csv=csv_path.name)}")
        return [(row[key], row["caption"] or "") for row in reader if row[key]]


class VideoFolder(torch.utils.data.Dataset):
    """Captioned videos: item -> {"video": (C, F, H, W) in [-1, 1], "caption": str, "labels": {}}.

    `frames` frames are taken every `stride` frames from frame 0; the short side is resized to
    `size` and centre-cropped; channels is 3 (RGB) or 1 (gray).
    """

    def __init__(
        self,
        root: str | Path,
        csv: str = "captions.csv",
        frames: int = 16,
        size: int = 32,
        channels: int = 3,
        stride: int = 1,
        cache_dir: str | Path | None = None,
    ):
        for name, value in (("frames", frames), ("size", size), ("stride", stride)):
            if value < 1:
                raise ValueError(f"VideoFolder: {name}={value} must be >= 1")
        if channels not in (1, 3):
            raise ValueError(f"VideoFolder: channels={channels} must be 1 (gray) or 3 (RGB)")
        self.root = Path(root)
        csv_path = caption_file(self.root, csv)
        self.frames, self.size, self.channels, self.stride = frames, size, channels, stride
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

        self.items: list[tuple[str, str]] = []  # (relative path, caption) of usable clips
        self.skipped: dict[str, str] = {}  # relative path -> reason
        for rel, caption in read_captions(csv_path):
            try:
                self._load(rel)
            except Exception as error:  # a bad file must never stop the scan
                reason = f"{type(error).__name__}: {error}"
                self.skipped[rel] = reason
                warnings.warn(f"VideoFolder: skipping {self.root / rel}: {reason}", stacklevel=2)
            else:
                self.items.append((rel, caption))
        if not self.items:
            raise ValueError(
                f"VideoFolder: no usable clip in {csv_path} ({len(self.skipped)} skipped; "
                f"see .skipped / warnings); need videos with >= {(frames - 1) * stride + 1} "
                f"frames for frames={frames}, stride={stride}"
            )

    def _cache_path(self, file: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, self.frames, self.size,
               self.stride, self.channels)  # fmt: skip
        return self.cache_dir / f"{hashlib.sha1(repr(key).encode()).hexdigest()}.pt"

    def _load(self, rel: str) -> Tensor:
        """The decoded clip (C, F, H, W), from the cache when present (written after a decode)."""
        file = self.root / rel
        if not file.is_file():
            raise FileNotFoundError(f"{file} is listed in the CSV but does not exist")
        cached = self._cache_path(file)
        if cached is not None and cached.is_file():
            try:
                return torch.load(cached, weights_only=True)
            except Exception:  # a truncated or foreign cache file: decode again
                pass
        clip = decode_clip(file, self.frames, self.size, self.stride, self.channels)
        if cached is not None:
            tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.tmp")
            torch.save(clip, tmp)
            os.replace(tmp, cached)
        return clip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        rel, caption = self.items[index]
        try:
            video = self._load(rel)
        except Exception as error:
            raise RuntimeError(
                f"VideoFolder: {self.root / rel} decoded at construction but fails now "
                f"({type(error).__name__}: {error}); was it changed or removed?"
            ) from error
        return {"video": video, "caption": caption, "labels": {}}
