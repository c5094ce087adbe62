"""Animated previews: what each GIF frame shows, drawn from uint8 sample sets."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from harness.studies.core.animations import HEAD_H, LABEL_W, PAD, side_by_side


def _videos(n, frames=3, size=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, frames, size, size), np.uint8)


def test_each_gif_frame_shows_that_frame_of_every_column(tmp_path):
    left, right = _videos(2, seed=0), _videos(2, seed=1)
    path = side_by_side([("vanilla", left), ("TPDiff", right)], ["a 1", "a 2"],
                        tmp_path / "a.gif", scale=2, rows=4)  # fmt: skip
    gif = Image.open(path)
    cell = 4 * 2
    # a column is as wide as its label when that is wider than its frames (8 px here)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col = max(cell, *(int(measure.textlength(label)) + 4 for label in ("vanilla", "TPDiff")))
    assert col > cell
    assert gif.n_frames == 3 and gif.size == (LABEL_W + 2 * (col + PAD), HEAD_H + 2 * (cell + PAD))
    for f in range(3):
        gif.seek(f)
        rgb = np.asarray(gif.convert("RGB"))
        for c, videos in enumerate((left, right)):
            for r in range(2):  # the cell's top-left pixel is the video's (0, 0), nearest
                y, x = HEAD_H + r * (cell + PAD), LABEL_W + c * (col + PAD)
                want = int(videos[r, 0, f, 0, 0])
                assert abs(int(rgb[y, x, 0]) - want) <= 8  # a 64-colour palette


def test_columns_of_other_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="differ in shape"):
        side_by_side([("a", _videos(2)), ("b", _videos(2, size=8))], ["x", "y"], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="uint8"):
        side_by_side([("a", _videos(2).astype(np.float32))], ["x", "y"], tmp_path / "c.gif")
    assert not list(tmp_path.iterdir())
