"""DiT backbone: diffusers `WanTransformer3DModel` in the role of the paper's MiniFlux-vid.

Full 3D self-attention over the tokens of all frames at once (plus cross-attention
to the text), so one step costs O(F) in the linear layers and O(F^2) in attention.
The patch is (1, 2, 4): 128 tokens per 32x32 frame, 2048 tokens at 16 frames, which
makes attention the larger share of the cost at 16 frames on CPU (with (1, 4, 4),
64 tokens per frame, the linear layers dominate and cost is nearly proportional
to F). Rotary positions need F, H / 2 and W / 4 <= `rope_max_seq_len`.
"""

from __future__ import annotations

from diffusers import WanTransformer3DModel
from torch import Tensor

MODEL = WanTransformer3DModel
DEFAULT_FORM = "flow"
PATCH = (1, 2, 4)  # (frames, height, width)

# width = heads * head_dim; head_dim is split into (t, h, w) rotary parts by Wan
WIDTHS = {
    "tiny": dict(num_attention_heads=2, attention_head_dim=16, num_layers=2),
    "small": dict(num_attention_heads=2, attention_head_dim=32, num_layers=4),
    # 4x4-pixel patches (16 tokens per 16x16 frame): the recipe-study sizes for 16x16 canvases
    "small-p4": dict(num_attention_heads=2, attention_head_dim=32, num_layers=4, patch=(1, 4, 4)),
    "base-p4": dict(num_attention_heads=4, attention_head_dim=32, num_layers=4, patch=(1, 4, 4)),
    # 2x2 / 1x1 patches: for the tiny autoencoder's latents (8x8 or 4x4 per frame)
    "small-p2": dict(num_attention_heads=2, attention_head_dim=32, num_layers=4, patch=(1, 2, 2)),
    "base-p2": dict(num_attention_heads=4, attention_head_dim=32, num_layers=4, patch=(1, 2, 2)),
    "small-p1": dict(num_attention_heads=2, attention_head_dim=32, num_layers=4, patch=(1, 1, 1)),
    "base-p1": dict(num_attention_heads=4, attention_head_dim=32, num_layers=4, patch=(1, 1, 1)),
}


def make_config(
    size: str, in_channels: int, text_dim: int, max_frames: int, sample_size: int
) -> dict:
    """Keyword arguments of `WanTransformer3DModel` for one size."""
    width = dict(WIDTHS[size])
    patch = tuple(width.pop("patch", PATCH))
    _, ph, pw = patch
    if sample_size % ph or sample_size % pw:
        raise ValueError(f"dit: sample_size {sample_size} must be divisible by the patch {patch}")
    dim = width["num_attention_heads"] * width["attention_head_dim"]
    return dict(
        patch_size=patch,
        in_channels=in_channels,
        out_channels=in_channels,
        text_dim=text_dim,
        ffn_dim=4 * dim,
        rope_max_seq_len=max(max_frames, sample_size // ph, sample_size // pw),
        **width,
    )


def call(inner: WanTransformer3DModel, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
    """x (B, C, F, H, W), t (B,) in [0, 1000], cond (B, L, text_dim) -> (B, C, F, H, W)."""
    cfg = inner.config
    pt, ph, pw = cfg.patch_size
    _, _, frames, height, width = x.shape
    if frames % pt or height % ph or width % pw:
        raise ValueError(
            f"dit: input (F, H, W) = {(frames, height, width)} must be divisible by the patch "
            f"{tuple(cfg.patch_size)}"
        )
    longest = max(frames // pt, height // ph, width // pw)
    if longest > cfg.rope_max_seq_len:
        raise ValueError(
            f"dit: F / {pt}, H / {ph} and W / {pw} must be <= rope_max_seq_len "
            f"{cfg.rope_max_seq_len}, got {longest}; rebuild with larger max_frames / sample_size"
        )
    return inner(x, t, encoder_hidden_states=cond, return_dict=False)[0]
