"""Standard FVD features: the Kinetics-400 I3D TorchScript checkpoint of StyleGAN-V.

The checkpoint `i3d_torchscript.pt` (StyleGAN-V, Skorokhodov et al. 2022; a port of the tf.hub
I3D used by the original FVD, Unterthiner et al. 2018) is never downloaded here: put it at
`~/.cache/tpdiff/i3d_torchscript.pt`, or point the `TPDIFF_I3D` environment variable or
`--i3d PATH` at it. Its interface is

    detector(x, rescale: bool, resize: bool, return_features: bool) -> (B, 400)

with x (B, 3, T, H, W); `rescale=True` takes values in [0, 255] (it maps them to [-1, 1]
itself), `resize=True` resizes frames to 224 x 224 inside the model, and
`return_features=True` returns the 400 pre-softmax Kinetics logits (the FVD features).

Two preprocessing recipes, named in every result column:
- `stylegan-v` (default, column `FVD-I3D`): frames quantised to uint8 as saved videos are,
  grayscale repeated to 3 channels, `rescale=True, resize=True` (StyleGAN-V's
  `compute_fvd`, protocol `fvd2048_16f` = 2048 videos x 16 frames);
- `resize-crop` (column `FVD-I3D-resize-crop`): float frames, short side bilinearly resized
  to 224 and centre-cropped, values in [-1, 1], `rescale=False, resize=False` (the recipe
  of several later video papers' FVD scripts).
The I3D needs at least MIN_FRAMES frames (its temporal strides and final pooling).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

ENV_VAR = "TPDIFF_I3D"
DEFAULT_PATH = Path("~/.cache/tpdiff/i3d_torchscript.pt")
FILE_NAME = "i3d_torchscript.pt"
FEATURE_DIM = 400
MIN_FRAMES = 10
RESOLUTION = 224


@dataclass(frozen=True)
class I3DRecipe:
    """How videos in [-1, 1] reach the detector: its keyword flags and our own preprocessing."""

    name: str
    column: str  # result column name
    rescale: bool  # detector maps [0, 255] -> [-1, 1] itself
    resize: bool  # detector resizes to 224 x 224 itself


I3D_RECIPES = {
    "stylegan-v": I3DRecipe("stylegan-v", "FVD-I3D", rescale=True, resize=True),
    "resize-crop": I3DRecipe("resize-crop", "FVD-I3D-resize-crop", rescale=False, resize=False),
}


def resolve_i3d_path(path: str | Path | None = None) -> Path:
    """The checkpoint path: `path`, else $TPDIFF_I3D, else ~/.cache/tpdiff/i3d_torchscript.pt.

    Raises FileNotFoundError saying where to put the file when it is missing."""
    chosen = path or os.environ.get(ENV_VAR) or DEFAULT_PATH
    resolved = Path(chosen).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(
            f"I3D checkpoint not found at {resolved}. Standard FVD needs StyleGAN-V's Kinetics-400 "
            f"TorchScript I3D ({FILE_NAME}); it is never downloaded at run time. Copy it to "
            f"{DEFAULT_PATH}, or set {ENV_VAR}=/path/to/{FILE_NAME}, or pass --i3d PATH. "
            "Without it the harness reports FVD-md (its own moving-digits evaluator) instead."
        )
    return resolved


def load_i3d(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """torch.jit.load the detector (see resolve_i3d_path for where it is looked up)."""
    resolved = resolve_i3d_path(path)
    with warnings.catch_warnings():  # the checkpoint only exists as TorchScript
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
        return torch.jit.load(str(resolved), map_location=device).eval()


def _resize_crop(x: Tensor, size: int = RESOLUTION) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T, size, size): short side bilinear to `size`, centre crop."""
    b, c, t, h, w = x.shape
    scale = size / min(h, w)
    th, tw = max(size, math.ceil(h * scale)), max(size, math.ceil(w * scale))
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(th, tw), mode="bilinear", align_corners=False)
    top, left = (th - size) // 2, (tw - size) // 2
    frames = frames[:, :, top : top + size, left : left + size]
    return frames.reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4)


def preprocess(videos: Tensor, recipe: I3DRecipe) -> Tensor:
    """Videos (B, C, T, H, W) in [-1, 1], C in {1, 3} -> the detector's input (B, 3, T, ., .)."""
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos (B, 1|3, T, H, W), got {tuple(videos.shape)}")
    if videos.shape[2] < MIN_FRAMES:
        raise ValueError(
            f"the I3D needs at least {MIN_FRAMES} frames per video, got {videos.shape[2]} "
            "(the standard protocol uses 16); evaluate longer videos or use FVD-md"
        )
    x = videos.float().clamp(-1, 1).expand(-1, 3, -1, -1, -1)  # grayscale -> RGB
    if recipe.rescale:  # as saved frames are: uint8 in [0, 255]
        x = ((x + 1) * 127.5).round().to(torch.uint8)
    if not recipe.resize:
        x = _resize_crop(x)
    return x.contiguous()


class I3DFeatures:
    """Feature extractor: __call__(videos (B, C, T, H, W) in [-1, 1]) -> (B, 400) float64."""

    def __init__(
        self,
        path: str | Path | None = None,
        recipe: str = "stylegan-v",
        device: str | torch.device = "cpu",
        batch_size: int = 8,
    ):
        if recipe not in I3D_RECIPES:
            raise ValueError(f"unknown I3D recipe {recipe!r}; choose one of {sorted(I3D_RECIPES)}")
        self.recipe = I3D_RECIPES[recipe]
        self.path = resolve_i3d_path(path)
        self.device = torch.device(device)
        self.detector = load_i3d(self.path, self.device)
        self.batch_size = batch_size
        self.name = self.recipe.column
        self.dim = FEATURE_DIM

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> Tensor:
        out = []
        for chunk in videos.split(self.batch_size):
            x = preprocess(chunk, self.recipe).to(self.device)
            feats = self.detector(
                x, rescale=self.recipe.rescale, resize=self.recipe.resize, return_features=True
            )
            if feats.ndim != 2 or feats.shape != (len(chunk), FEATURE_DIM):
                raise ValueError(
                    f"{self.path} returned {tuple(feats.shape)} for {len(chunk)} videos; "
                    f"expected ({len(chunk)}, {FEATURE_DIM}) Kinetics-400 features: is this "
                    f"StyleGAN-V's {FILE_NAME}?"
                )
            out.append(feats.double().cpu())
        return torch.cat(out)
