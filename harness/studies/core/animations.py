"""Animated previews for the reports: videos side by side in one GIF, drawn from the small
uint8 sample sets a results folder keeps (no checkpoint, no sampling).

`side_by_side(columns, captions, path)`: a GIF whose frame f shows, for each video (a row,
its caption on the left), frame f of every column (a method or setting, labelled on top),
each frame upscaled `scale` times with nearest-neighbour so a 16 px digit stays crisp. The
columns of a row share the caption and the sampling seed, so what differs between them is
the method alone. A GIF of 4 rows x 2 columns of 8 frames at 16 px is about 20 to 40 KB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.common.io import write_bytes
from harness.common.video import rgb_frames

LABEL_W, HEAD_H, PAD = 150, 16, 4


def side_by_side(columns: list[tuple[str, np.ndarray]], captions: list[str], path: Path,
                 scale: int = 4, fps: int = 4, rows: int = 4) -> Path:  # fmt: skip
    """Write the GIF at `path` (atomically): the first `rows` videos of every column (each
    (N, C, F, H, W) uint8, the same N, F, H and W), a row per video. Returns the path."""
    if not columns:
        raise ValueError("side_by_side needs at least one column of videos")
    shapes = {v.shape[:1] + v.shape[2:] for _, v in columns}
    if len(shapes) != 1:
        raise ValueError(f"the columns' videos differ in shape: {sorted(shapes)}")
    n = min(rows, len(captions), len(columns[0][1]))
    frames, h, w = columns[0][1].shape[2], columns[0][1].shape[3], columns[0][1].shape[4]
    cell_w, cell_h = w * scale, h * scale
    # a column is as wide as its frames or its label, whichever is wider
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col_w = max(cell_w, *(int(measure.textlength(label)) + 4 for label, _ in columns))
    width = LABEL_W + len(columns) * (col_w + PAD)
    height = HEAD_H + n * (cell_h + PAD)
    videos = [[rgb_frames(v[i]) for i in range(n)] for _, v in columns]
    images = []
    for f in range(frames):
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        for c, (label, _) in enumerate(columns):
            draw.text((LABEL_W + c * (col_w + PAD) + 2, 2), label, fill="black")
        for r in range(n):
            y = HEAD_H + r * (cell_h + PAD)
            draw.text((4, y + cell_h // 2 - 6), captions[r][:24], fill="black")
            for c in range(len(columns)):
                tile = Image.fromarray(videos[c][r][f]).resize((cell_w, cell_h), Image.NEAREST)
                canvas.paste(tile, (LABEL_W + c * (col_w + PAD), y))
        draw.text((4, 2), f"frame {f}", fill="#666666")
        images.append(canvas.convert("P", palette=Image.ADAPTIVE, colors=64))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=1000 // fps, loop=0, optimize=True)  # fmt: skip
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, buffer.getvalue())
