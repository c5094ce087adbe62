"""Small models the harness trains once: the moving-digits evaluator
(`harness.metrics.evaluator`) and the tiny autoencoder (`harness.models.autoencoder`).

Both are named by a recipe, a frozen dataclass of everything their weights depend on; the
hash of the recipe and a code version is the weights' key. They are measuring instruments
(the evaluator) or part of every CPU run's data path (the autoencoder), so the recipes the
CPU scale uses are **committed**: `weights/<kind>/<key>.pt` in the repository, listed with
the hash of their tensors in `weights/manifest.json`, and every run on every machine uses
those bytes (like FVD's fixed I3D). Training them again is the explicit command
`python -m harness.weights train`; the weights' hash (`Trained.sha`) is part of every
score's identity (`harness.pipeline.evaluate.metrics_key`).

A recipe that is not committed (the tests' tiny ones, the GPU scale's default) is trained on
first use and cached under `$TPDIFF_CACHE/<kind>/` (default `~/.cache/tpdiff-harness/`);
a cached file is used only when its stored recipe and version match. Both train on fresh
moving-digits videos drawn with the recipe's own seeds, which no training run uses.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.common.io import write_json, write_torch
from harness.data import MovingDigits

CACHE_ENV = "TPDIFF_CACHE"
DEFAULT_CACHE = Path("~/.cache/tpdiff-harness")
COMMITTED = Path(__file__).resolve().parents[2] / "weights"  # the repository's weights/
FIX = "restore it with `git checkout weights/`, or retrain with `python -m harness.weights train`"


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


def state_hash(state_dict: dict) -> str:
    """sha256 (16 hex digits) over the tensors' names, dtypes, shapes and bytes: equal for
    bit-identical weights, whatever file they were stored in."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Trained:
    """A recipe's weights as loaded: `state_dict`, `info` (training time, held-out scores,
    ...), their hash `sha`, the file and whether it is the committed one."""

    state_dict: dict
    info: dict
    sha: str
    path: Path
    committed: bool


def manifest(root: Path | None = None) -> dict[str, dict]:
    """The committed weights' listing: `<kind>/<key>` -> {sha, recipe, version, info}."""
    path = (root or COMMITTED) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _read(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a torn or foreign file
        raise ValueError(f"cannot read weights {path} ({type(err).__name__}: {err})") from None


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int, size: int) -> tuple[dict, str]:
    """(the stored dict, its tensors' hash), once per file version in this process."""
    state = _read(Path(path))
    return state, state_hash(state["state_dict"])


def _loaded(path: Path) -> tuple[dict, str]:
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


def committed(
    kind: str, recipe, version: int, key: str, root: Path | None = None
) -> Trained | None:
    """The committed weights of `recipe` (weights/<kind>/<key>.pt), checked against the
    manifest, or None when the recipe is not committed. A file that is missing, written for
    another recipe or version, or whose tensors' hash differs from the manifest's is an
    error naming the file and the fix, never silently replaced."""
    root = root or COMMITTED
    entry = manifest(root).get(f"{kind}/{key}")
    if entry is None:
        return None
    path = root / kind / f"{key}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"committed {kind} weights {path} are missing: {FIX}")
    state, sha = _loaded(path)
    if state.get("recipe") != dataclasses.asdict(recipe) or state.get("version") != version:
        raise ValueError(f"committed {kind} weights {path} were written for another recipe "
                         f"or code version than {key}: {FIX}")  # fmt: skip
    if sha != entry["sha"]:
        raise ValueError(f"committed {kind} weights {path} have hash {sha} but "
                         f"{root / 'manifest.json'} lists {entry['sha']}: {FIX}")  # fmt: skip
    return Trained(state["state_dict"], state["info"], sha, path, committed=True)


def obtain(
    kind: str,
    recipe,
    version: int,
    key: str,
    train: Callable[[], tuple[dict, dict]],
    root: str | Path | None = None,
    progress: bool = True,
) -> Trained:
    """The weights of `recipe`: the committed ones when the manifest lists its key, else the
    cached file (`cache_dir(kind, root)/<key>.pt`, if written for this recipe and version),
    else `train()` -> (state_dict, info), cached atomically and returned."""
    found = committed(kind, recipe, version, key)
    if found is not None:
        return found
    path = cache_dir(kind, root) / f"{key}.pt"
    if path.is_file():
        state, sha = _loaded(path)
        if state.get("recipe") == dataclasses.asdict(recipe) and state.get("version") == version:
            return Trained(state["state_dict"], state["info"], sha, path, committed=False)
        print(f"ignoring {path}: written for another recipe or code version")
    if progress:
        print(f"training the {kind} once ({recipe.steps} steps) -> {path}")
    state_dict, info = train()
    save(path, recipe, version, state_dict, info)
    return Trained(state_dict, info, state_hash(state_dict), path, committed=False)


def save(path: Path, recipe, version: int, state_dict: dict, info: dict) -> None:
    """Store trained weights with their recipe, version and info (atomic)."""
    obj = dict(recipe=dataclasses.asdict(recipe), version=version, state_dict=state_dict, info=info)
    write_torch(path, obj)


def commit(kind: str, key: str, recipe, version: int, state_dict: dict, info: dict,
           root: Path | None = None) -> Path:  # fmt: skip
    """Write weights into the committed folder (weights/<kind>/<key>.pt) and list them, with
    their hash, recipe and info, in its manifest. Returns the file."""
    root = root or COMMITTED
    path = root / kind / f"{key}.pt"
    save(path, recipe, version, state_dict, info)
    listing = manifest(root)
    listing[f"{kind}/{key}"] = dict(sha=state_hash(state_dict), recipe=dataclasses.asdict(recipe),
                                    version=version, info=_summary(info))  # fmt: skip
    write_json(root / "manifest.json", dict(sorted(listing.items())))
    return path


def _summary(info: dict) -> dict:
    """The info worth reading in the manifest (not the feature statistics)."""
    return {k: v for k, v in info.items() if not k.startswith("feature_")}
