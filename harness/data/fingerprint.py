"""What a source file is: its size, times and a hash of its whole content.

`fingerprint(path, known)` -> {"size", "mtime_ns", "ctime_ns", "inode", "hash"} (None when
`path` is not a file). The hash is blake2b over the whole file, read in 1 MiB chunks, so a
change anywhere in the file is seen even when its size and modification time are kept. The
stat fast path: when `known` (the fingerprint recorded last time) has the same size,
mtime_ns, ctime_ns and inode as the file now, its hash is reused without reading the file.
ctime changes on every write and on `os.utime`, and cannot be set by the user, so content
written with the old mtime restored is read again. File times advance in clock ticks
(milliseconds), so a file changed within `RACY_NS` before it was fingerprinted could change
again without a new ctime: such a fingerprint is marked `"racy": true` and never trusted by
the fast path (git's "racily clean" rule). Within a process each file is hashed at most once
per stat (a memo), so the prepared shards, the video-folder cache and the latent cache
checking the same clips in one run read each clip once.

Used by `harness.data.prepared` (shard records), `harness.data.video_folder` (its decode
cache, item identities) and `harness.models.pretrained` (the latent cache's source).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

CHUNK = 1 << 20  # bytes read per step while hashing
STAT_KEYS = ("size", "mtime_ns", "ctime_ns", "inode")
RACY_NS = 1_000_000_000  # a file changed less than this before its fingerprint: racy

# (device, size, mtime_ns, ctime_ns, inode) -> hash, for this process
_memo: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """blake2b (20 bytes, hex) of the whole file, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stat(path: Path) -> tuple[dict, tuple] | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    fields = dict(size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                  inode=st.st_ino)  # fmt: skip
    return fields, (st.st_dev, *fields.values())


def fingerprint(path: str | Path, known: dict | None = None) -> dict | None:
    """{"size", "mtime_ns", "ctime_ns", "inode", "hash"} (plus "racy": True when the file
    changed within RACY_NS) of the file at `path`, or None when it is not a file;
    `known["hash"]` is reused when `known` is not racy and its stat fields all match."""
    path = Path(path)
    for _ in range(3):  # a file rewritten while it is read is read again
        first = _stat(path)
        if first is None:
            return None
        fields, memo_key = first
        if known and not known.get("racy") and all(known.get(k) == fields[k] for k in STAT_KEYS):
            return dict(fields, hash=known["hash"])
        if memo_key in _memo:
            return dict(fields, hash=_memo[memo_key])
        digest = content_hash(path)
        if _stat(path) == first:
            break
    if time.time_ns() - fields["ctime_ns"] < RACY_NS:
        return dict(fields, hash=digest, racy=True)
    _memo[memo_key] = digest
    return dict(fields, hash=digest)


def same_content(a: dict | None, b: dict | None) -> bool:
    """Whether two fingerprints (or absences) name the same content."""
    return (a or {}).get("hash") == (b or {}).get("hash") and (a is None) == (b is None)
