"""How big a study's runs are: one `Scale` type and one `SCALES` table (tiny, smoke, cpu,
gpu) that every study reads (`--scale NAME` everywhere).

A scale fixes the training size (steps per backbone, model size, data and optimiser
overrides on `baselines/<backbone>-<method>.toml`, device), the evaluator, and where runs
are scored: `curve` (every study's quality curves: `evals` snapshots of each run at `n`
videos) and `final_n` (every study's final scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.common.config import Config
from harness.metrics import EvaluatorRecipe
from harness.studies.core import cpu_recipe

BASELINES = Path(__file__).resolve().parents[3] / "baselines"


@dataclass(frozen=True)
class Points:
    """Where a run is scored: `evals` snapshots evenly spaced (the last at the run's end),
    each on `n` generated and `n` real videos."""

    evals: int
    n: int


@dataclass(frozen=True)
class Scale:
    """One row of the scale table; `overrides` apply to every baseline config, then
    `sizes[backbone]`, and each backbone trains `backbone_steps.get(backbone, steps)` steps."""

    steps: int
    device: str
    curve: Points  # every study's curve points along each run (the last: the final score)
    final_n: int  # n of every study's final scores (FVD-md: >= 2 x feature dim)
    overrides: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)  # backbone -> size (else the baseline's)
    backbone_steps: dict[str, int] = field(default_factory=dict)  # backbone -> steps
    evaluator: EvaluatorRecipe | None = None  # None: the default recipe at the run's shape
    grid_samples: int = 8  # videos in each sample grid (and kept of each final, as uint8)
    # the paper suite's design (docs/paper-suite.md, "Pre-registered design")
    seeds: int = 3  # training seeds of every main arm (--seeds)
    align_seeds: int = 1  # of them, how many the alignment ablation is trained with
    renoise_seeds: int = 3  # of them, how many TPDiff runs are also sampled without renoising
    workers: int = 1  # runs trained side by side, one thread each (1: one process, all threads)
    batches: tuple[int, ...] = (1, 2, 4, 8)  # the inference batch sweep

    def __post_init__(self):
        for backbone, steps in {"": self.steps, **self.backbone_steps}.items():
            if steps % self.curve.evals:
                raise ValueError(f"steps={steps} {backbone} must be a multiple of "
                                 f"evals={self.curve.evals}")  # fmt: skip

    def steps_for(self, backbone: str) -> int:
        return self.backbone_steps.get(backbone, self.steps)


def scale_config(scale: Scale, base: str, runs: Path, evals: int, **changes: Any) -> Config:
    """baselines/<base>.toml (base: <backbone>-<method>) at `scale` with `changes` (any
    config keys) applied, snapshotted and checkpointed `evals` times, into `runs`."""
    backbone = base.split("-")[0]
    steps = scale.steps_for(backbone)
    every = steps // evals
    sizes = {"size": scale.sizes[backbone]} if backbone in scale.sizes else {}
    cfg = Config.from_file(BASELINES / f"{base}.toml").replace(**(scale.overrides | sizes))
    return cfg.replace(**changes).replace(
        steps=steps, snapshot_every=every, ckpt_every=every, device=scale.device,
        out_dir=str(runs),
    )  # fmt: skip


# the tests' settings: seconds per config
TINY = dict(size="tiny", frames=8, num_videos=64, warmup_steps=2, batch_size=4, sample_steps=6)
TINY_EVALUATOR = EvaluatorRecipe(frames=8, steps=30, heldout=64, batch_size=16)
GPU = dict(batch_size=32, ema_decay=0.999)

SCALES: dict[str, Scale] = {
    "tiny": Scale(
        steps=4,
        device="cpu",
        curve=Points(2, 8),
        final_n=8,
        overrides=TINY,
        evaluator=TINY_EVALUATOR,
        grid_samples=2,
        seeds=1,
        renoise_seeds=1,
        batches=(1, 2),
    ),  # fmt: skip
    # every code path of the paper suite, not the figures (CI): 4 curve points, 6-step sampling
    "smoke": Scale(
        steps=8,
        device="cpu",
        curve=Points(4, 8),
        final_n=12,
        overrides=TINY,
        evaluator=TINY_EVALUATOR,
        grid_samples=2,
        seeds=2,
        renoise_seeds=2,
        workers=2,
        batches=(1, 2, 4),
    ),  # fmt: skip
    # the CPU reference recipe (cpu_recipe): about 6 minutes per TPDiff trial on 2 CPU cores;
    # the paper suite's design at this scale is pre-registered in docs/paper-suite.md
    "cpu": Scale(
        steps=max(cpu_recipe.STEPS.values()),
        device="cpu",
        curve=Points(cpu_recipe.CURVE_POINTS, cpu_recipe.CURVE_N),
        final_n=cpu_recipe.FINAL_N,
        overrides=cpu_recipe.OVERRIDES,
        sizes=cpu_recipe.SIZES,
        backbone_steps=cpu_recipe.STEPS,
        evaluator=EvaluatorRecipe(**cpu_recipe.EVALUATOR),
        seeds=cpu_recipe.SEEDS,
        renoise_seeds=cpu_recipe.SEEDS,
        workers=2,
        batches=(1, 2, 4, 8, 16, 32, 64),
    ),
    "gpu": Scale(
        steps=5000,
        device="cuda",
        curve=Points(10, 256),
        final_n=2048,
        overrides=GPU,
        batches=(1, 2, 4, 8, 16, 32, 64),
    ),  # fmt: skip
}
