"""One writer per folder: an advisory lock file that names its holder.

`owned(folder, what)` holds the lock file `.<name>.lock` beside `<parent>/<name>` for the
block (beside, not inside: `--fresh` may move the folder itself aside while it is held). The
lock is an OS file lock (`fcntl.flock`), so it is released the moment its process ends,
however it ends: a lock left by a dead process is simply taken over (and said so). While
held, the file names the holder (pid, host, command, start time), so a refused writer can
say who holds the folder.

Hierarchy (docs/training.md, "Who may write a folder"):
- a training run folder, a prepared-data folder and a suite's output folder are each held
  by the one job writing them; a second job on the same folder is refused (`wait=False`)
  with one line naming the holder's pid and host;
- the torchrun ranks of one job share their job's lock: rank 0 takes it, the other ranks
  take none;
- sweep workers take turns on a run folder (`wait=True`: the second waits, then finds the
  work done), and so do trainings that share a prepared-data folder;
- a suite that trains several runs in parallel processes holds the suite folder, and each
  of those processes holds its own run folder.
Within one process the lock is re-entrant: a sweep worker that waited for a run folder may
then train it, and training takes the same lock again without blocking on itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_file(folder: str | Path) -> Path:
    """The lock file of `folder`: `.<name>.lock` in its parent."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


# resolved folder -> (open lock file, depth) of the locks this process holds
_held: dict[Path, tuple[object, int]] = {}


class FolderBusy(ValueError):
    """The folder is held by another live process (a user error: one line, exit 2)."""


def holder(folder: str | Path) -> dict:
    """What the lock file of `folder` says about its holder ({} when unknown or empty)."""
    try:
        text = lock_file(folder).read_text(encoding="utf-8")
        info = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')} (since {since}: {info.get('cmd')})"


def _stamp(fh) -> None:
    """Write this process as the holder, in place (the file is never replaced: a new inode
    would be a different lock)."""
    cmd = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200] if sys.argv else ""
    info = dict(pid=os.getpid(), host=socket.gethostname(), since=time.time(), cmd=cmd)
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(info) + "\n")
    fh.flush()


@contextmanager
def owned(
    folder: str | Path, what: str = "folder", wait: bool = False, quiet: bool = False
) -> Iterator[Path]:
    """Hold `folder` (created if missing) for the block; yields the folder.

    `wait=False`: FolderBusy when another live process holds it, naming that process.
    `wait=True`: wait for it (a line on stderr says whom we wait for, unless `quiet`)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise ValueError(
            f"cannot use {folder} as a {what}: a file is in the way ({err.filename}); "
            "choose another path"
        ) from None
    key = folder.resolve()
    if key in _held:  # re-entrant within this process
        fh, depth = _held[key]
        _held[key] = (fh, depth + 1)
        try:
            yield folder
        finally:
            fh, depth = _held[key]
            _held[key] = (fh, depth - 1)
        return
    fh = lock_file(folder).open("a+", encoding="utf-8")
    try:
        _acquire(fh, folder, what, wait, quiet)
        fh.seek(0)
        left = fh.read().strip()
        if left and not quiet:  # released by the OS, not by us: its process died
            info = holder(folder)
            print(f"taking over {folder}: its last holder, {_describe(info)}, is gone",
                  file=sys.stderr)  # fmt: skip
        _stamp(fh)
        _held[key] = (fh, 1)
        try:
            yield folder
        finally:
            del _held[key]
            fh.seek(0)
            fh.truncate()  # empty: released cleanly
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def _acquire(fh, folder: Path, what: str, wait: bool, quiet: bool) -> None:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    info = holder(folder)
    if not wait:
        raise FolderBusy(
            f"{folder} ({what}) is in use by {_describe(info)}; wait for it to finish, "
            "or choose another folder (nothing was changed)"
        )
    if not quiet:
        print(f"waiting for {folder} ({what}), held by {_describe(info)}", file=sys.stderr)
    fcntl.flock(fh, fcntl.LOCK_EX)


def held(folder: str | Path) -> bool:
    """Whether this process holds `folder`."""
    return Path(folder).resolve() in _held


@contextmanager
def one_at_a_time(path: str | Path) -> Iterator[None]:
    """Hold the lock file beside the file `path` for the block, waiting for any other
    process that holds it: read-modify-write of a table that several processes append to
    (parallel arms of one study, sweep workers sharing references.csv). Not re-entrant: a
    process that holds it must not ask for it again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_file(path).open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
