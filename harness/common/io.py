"""Atomic result writing: a crash mid-write never leaves a half-written or emptied file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def umask() -> int:
    """This process's umask, read without changing it where Linux tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """ValueError naming `path` and the fix unless a file can be written there: not a
    folder, no file in the way among its parents, its nearest existing folder writable.
    Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{flag} {path} is a folder; give a file path, e.g. {flag} {path / 'results.csv'}"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{flag} {path}: {parent} is a file, not a folder; choose another path"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(
                    f"{flag} {path}: cannot write in {parent} (permission denied); choose "
                    "a folder you can write to"
                )
            break
    return path


def check_output_folder(path: str | Path, flag: str = "--out") -> Path:
    """ValueError naming `path` and the fix unless `path` is, or can be made, a folder this
    process can write in. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; choose another path")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: cannot write in it (permission denied)")
        return path
    return check_output_file(path, flag)


@contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[Path]:
    """A uniquely named temporary file beside `path`, renamed onto `path` when the block
    succeeds (atomic; concurrent writers never collide) and removed when it fails. The file
    gets the permissions of any new file (0666 less the umask), not mkstemp's 0600."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ValueError(
            f"cannot write {path}: {why} ({err.filename}); check that folder's permissions "
            "or choose another path"
        ) from None
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_torch(path: str | Path, what: str, fix: str, **kw: Any) -> Any:
    """torch.load(path, **kw); a missing, truncated or foreign file is a ValueError (or
    FileNotFoundError) naming the file, what it should be and `fix`, never a traceback."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}; {fix}")
    try:
        return torch.load(path, **kw)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"{path} is not a readable {what} (truncated or corrupt: {type(err).__name__}: "
            f"{first}); {fix}"
        ) from None


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    with _replacing(path, ".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_torch(path: str | Path, obj: Any) -> Path:
    """torch.save `obj` to `path` via a temporary file and an atomic rename."""
    import torch

    path = Path(path)
    with _replacing(path, ".tmp") as tmp:
        torch.save(obj, tmp)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    with _replacing(path, ".tmp") as tmp:
        Path(tmp).write_bytes(data)
    return path


def write_npz(path: str | Path, **arrays: Any) -> Path:
    """np.savez_compressed `arrays` to `path` via a temporary file and an atomic rename."""
    import numpy as np

    path = Path(path)
    with _replacing(path, ".tmp") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def plain(obj: Any) -> Any:
    """`obj` with numpy scalars made Python ones and NaN and infinities made None, through
    dicts, lists and tuples: what JSON can hold."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None  # NaN and infinities: JSON has neither
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    return write_text(path, frame.to_csv(index=False))


def save_figure(fig, path: str | Path, **savefig_kw: Any) -> Path:
    """Save a matplotlib figure atomically (a uniquely named temporary file in the same
    folder, then a rename, so concurrent writers never collide) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with _replacing(path, path.suffix) as tmp:
            fig.savefig(tmp, dpi=120, **savefig_kw)
    finally:
        plt.close(fig)
    return path
