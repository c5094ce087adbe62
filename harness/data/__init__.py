"""Video datasets, registered by name.

`DATASETS[name]` is a Dataset class; every item is a dict
`{"video": (C, F, H, W) float in [-1, 1], "caption": str, "labels": dict[str, int]}` and every
dataset exposes `channels`, `frames`, `size` (H == W == size) and `__len__`.
"""

from __future__ import annotations

import inspect

import torch
from torch.utils.data import Dataset

from harness.data.moving_digits import DIRECTIONS, MovingDigits
from harness.data.video_folder import VideoFolder, decode_clip

DATASETS: dict[str, type] = {
    "moving-digits": MovingDigits,
    "video-folder": VideoFolder,
}


def build_dataset(name: str, **kwargs) -> Dataset:
    """The dataset registered as `name`, built with keyword arguments checked by name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    params = inspect.signature(DATASETS[name].__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"dataset {name!r} got unknown arguments {unknown}; accepted: {accepted}")
    missing = [
        p for p in accepted if params[p].default is inspect.Parameter.empty and p not in kwargs
    ]
    if missing:
        raise ValueError(f"dataset {name!r} needs {missing}; accepted: {accepted}")
    return DATASETS[name](**kwargs)


def collate(items: list[dict]) -> dict:
    """Batch items: video (B, C, F, H, W), caption list[str], labels {key: LongTensor (B,)}.

    Only label keys present in every item are kept.
    """
    if not items:
        raise ValueError("collate needs at least one item")
    keys = set.intersection(*(set(item["labels"]) for item in items))
    return {
        "video": torch.stack([item["video"] for item in items]),
        "caption": [item["caption"] for item in items],
        "labels": {
            k: torch.tensor([item["labels"][k] for item in items], dtype=torch.long)
            for k in sorted(keys)
        },
    }


__all__ = [
    "DATASETS",
    "DIRECTIONS",
    "MovingDigits",
    "VideoFolder",
    "build_dataset",
    "collate",
    "decode_clip",
]
