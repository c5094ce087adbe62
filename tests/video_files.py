"""Uncompressed clips written byte by byte (YUV4MPEG2, which PyAV decodes): every clip of a
size has the same number of bytes, so a test can change a clip's content and keep its size
and modification time."""

import os
from pathlib import Path

import numpy as np

W, H = 24, 16


def write_clip(path: Path, k: int, frames: int = 6) -> Path:
    """Clip `k`: a bright 8x8 square moving 3 px/frame from x = 5k, tinted by k (4:4:4)."""
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{W} H{H} F8:1 Ip A1:1 C444\n".encode())
        for t in range(frames):
            y = np.full((H, W), 16, np.uint8)
            x = (3 * t + 5 * k) % (W - 8)
            y[4:12, x : x + 8] = 235
            u = np.full((H, W), 128, np.uint8)
            v = np.full((H, W), (128 + 10 * k) % 256, np.uint8)
            out.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
    return path


def write_folder(root: Path, n: int, frames: int = 6) -> Path:
    """`n` clips clip0.y4m ... and captions.csv ("clip k") under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        write_clip(root / f"clip{k}.y4m", k, frames)
    write_rows(root, [(f"clip{k}.y4m", f"clip {k}") for k in range(n)])
    return root


def write_rows(root: Path, rows: list[tuple[str, str]]) -> None:
    lines = ["path,caption", *(f"{path},{caption}" for path, caption in rows)]
    (root / "captions.csv").write_text("\n".join(lines) + "\n")


def replace_keeping_stat(path: Path, k: int, frames: int = 6) -> None:
    """Rewrite `path` as clip `k` (same size) and put its old modification time back."""
    before = path.stat()
    write_clip(path, k, frames)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def stamps(folder: Path, pattern: str) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of the files matching `pattern`: a rewritten file differs."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob(pattern)}
