"""Small models the harness trains once and caches: the moving-digits evaluator
(`harness.metrics.evaluator`) and the tiny autoencoder (`harness.models.autoencoder`).

Both are named by a recipe, a frozen dataclass of everything their weights depend on; the
hash of the recipe and a code version names the cache file under
`$TPDIFF_CACHE/<kind>/` (default `~/.cache/tpdiff-harness/<kind>/`), and a file is used only
when its stored recipe and version match. Both train on fresh moving-digits videos drawn
with the recipe's own seeds, which no training run uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from harness.common.io import write_torch
from harness.data import MovingDigits

CACHE_ENV = "TPDIFF_CACHE"
DEFAULT_CACHE = Path("~/.cache/tpdiff-harness")


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """`root`, else $TPDIFF_CACHE, else ~/.cache/tpdiff-harness; the `kind` subfolder."""
    return Path(root or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / kind


def recipe_key(recipe, version: int, prefix: str) -> str:
    """`<prefix>-<12 hex digits of the recipe and version>`."""
    blob = json.dumps({**dataclasses.asdict(recipe), "version": version}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def digits(recipe, num_videos: int, seed: int, frames: int | None = None) -> MovingDigits:
    """Gray moving digits at the recipe's canvas, digit size and digits per clip."""
    return MovingDigits(
        num_videos=num_videos,
        frames=frames or recipe.frames,
        size=recipe.size,
        channels=1,
        seed=seed,
        max_digits=recipe.max_digits,
        digit_size=recipe.digit_size,
    )


def load_cached(path: Path, recipe, version: int) -> dict | None:
    """The stored {"recipe", "version", "state_dict", "info"} at `path` if it was written for
    this recipe and version, else None (a stale file is reported and left for overwriting)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("recipe") == dataclasses.asdict(recipe) and state.get("version") == version:
        return state
    print(f"ignoring {path}: written for another recipe or code version")
    return None


def save_cached(path: Path, recipe, version: int, state_dict: dict, info: dict) -> None:
    """Store trained weights with their recipe, version and info (atomic)."""
    obj = dict(recipe=dataclasses.asdict(recipe), version=version, state_dict=state_dict, info=info)
    write_torch(path, obj)
