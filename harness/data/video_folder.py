"""A folder of captioned videos (OpenVid-1M style), decoded with PyAV.

Layout:

    root/
      captions.csv      header `path,caption` (or `video,caption`); path relative to root
      clip_000.mp4      any container PyAV decodes: mp4, webm, gif, ...

Every listed file is decoded once at construction. Unreadable, corrupt, missing or too short
files are skipped with a warning and recorded in `ds.skipped` (path -> reason). `ds.identities`
holds each usable clip's content hash (`harness.data.fingerprint`), what caches of this data
record. With a `cache_dir`, decoded clips are stored as .pt files named by the clip's content
hash and the decoding settings, so a changed clip (even with its size and mtime kept) is
decoded again; `cache_dir/fingerprints.json` keeps the files' stats for the fast path.

`folder_fingerprint(root, csv, known)` fingerprints the CSV and every file it lists (without
decoding): what a cache built from the folder checks to know whether the folder changed.
"""

from __future__ import annotations

import csv as csvlib
import hashlib
import json
import os
import warnings
from pathlib import Path

import av
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.common.io import write_json
from harness.data.fingerprint import fingerprint

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
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csvlib.DictReader(handle)
            fields = reader.fieldnames or []
            key = "path" if "path" in fields else "video" if "video" in fields else None
            if key is None or "caption" not in fields:
                layout = LAYOUT.format(csv=csv_path.name)
                raise ValueError(f"{csv_path} has header {fields}; {layout}")
            return [(row[key], row["caption"] or "") for row in reader if row[key]]
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{csv_path} is not UTF-8 text (byte {err.start} of a read block: "
            f"{err.object[err.start : err.start + 1]!r}); save it as UTF-8 (e.g. iconv -f "
            "latin1 -t utf-8)"
        ) from None
    except csvlib.Error as err:
        raise ValueError(f"{csv_path} is not a readable CSV ({err}); fix that line") from None


def folder_fingerprint(root: str | Path, csv: str = "captions.csv",
                       known: dict | None = None) -> dict:  # fmt: skip
    """{"csv": fingerprint of the CSV, "files": {path: fingerprint or None}, "digest"} of a
    video folder, without decoding; `known` a previous result (its stats are the fast path).
    `digest` changes with the CSV's content and with any listed file's content or presence."""
    root, known = Path(root), known or {}
    csv_path = caption_file(root, csv)
    before = known.get("files") or {}
    files = {rel: fingerprint(root / rel, before.get(rel)) for rel, _ in read_captions(csv_path)}
    state = dict(csv=fingerprint(csv_path, known.get("csv")), files=files)
    hashes = [state["csv"]["hash"], sorted((rel, fp and fp["hash"]) for rel, fp in files.items())]
    digest = hashlib.blake2b(json.dumps(hashes).encode(), digest_size=16).hexdigest()
    return dict(state, digest=digest)


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
        self._files = self._known_stats()  # relative path -> fingerprint

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
        self._save_stats()
        if not self.items:
            raise ValueError(
                f"VideoFolder: no usable clip in {csv_path} ({len(self.skipped)} skipped; "
                f"see .skipped / warnings); need videos with >= {(frames - 1) * stride + 1} "
                f"frames for frames={frames}, stride={stride}"
            )
        # content hash of each usable clip, as decoded at construction
        self.identities: list[str] = [self._files[rel]["hash"] for rel, _ in self.items]

    @property
    def captions(self) -> list[str]:
        return [caption for _, caption in self.items]

    def _stats_file(self) -> Path | None:
        return self.cache_dir / "fingerprints.json" if self.cache_dir else None

    def _known_stats(self) -> dict[str, dict]:
        """The cache's recorded fingerprints of this folder's files (path -> fingerprint)."""
        stats = self._stats_file()
        if stats is None:
            return {}
        stats.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads(stats.read_text())
        except (OSError, ValueError):
            return {}
        prefix = f"{self.root.resolve()}{os.sep}"
        return {k[len(prefix) :]: v for k, v in table.items() if k.startswith(prefix)}

    def _save_stats(self) -> None:
        """Merge this folder's fingerprints into the cache's table (a lost race costs a
        rehash only: a stale entry never matches a changed file's stat)."""
        stats = self._stats_file()
        if stats is None:
            return
        try:
            table = json.loads(stats.read_text())
        except (OSError, ValueError):
            table = {}
        mine = {str(self.root.resolve() / rel): fp for rel, fp in self._files.items()}
        if any(table.get(k) != v for k, v in mine.items()):
            write_json(stats, table | mine)

    def _cache_path(self, digest: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = (digest, self.frames, self.size, self.stride, self.channels)
        return self.cache_dir / f"{hashlib.sha1(repr(key).encode()).hexdigest()}.pt"

    def _load(self, rel: str) -> Tensor:
        """The decoded clip (C, F, H, W), from the cache when present (written after a decode);
        the cache is keyed by the file's content hash, taken before decoding."""
        file = self.root / rel
        fp = fingerprint(file, self._files.get(rel))
        if fp is None:
            raise FileNotFoundError(f"{file} is listed in the CSV but does not exist")
        self._files[rel] = fp
        cached = self._cache_path(fp["hash"])
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
