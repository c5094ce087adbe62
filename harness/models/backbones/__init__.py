"""Video backbones, registered by name: diffusers models wrapped to `model(x, u, cond)`.

Every backbone is a diffusers class randomly initialised from a config (no
weights are downloaded), wrapped in `VideoBackbone` with one contract:

    forward(x, u, cond) -> prediction
    x     (B, C, F, H, W)  float video, any F <= max_frames (1, 2, 4, 8, 16 ...)
    u     (B,)             time in [0, 1], 1 = noise; the model sees t = 1000 u
    cond  (B, L, text_dim) text embeddings
    out   (B, C, F, H, W)  the form's target (v for flow, eps for ddim)

- `dit`:  `WanTransformer3DModel` (MiniFlux-vid role, flow matching), joint
          attention over all frames' tokens: cost grows faster than F.
- `unet`: `UNetMotionModel` (AnimateDiff role, DDIM), per-frame 2D UNet plus
          temporal attention: cost about proportional to F.

Sizes: `tiny` (tests) and `small` (the CPU default training model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.backbones import dit, unet


@dataclass(frozen=True)
class Builder:
    """How one backbone is made: a diffusers class, its config per size, the call adapter.

    `make_config(size, in_channels, text_dim, max_frames, sample_size) -> kwargs` of
    `model_class`; `call(inner, x, t, cond) -> out` runs the diffusers module with
    t = 1000 u (B,) and raises ValueError on inputs the module cannot take."""

    name: str
    model_class: type[nn.Module]
    make_config: Callable[[str, int, int, int, int], dict]
    call: Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]
    default_form: str
    sizes: tuple[str, ...]

    def __call__(
        self,
        size: str = "tiny",
        in_channels: int = 1,
        text_dim: int = 64,
        max_frames: int = 16,
        sample_size: int = 32,
    ) -> VideoBackbone:
        if size not in self.sizes:
            raise ValueError(f"unknown {self.name} size {size!r}; choose one of {self.sizes}")
        config = self.make_config(size, in_channels, text_dim, max_frames, sample_size)
        return VideoBackbone(self, size, config, max_frames)


class VideoBackbone(nn.Module):
    """A diffusers video model behind `forward(x (B, C, F, H, W), u (B,), cond (B, L, D))`.

    Attributes: `name`, `size`, `default_form` ("flow" or "ddim"), `config` (the
    kwargs the diffusers class was built with), `max_frames`, `inner` (the module).
    Parameters are drawn from torch's global RNG: seed it first for repeatable builds.
    `inner` given (e.g. pretrained weights): wrap that module instead of building one."""

    def __init__(
        self,
        builder: Builder,
        size: str,
        config: dict,
        max_frames: int,
        inner: nn.Module | None = None,
    ):
        super().__init__()
        self.name = builder.name
        self.size = size
        self.default_form = builder.default_form
        self.config = dict(config)
        self.max_frames = max_frames
        self.inner = builder.model_class(**config) if inner is None else inner
        self._call = builder.call

    def forward(self, x: Tensor, u: Tensor, cond: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"{self.name}: x must be (B, C, F, H, W), got {tuple(x.shape)}")
        if cond.ndim != 3 or cond.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.name}: cond must be (B, L, D) with B = {x.shape[0]}, "
                f"got {tuple(cond.shape)}"
            )
        t = (1000.0 * torch.as_tensor(u, device=x.device)).float().reshape(-1).expand(x.shape[0])
        return self._call(self.inner, x, t, cond)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, size={self.size!r}, default_form={self.default_form!r}"


def _entry(name: str, module) -> Builder:
    return Builder(
        name=name,
        model_class=module.MODEL,
        make_config=module.make_config,
        call=module.call,
        default_form=module.DEFAULT_FORM,
        sizes=tuple(module.WIDTHS),
    )


BACKBONES: dict[str, Builder] = {"dit": _entry("dit", dit), "unet": _entry("unet", unet)}


def build_backbone(
    name: str,
    size: str = "tiny",
    in_channels: int = 1,
    text_dim: int = 64,
    max_frames: int = 16,
    sample_size: int = 32,
) -> VideoBackbone:
    """A randomly initialised backbone (seed torch first); ValueError on unknown name or size."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](size, in_channels, text_dim, max_frames, sample_size)


__all__ = ["BACKBONES", "Builder", "VideoBackbone", "build_backbone"]
