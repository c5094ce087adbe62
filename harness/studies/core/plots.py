"""The paper-suite figures, drawn from tables: quality vs training cost with bands (Fig. 5
analogue) and the renoising strip (Fig. 6 analogue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from harness.common.io import save_figure  # noqa: E402

STYLE = {  # variant -> matplotlib style; colour, line and marker all differ
    "vanilla": dict(color="#1f77b4", linestyle="-", marker="o", label="vanilla"),
    "tpdiff": dict(color="#d62728", linestyle="--", marker="s", label="TPDiff"),
    "tpdiff-noalign": dict(
        color="#2ca02c", linestyle=":", marker="^", label="TPDiff, no alignment"
    ),
}


def _unit(values: np.ndarray, units: list[tuple[float, str]]) -> tuple[float, str]:
    top = float(np.nanmax(values)) if len(values) else 1.0
    for scale, name in units:
        if top >= scale:
            return scale, name
    return units[-1]


def x_axis(curves: pd.DataFrame, x: str) -> tuple[float, str]:
    """(divisor, label) of the cost axis `x` (train_flops or train_hours)."""
    if x == "train_flops":
        scale, unit = _unit(
            curves[x].to_numpy(), [(1e15, "PFLOPs"), (1e12, "TFLOPs"), (1e9, "GFLOPs")]
        )
        return (
            scale,
            f"cumulative training compute ({unit}; fvcore, attention incl., fwd+bwd = 3x fwd)",
        )
    scale, unit = _unit(curves[x].to_numpy(), [(1.0, "hours"), (0.0, "minutes")])
    scale = 1.0 if unit == "hours" else 1 / 60
    return scale, f"training wall-clock ({unit}; compute only, data loading excluded)"


def plot_quality(
    curves: pd.DataFrame, x: str, path: Path, quality: str, targets: dict | None = None
) -> None:
    """Quality vs cumulative training cost, a panel per backbone/form, a line per variant:
    with one seed, its curve and 90 % bootstrap band (columns `<quality>-lo` / `-hi`); with
    several, every seed's curve thin and the seeds' median at each step bold. Vanilla's
    target (the worst vanilla seed's end level) is a dotted line when `targets[backbone]`
    is given."""
    pairs = sorted(curves[["backbone", "form"]].drop_duplicates().itertuples(index=False))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4), squeeze=False)
    scale, xlabel = x_axis(curves, x)
    for ax, (backbone, form) in zip(axes[0], pairs):
        g = curves[(curves.backbone == backbone) & (curves.form == form)]
        for variant, style in STYLE.items():
            v = g[g.variant == variant].sort_values(x)
            if v.empty:
                continue
            seeds = sorted(v["seed"].unique()) if "seed" in v else [0]
            if len(seeds) == 1:
                ax.plot(v[x] / scale, v[quality], markersize=5, linewidth=2, **style)
                if f"{quality}-lo" in v:
                    ax.fill_between(v[x] / scale, v[f"{quality}-lo"], v[f"{quality}-hi"],
                                    color=style["color"], alpha=0.18, linewidth=0)  # fmt: skip
                continue
            thin = {k: val for k, val in style.items() if k != "label"}
            for i, seed in enumerate(seeds):
                one = v[v.seed == seed]
                ax.plot(one[x] / scale, one[quality], markersize=3, linewidth=0.8, alpha=0.45,
                        label=f"{style['label']}, each seed" if i == 0 else None,
                        **thin)  # fmt: skip
            mid = v.groupby("step")[[x, quality]].median().sort_values(x)
            ax.plot(mid[x] / scale, mid[quality], markersize=5, linewidth=2.2, **thin,
                    label=f"{style['label']}, median of {len(seeds)} seeds")  # fmt: skip
        if targets and targets.get(backbone) is not None:
            ax.axhline(targets[backbone], color="#1f77b4", linestyle=":", linewidth=1,
                       label="target: worst vanilla seed's end level")  # fmt: skip
        ax.set_title(f"{backbone} + {form}")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(f"{quality} (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Quality vs training cost (Fig. 5 analogue; {quality})")
    fig.tight_layout()
    save_figure(fig, path)


def _signed(video: Any) -> torch.Tensor:
    """A video as a float tensor in [-1, 1] (uint8 0..255 are mapped there)."""
    x = torch.as_tensor(video)
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()


def plot_video_rows(
    rows: list[tuple[str, Any]], title: str, path: Path, size=(0.8, 0.95), fontsize: int = 7
) -> None:
    """A figure of videos: a row per (label, (C, F, H, W) video: floats in [-1, 1] or
    uint8), a column per frame; each cell `size` inches (width, height)."""
    rows = [(label, _signed(video)) for label, video in rows]
    frames = rows[0][1].shape[1]
    fig, axes = plt.subplots(len(rows), frames, squeeze=False,
                             figsize=(size[0] * frames + 1.6, size[1] * len(rows)))  # fmt: skip
    for r, (label, video) in enumerate(rows):
        for f in range(frames):
            ax = axes[r, f]
            img = ((video[:, f].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if f == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=fontsize)
    fig.suptitle(title, fontsize=fontsize + 2)
    fig.tight_layout()
    save_figure(fig, path)


def plot_renoise_strip(strip: dict, path: Path) -> None:
    """Rows: each prompt with and without renoising; columns: frames."""
    rows = []
    for i, caption in enumerate(strip["captions"]):
        for key, label in (("renoise", "renoise on"), ("no_renoise", "renoise off")):
            rows.append((f"{caption}\n{label}", strip[key][i]))
    plot_video_rows(rows, "Renoising on vs off (Fig. 6 analogue): same prompts, same seeds", path)
