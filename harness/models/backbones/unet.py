"""UNet backbone: diffusers `UNetMotionModel` in the role of AnimateDiff (DDIM).

A 2D UNet run on every frame (convolutions and spatial cross-attention to the
text) with temporal attention ("motion modules") over the F frames at each
pixel, so one step costs about F times the cost of one frame. Spatial attention
only at 16x16 and below (for 32x32 inputs): the 32x32 level is convolutions and
motion modules only. Frames must be <= `motion_max_seq_length` (the length of
the motion modules' sinusoidal position table).
"""

from __future__ import annotations

from diffusers import UNetMotionModel
from torch import Tensor

MODEL = UNetMotionModel
DEFAULT_FORM = "ddim"

# channels per level; one level per entry, the first without spatial attention
WIDTHS = {
    "tiny": dict(block_out_channels=(8, 16), norm_num_groups=4, heads=(1, 1)),
    "small": dict(block_out_channels=(16, 32, 64), norm_num_groups=8, heads=(1, 1, 2)),
    # two levels (16x16 -> 8x8): the recipe-study size for 16x16 canvases
    "lite": dict(block_out_channels=(16, 32), norm_num_groups=8, heads=(1, 1)),
    "lite-32": dict(block_out_channels=(32, 64), norm_num_groups=8, heads=(1, 2)),
}


def make_config(
    size: str, in_channels: int, text_dim: int, max_frames: int, sample_size: int
) -> dict:
    """Keyword arguments of `UNetMotionModel` for one size."""
    width = WIDTHS[size]
    levels = len(width["block_out_channels"])
    down = ("DownBlockMotion",) + ("CrossAttnDownBlockMotion",) * (levels - 1)
    up = ("CrossAttnUpBlockMotion",) * (levels - 1) + ("UpBlockMotion",)
    return dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=width["block_out_channels"],
        layers_per_block=1,
        norm_num_groups=width["norm_num_groups"],
        cross_attention_dim=text_dim,
        num_attention_heads=width["heads"],
        motion_num_attention_heads=width["heads"],
        motion_max_seq_length=max_frames,
    )


def call(inner: UNetMotionModel, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
    """x (B, C, F, H, W), t (B,) in [0, 1000], cond (B, L, text_dim) -> (B, C, F, H, W)."""
    frames = x.shape[2]
    if frames > inner.config.motion_max_seq_length:
        raise ValueError(
            f"unet: F = {frames} frames > motion_max_seq_length "
            f"{inner.config.motion_max_seq_length}; rebuild with larger max_frames"
        )
    # the model does not repeat the text per frame (AnimateDiff's pipeline does): (B*F, L, D)
    cond = cond.repeat_interleave(frames, dim=0)
    return inner(x, t, encoder_hidden_states=cond, return_dict=False)[0]
