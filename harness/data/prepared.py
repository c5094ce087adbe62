"""A video folder prepared once: decoded in parallel into sharded, memory-mapped arrays.

`prepare(source, folder, workers)` decodes the clips listed in the folder's captions.csv in
worker processes, `shard_size` CSV rows per shard, and writes

    folder/
      shard_00000.npy    (n, C, F, H, W) float16 in [-1, 1]: the shard's usable clips
      shard_00000.json   rows [first, end) of the CSV, captions, source paths, skipped files
                         with their reasons (written after the .npy: it marks the shard done)
      ...
      index.json         written last: the source, the shape, every shard's count, every
                         skipped file; its presence marks the folder complete

Every file is written to a temporary name and renamed, so a kill leaves whole shards only; a
rerun does the missing shards and nothing twice. Corrupt, missing or too-short clips are
skipped and listed, never fatal. `PreparedVideos(folder)` reads the index and the shards'
captions only: no decoding, and the arrays are memory-mapped on first access (in each
DataLoader worker separately).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data.shards import (
    check_marker,
    open_shards,
    read_records,
    shard_done,
    shard_name,
    write_index,
    write_shard,
)
from harness.data.video_folder import caption_file, decode_clip, read_captions

FORMAT = 1


@dataclass(frozen=True)
class Source:
    """What the prepared arrays depend on: the folder, its CSV and the decoding settings."""

    root: str
    frames: int
    size: int
    channels: int
    stride: int = 1
    csv: str = "captions.csv"

    def key(self) -> str:
        """A hash of the settings, the resolved folder and the CSV's size and mtime."""
        csv = Path(self.root) / self.csv
        stat = [csv.stat().st_size, csv.stat().st_mtime_ns] if csv.is_file() else None
        blob = json.dumps([asdict(self), str(Path(self.root).resolve()), stat, FORMAT])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.channels, self.frames, self.size, self.size)


def prepared_folder(source: Source, base: str | Path) -> Path:
    """Where `source` is prepared under `base`: one subfolder per source key."""
    return Path(base) / f"videos-{source.key()}"


def _shard_name(k: int) -> str:
    return shard_name("shard", k)


def prepare_shard(source: Source, folder: Path, k: int, rows: list[tuple[str, str]],
                  first: int) -> dict:  # fmt: skip
    """Decode one shard's clips and write its .npy, then its .json; the shard's record."""
    clips, captions, paths, skipped = [], [], [], {}
    for rel, caption in rows:
        try:
            file = Path(source.root) / rel
            if not file.is_file():
                raise FileNotFoundError(f"{file} is listed in the CSV but does not exist")
            clip = decode_clip(file, source.frames, source.size, source.stride, source.channels)
        except Exception as error:  # a bad file must never stop the preparation
            skipped[rel] = f"{type(error).__name__}: {error}"
            continue
        clips.append(clip.numpy().astype(np.float16))
        captions.append(caption)
        paths.append(rel)
    array = np.stack(clips) if clips else np.zeros((0, *source.shape), np.float16)
    record = dict(rows=[first, first + len(rows)], captions=captions, paths=paths,
                  skipped=skipped)  # fmt: skip
    return write_shard(folder, _shard_name(k), array, record)


def prepare(
    source: Source,
    folder: str | Path,
    workers: int = 1,
    shard_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Prepare `source` into `folder` (resuming a partly prepared one); returns the index.
    `progress(done_rows, total_rows)` is called as shards finish."""
    folder = Path(folder)
    rows = read_captions(caption_file(Path(source.root), source.csv))
    folder.mkdir(parents=True, exist_ok=True)
    _check_layout(folder, source, shard_size)
    shards = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    todo = [k for k in range(len(shards)) if not shard_done(folder, _shard_name(k))]
    done_rows = len(rows) - sum(len(shards[k]) for k in todo)
    if progress:
        progress(done_rows, len(rows))
    jobs = [(source, folder, k, shards[k], k * shard_size) for k in todo]
    if workers <= 1 or len(jobs) <= 1:
        finished = (prepare_shard(*job) for job in jobs)
        for record in finished:
            done_rows += record["rows"][1] - record["rows"][0]
            if progress:
                progress(done_rows, len(rows))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(prepare_shard, *job) for job in jobs]
            for future in as_completed(futures):
                record = future.result()
                done_rows += record["rows"][1] - record["rows"][0]
                if progress:
                    progress(done_rows, len(rows))
    return _write_index(folder, source, shard_size, len(shards))


def _check_layout(folder: Path, source: Source, shard_size: int) -> None:
    """Refuse to resume a folder prepared from another source or with another shard size."""
    want = dict(format=FORMAT, source=asdict(source), key=source.key(), shard_size=shard_size)
    check_marker(folder, want, "video preparation")


def _write_index(folder: Path, source: Source, shard_size: int, num_shards: int) -> dict:
    names = [_shard_name(k) for k in range(num_shards)]
    records = read_records(folder, names)
    skipped = {path: why for r in records for path, why in r["skipped"].items()}
    fields = dict(format=FORMAT, source=asdict(source), key=source.key(),
                  shape=list(source.shape), shard_size=shard_size, skipped=skipped)  # fmt: skip
    return write_index(folder, names, records, fields)


class PreparedVideos(Dataset):
    """The clips of a prepared folder: item -> {"video": (C, F, H, W) float32 in [-1, 1],
    "caption", "labels": {}}; `channels`, `frames`, `size` and `skipped` (path -> reason) as
    VideoFolder's. Construction reads JSON only; shards are memory-mapped on first use."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        fix = "run python -m harness.prepare with the same config to finish it"
        index, self.clips, records = open_shards(self.folder, "prepared folder", fix)
        self.channels, self.frames, self.size, _ = index["shape"]
        self.skipped: dict[str, str] = index["skipped"]
        self.captions: list[str] = [c for r in records for c in r["captions"]]
        self.paths: list[str] = [path for r in records for path in r["paths"]]
        if not self.captions:
            raise ValueError(f"{self.folder}: no usable clip ({len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        video = torch.from_numpy(self.clips[index])
        return {"video": video, "caption": self.captions[index], "labels": {}}
