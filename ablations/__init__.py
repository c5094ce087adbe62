"""Named ablations: each is a set of variants, and each variant is only a config difference
on top of the TPDiff baseline of the chosen scale (`harness.studies.core.scale.SCALES`, base
baselines/dit-tpdiff.toml: DiT, flow matching, K = 3 uniform stages, 30 sampling steps).
The empty difference is the paper's setting. Run with
`python -m harness.studies.ablate NAME [NAME ...] --scale cpu` (or `nox -s ablate -- NAME`).
Variants that differ only in sampling settings (renoise, steps per stage) share one
trained run.

Seeds (docs/ablations.md, "How a variant is measured"): the paper setting of every ablation is
trained at PAPER_SEEDS seeds, whose spread is the noise floor; each variant at its
ablation's `seeds` (at least 1), paired with the paper setting's first seeds (same init,
data order and sampling noise). `base` holds changes every variant of an ablation shares,
its paper row included (K = 5 needs a multiple of 16 frames: `stages_16f`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAPER_SEEDS = 3  # training seeds of the paper setting (the noise floor of every verdict)


@dataclass(frozen=True)
class Ablation:
    about: str
    variants: dict[str, dict[str, Any]]  # label -> config changes
    seeds: int = 1  # training seeds of each variant (the paper row: PAPER_SEEDS)
    base: dict[str, Any] = field(default_factory=dict)  # changes shared by every row

    def __post_init__(self):
        if not 1 <= self.seeds <= PAPER_SEEDS:
            raise ValueError(f"an ablation's seeds must lie in 1..{PAPER_SEEDS} (paired with "
                             f"the paper setting's), got {self.seeds}")  # fmt: skip


PAPER = "paper"  # label of the unchanged baseline in every ablation

ABLATIONS: dict[str, Ablation] = {
    "stages": Ablation(
        "number of stages K (K = 1 is the vanilla process, trained stage-wise with one stage)",
        {
            "K=1": dict(num_stages=1),
            "K=2": dict(num_stages=2),
            PAPER: {},
            "K=4": dict(num_stages=4),
        },
        seeds=3,
    ),
    "stages_16f": Ablation(
        "K = 5 (16 frames: a multiple of 2^(K-1)) against K = 3 on the same 16-frame data, "
        "scored with an evaluator trained at 16 frames",
        {PAPER: {}, "K=5": dict(num_stages=5)},
        seeds=3,
        base=dict(frames=16),
    ),
    "jump_points": Ablation(
        "where the K = 3 stages end (u runs from 1, noise, to 0, data; paper: 2/3 and 1/3)",
        {
            PAPER: {},
            "early (0.75, 0.45)": dict(jump_points=(0.75, 0.45)),
            "late (0.55, 0.25)": dict(jump_points=(0.55, 0.25)),
        },
    ),
    "stage_steps": Ablation(
        "how the 30 sampling steps are shared between the stages (sampling only)",
        {
            PAPER: {},
            "front (14, 10, 6)": dict(stage_steps=(14, 10, 6)),
            "back (6, 10, 14)": dict(stage_steps=(6, 10, 14)),
        },
    ),
    "upsample": Ablation(
        "temporal upsampling at each stage jump",
        {PAPER: {}, "linear": dict(upsample="linear")},
    ),
    "align": Ablation(
        "data-noise alignment in training (docs/method.md sec. 5)",
        {PAPER: {}, "off": dict(align=False)},
    ),
    "renoise": Ablation(
        "corrective noise at each stage jump in sampling (sampling only): the exact "
        "covariance, none, or Pyramid Flow's fixed blend (gamma = 1/3, docs/method.md sec. 4)",
        {PAPER: {}, "off": dict(renoise="off"), "pyramid-flow": dict(renoise="pyramid-flow")},
        seeds=3,
    ),
    "stage_weighting": Ablation(
        "how often training draws each stage",
        {
            PAPER: {},
            "uniform": dict(stage_weighting="uniform"),
            "steps": dict(stage_weighting="steps"),
            "pyramid-flow": dict(stage_weighting="pyramid-flow"),
        },
        seeds=3,
    ),
    "form": Ablation(
        "diffusion form (the paper: flow matching for MiniFlux-vid, DDIM for AnimateDiff)",
        {PAPER: {}, "ddim": dict(form="ddim"), "ddim-v": dict(form="ddim-v")},
    ),
}
