"""A video folder prepared once: decoded in parallel into sharded, memory-mapped arrays.

`prepare(source, folder, workers)` decodes the clips listed in the folder's captions.csv in
worker processes, `shard_size` CSV rows per shard, and writes

    folder/
      source.json        the decoding settings and shard size (a folder is resumed and
                         updated only with the same ones)
      shard_00000.npy    (n, C, F, H, W) float16 in [-1, 1]: the shard's usable clips
      shard_00000.json   the shard's record: the decoding settings, its CSV rows [first, end)
                         as (path, caption) entries, every listed file's fingerprint (size,
                         mtime_ns, ctime_ns, inode, content hash; null for a missing file),
                         the usable clips' captions, paths and content hashes (`ids`), and
                         the skipped files with their reasons (written after the .npy: it
                         marks the shard done)
      ...
      index.json         written last: the source, the shape, every shard's count, every
                         file's fingerprint, the CSV's fingerprint, every skipped file; its
                         presence marks the folder complete and up to date

What made a shard is checked on every `prepare` and on every training start (`refresh`): a
shard whose CSV rows changed, or one of whose files changed content, appeared or
disappeared (`harness.data.fingerprint`: a whole-file hash, skipped when size, mtime, ctime
and inode are unchanged), is prepared again; the other shards' arrays are left as they are.
So a replaced clip, a fixed corrupt one and an added row are picked up; a removed CSV row
shifts the rows of every later shard, which are redone. The folder's name depends on the
settings only, so a changed folder is updated in place.

Every file is written to a temporary name and renamed, and the index and a redone shard's
record are removed before any array is rewritten, so a kill leaves whole shards only; a
rerun does the missing shards and nothing twice. Corrupt, missing or too-short clips are
skipped and listed, never fatal. Writers hold the folder (`harness.common.lock`).
`PreparedVideos(folder)` reads the index and the shards' records only: no decoding, and the
arrays are memory-mapped on first access (in each DataLoader worker separately).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.common.io import write_json
from harness.common.lock import owned
from harness.data.fingerprint import fingerprint, same_content
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
from harness.data.video_folder import caption_file, decode_clip, read_captions

FORMAT = 2  # 2: shards record their files' fingerprints; the key no longer has the CSV's mtime
MARKER = "source.json"


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
        """A hash of the settings and the resolved folder (the folder's content is checked
        per shard, so a changed folder keeps its key and is updated in place)."""
        blob = json.dumps([asdict(self), str(Path(self.root).resolve()), FORMAT])
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
                  first: int, known: dict | None = None) -> dict:  # fmt: skip
    """Decode one shard's clips and write its .npy, then its .json; the shard's record.
    Each file is fingerprinted before it is decoded (`known`: fingerprints just taken)."""
    clips, captions, paths, ids, skipped, files = [], [], [], [], {}, {}
    for rel, caption in rows:
        file = Path(source.root) / rel
        files[rel] = fp = fingerprint(file, (known or {}).get(rel))
        try:
            if fp is None:
                raise FileNotFoundError(f"{file} is listed in the CSV but does not exist")
            clip = decode_clip(file, source.frames, source.size, source.stride, source.channels)
        except Exception as error:  # a bad file must never stop the preparation
            skipped[rel] = f"{type(error).__name__}: {error}"
            continue
        clips.append(clip.numpy().astype(np.float16))
        captions.append(caption)
        paths.append(rel)
        ids.append(fp["hash"])
    array = np.stack(clips) if clips else np.zeros((0, *source.shape), np.float16)
    record = dict(source=asdict(source), rows=[first, first + len(rows)],
                  entries=[[rel, caption] for rel, caption in rows], files=files,
                  captions=captions, paths=paths, ids=ids, skipped=skipped)  # fmt: skip
    return write_shard(folder, _shard_name(k), array, record)


@dataclass
class Check:
    """What `prepare` would do to a folder now: shards to redo (k -> why), shards whose
    record only needs its files' new stats (same content), shards past the CSV's end."""

    rows: list[tuple[str, str]]
    shard_size: int
    csv: dict
    redo: dict[int, str] = field(default_factory=dict)
    known: dict[int, dict] = field(default_factory=dict)  # k -> {path: fingerprint now}
    restat: list[int] = field(default_factory=list)
    extra: list[Path] = field(default_factory=list)
    index_current: bool = False

    @property
    def current(self) -> bool:
        return not (self.redo or self.restat or self.extra) and self.index_current

    @property
    def shards(self) -> list[list[tuple[str, str]]]:
        n = self.shard_size
        return [self.rows[i : i + n] for i in range(0, len(self.rows), n)]


def _changed(rel: str, was: dict | None, now: dict | None) -> str:
    if was is None:
        return f"{rel} appeared"
    return f"{rel} disappeared" if now is None else f"{rel} changed"


def _more(items: list[str], shown: int) -> str:
    """The first `shown` items, then how many more."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _check_shard(source: Source, folder: Path, k: int, part: list, state: Check) -> None:
    """Compare shard k's record with its CSV rows and files now; note the result in `state`."""
    name = _shard_name(k)
    if not shard_done(folder, name):
        state.redo[k] = "not prepared"
        return
    (record,) = read_records(folder, [name])
    if record.get("entries") != [list(row) for row in part]:
        state.redo[k] = "its CSV rows changed"
        return
    was = record["files"]
    now = {rel: fingerprint(Path(source.root) / rel, was.get(rel)) for rel, _ in part}
    state.known[k] = now
    changed = [_changed(r, was.get(r), now[r]) for r in now if not same_content(was.get(r), now[r])]
    if changed:
        state.redo[k] = _more(changed, 1)
    elif now != was:
        state.restat.append(k)


def check(source: Source, folder: str | Path, shard_size: int) -> Check:
    """Compare a (partly) prepared folder with its source now: reads the CSV and the shards'
    records and stats every listed file (hashing only files whose stats changed)."""
    folder = Path(folder)
    csv_path = caption_file(Path(source.root), source.csv)
    rows = read_captions(csv_path)
    index = json.loads((folder / INDEX).read_text()) if (folder / INDEX).is_file() else {}
    state = Check(rows, shard_size, fingerprint(csv_path, index.get("csv")))
    for k, part in enumerate(state.shards):
        _check_shard(source, folder, k, part, state)
    count = len(state.shards)
    state.extra = [p for p, k in shard_files(folder, "shard").items() if k >= count]
    state.index_current = bool(index) and index.get("csv") == state.csv
    return state


def _forget(folder: Path, state: Check) -> None:
    """Remove the index and the records of the shards to redo (so a kill leaves them
    undone), and the shards past the CSV's end."""
    (folder / INDEX).unlink(missing_ok=True)
    for k in state.redo:
        (folder / f"{_shard_name(k)}.json").unlink(missing_ok=True)
    for path in state.extra:
        path.unlink(missing_ok=True)


def _restat(folder: Path, state: Check) -> None:
    """Record the new stats of files whose content is unchanged (the arrays stay)."""
    for k in state.restat:
        path = folder / f"{_shard_name(k)}.json"
        write_json(path, dict(json.loads(path.read_text()), files=state.known[k]))


def prepare(
    source: Source,
    folder: str | Path,
    workers: int = 1,
    shard_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Prepare `source` into `folder` (resuming a partly prepared one, redoing the shards
    whose rows or files changed); returns the index. `progress(done_rows, total_rows)` is
    called as shards finish. Call while holding the folder (`harness.common.lock`)."""
    folder = Path(folder)
    caption_file(Path(source.root), source.csv)  # a missing folder or CSV fails first
    folder.mkdir(parents=True, exist_ok=True)
    _check_layout(folder, source, shard_size)
    state = check(source, folder, shard_size)
    if state.current:
        return json.loads((folder / INDEX).read_text())
    again = {k: why for k, why in state.redo.items() if why != "not prepared"}
    if again:
        redone = [f"{_shard_name(k)} ({why})" for k, why in again.items()]
        print(f"{folder}: preparing again {_more(redone, 3)}")
    _forget(folder, state)
    shards = state.shards
    jobs = [(source, folder, k, shards[k], k * shard_size, state.known.get(k))
            for k in state.redo]  # fmt: skip
    _run(jobs, workers, len(state.rows), progress)
    _restat(folder, state)
    return _write_index(folder, source, shard_size, len(shards), state.csv)


def _run(jobs: list[tuple], workers: int, total: int,
         progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    """Run `prepare_shard` on `jobs` (in `workers` processes), reporting rows done."""
    done = total - sum(len(job[3]) for job in jobs)
    if progress:
        progress(done, total)
    if workers <= 1 or len(jobs) <= 1:
        finished = (prepare_shard(*job) for job in jobs)
        for record in finished:
            done += record["rows"][1] - record["rows"][0]
            if progress:
                progress(done, total)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(prepare_shard, *job) for job in jobs]
        for future in as_completed(futures):
            record = future.result()
            done += record["rows"][1] - record["rows"][0]
            if progress:
                progress(done, total)


def refresh(source: Source, folder: str | Path, workers: int = 1) -> bool:
    """At a training start: bring a prepared (or partly prepared) folder up to date with its
    source, holding the folder (waiting for another writer) only when something must be
    done; False, doing nothing, when `folder` was never prepared (no source.json)."""
    folder = Path(folder)
    marker = folder / MARKER
    if not marker.is_file():
        return False
    shard_size = json.loads(marker.read_text())["shard_size"]
    if not check(source, folder, shard_size).current:
        with owned(folder, "prepared data", wait=True):
            prepare(source, folder, workers, shard_size)
    return True


def _check_layout(folder: Path, source: Source, shard_size: int) -> None:
    """Refuse to resume a folder prepared from another source or with another shard size."""
    want = dict(format=FORMAT, source=asdict(source), key=source.key(), shard_size=shard_size)
    check_marker(folder, want, "video preparation")


def _write_index(folder: Path, source: Source, shard_size: int, num_shards: int,
                 csv: dict) -> dict:  # fmt: skip
    names = [_shard_name(k) for k in range(num_shards)]
    records = read_records(folder, names)
    skipped = {path: why for r in records for path, why in r["skipped"].items()}
    files = {path: fp for r in records for path, fp in r["files"].items()}
    fields = dict(format=FORMAT, source=asdict(source), key=source.key(),
                  shape=list(source.shape), shard_size=shard_size, csv=csv, files=files,
                  skipped=skipped)  # fmt: skip
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
        # the content hash of each clip's file, what caches built from this data record
        self.identities: list[str] = [i for r in records for i in r["ids"]]
        if not self.captions:
            raise ValueError(f"{self.folder}: no usable clip ({len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        video = torch.from_numpy(self.clips[index])
        return {"video": video, "caption": self.captions[index], "labels": {}}
