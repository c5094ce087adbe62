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


@contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[Path]:
    """A uniquely named temporary file beside `path`, renamed onto `path` when the block
    succeeds (atomic; concurrent writers never collide) and removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
