"""Sharded arrays on disk: how prepared clips and cached latents are stored and read.

A sharded folder holds, per shard, `<name>.npy` (n, ...) float16 and `<name>.json` (the
shard's record: at least its `count`; captions and the like), then an `index.json` written
last, listing every shard's name and count. Each file goes to a temporary name first and is
renamed, and the `.json` is written after the `.npy`, so a shard with a record is whole: a
kill leaves whole shards only, and a rerun redoes exactly the shards without a record. A
writer that finds a shard out of date with its source (`harness.data.prepared`,
`harness.models.latents`) removes the index and that shard's record first, so the shard is
redone even if the writer is killed.

`ShardReader(folder, names, counts)` gives item i of the concatenation, memory-mapping each
shard on first use; pickling it (DataLoader workers) drops the maps, so every process opens
its own. A shard whose item count no longer matches the one it was opened with (written
again meanwhile) is refused with a RuntimeError rather than read shifted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from harness.common.io import write_json

INDEX = "index.json"


def shard_name(prefix: str, k: int) -> str:
    return f"{prefix}_{k:05d}"


def shard_files(folder: Path, prefix: str, suffix: str = ".*") -> dict[Path, int]:
    """The files `<prefix>_NNNNN<suffix>` in `folder`, each with its shard number."""
    return {p: int(p.stem.rpartition("_")[2]) for p in folder.glob(f"{prefix}_*{suffix}")}


def shard_done(folder: Path, name: str) -> bool:
    """Whether shard `name` was written whole (its record exists)."""
    return (folder / f"{name}.json").is_file()


def write_shard(folder: Path, name: str, array: np.ndarray, record: dict) -> dict:
    """Write `array` as `<name>.npy`, then `record` (with its `count`) as `<name>.json`, each
    atomically; the record."""
    tmp = folder / f".{name}.{os.getpid()}.npy"
    np.save(tmp, array)
    os.replace(tmp, folder / f"{name}.npy")
    record = dict(record, count=len(array))
    write_json(folder / f"{name}.json", record)
    return record


def read_records(folder: Path, names: list[str]) -> list[dict]:
    return [json.loads((folder / f"{name}.json").read_text()) for name in names]


def write_index(folder: Path, names: list[str], records: list[dict], fields: dict) -> dict:
    """Write `index.json` (last: it marks the folder complete): `fields`, every shard's name,
    count and rows, and the total count; the index."""
    shards = [dict(name=n, count=r["count"], rows=r["rows"]) for n, r in zip(names, records)]
    index = dict(fields, shards=shards, count=sum(s["count"] for s in shards))
    write_json(folder / INDEX, index)
    return index


def check_marker(folder: Path, want: dict, what: str) -> None:
    """Write `folder`/source.json with `want`, or refuse to resume a folder whose marker says
    it was started with other settings (`what` names the folder's kind in the error)."""
    marker = folder / "source.json"
    if marker.is_file():
        have = json.loads(marker.read_text())
        if have != want:
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            raise ValueError(
                f"{folder} holds a {what} made with other settings ({diff}); pass the same "
                "settings to resume it, or use another folder"
            )
    else:
        write_json(marker, want)


def read_index(folder: Path, what: str, fix: str) -> dict:
    """The folder's index; FileNotFoundError naming `fix` when the folder is incomplete."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a complete {what} (no {INDEX}); {fix}")
    return json.loads(path.read_text())


class ShardReader:
    """Item i of the shards `names` (with `counts` items each) in `folder`, as float32."""

    def __init__(self, folder: Path, names: list[str], counts: list[int]):
        self.folder, self.names, self.counts = Path(folder), list(names), list(counts)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._arrays: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _array(self, shard: int) -> np.ndarray:
        if shard not in self._arrays:
            path = self.folder / f"{self.names[shard]}.npy"
            array = np.load(path, mmap_mode="r")
            if len(array) != self.counts[shard]:  # rewritten since this reader was opened
                raise RuntimeError(
                    f"{path} holds {len(array)} items, its record {self.counts[shard]} when "
                    "it was opened: it was written again meanwhile (a changed source); "
                    "restart to read the folder as it is now"
                )
            self._arrays[shard] = array
        return self._arrays[shard]

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        return np.asarray(self._array(shard)[index - self.starts[shard]], dtype=np.float32)

    def __getstate__(self) -> dict:  # DataLoader workers open their own memory maps
        return self.__dict__ | {"_arrays": {}}


def open_shards(folder: Path, what: str, fix: str) -> tuple[dict, ShardReader, list[dict]]:
    """A complete sharded folder: its index, a reader of its items and every shard's record
    (JSON only: no array is read)."""
    index = read_index(folder, what, fix)
    names = [s["name"] for s in index["shards"]]
    reader = ShardReader(folder, names, [s["count"] for s in index["shards"]])
    return index, reader, read_records(folder, names)
