"""The self-check suites as `python -m harness.run --suite engine|cost|gpu-check [--scale
NAME]`: the scale picks the device (and the engine check's frame count); the GPU check
runs on CUDA, or on the CPU with `--dry-run`."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.studies.checks import gpu, run
from harness.studies.core.scale import SCALES


def engine(out: Path, scale: str, fresh: bool = False) -> dict:
    """The engine check on 16 frames at a CPU scale, 64 at the GPU scale."""
    return run.engine(out, frames=64 if SCALES[scale].device == "cuda" else 16)


def cost(out: Path, scale: str, fresh: bool = False) -> dict:
    """The cost tables on the scale's device (`--scale gpu` needs a CUDA device)."""
    if SCALES[scale].device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale} needs a CUDA device; use --scale cpu here")
    return run.cost(out, torch.device(SCALES[scale].device))


def gpu_check(out: Path, scale: str, fresh: bool = False, dry_run: bool = False) -> dict:
    """Every CUDA path in a few minutes (`harness.studies.checks.gpu`), into
    `<out>/<device>/`: `--out results/gpu` is the committed place."""
    return gpu.gpu_check(out, dry_run=dry_run)
