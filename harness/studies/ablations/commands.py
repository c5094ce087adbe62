"""The named ablations at paper scale, as commands: `python -m harness.studies.ablate all
--commands baselines/gpu/wan-tpdiff.toml` prints, for every variant of the ablations named,
the exact training and sampling commands on that config and the variant's expected cost
from forward FLOP counts.

A variant that changes training gets its own run (`name=<config name>-<ablation>-<variant>`,
trained with torchrun); a sampling-only variant (renoising, steps per stage) samples the
config's own run with overrides. A variant the config cannot take (K = 4 on Wan's 20
latent frames, another form for a pretrained pipeline) is listed with the reason.

Costs: training TFLOPs per sample-step (expected over the stage distribution, forward +
backward = 3 x forward), the whole run's PFLOPs (steps x batch) and sampling TFLOPs per
video (30 steps, one guidance branch), from `FORWARD_TFLOPS`: forward TFLOPs at each
latent frame count, counted with torch.utils.flop_counter on the real configurations (meta
tensors; docs/gpu.md). Frame counts not counted are scaled linearly from the nearest counted
one (AnimateDiff's cost per frame is constant to 1 % from 4 to 16 frames) and marked `~`.
"""

from __future__ import annotations

import re
from pathlib import Path

from ablations import ABLATIONS, PAPER
from harness.common.config import Config
from harness.measure.flops import expected_training_macs, plan_macs
from harness.pipeline.build import plan_for
from harness.studies.core.train_and_score import split_sampling

# forward TFLOPs of one sample at each latent frame count (docs/gpu.md, "Batch sizes and
# expected time"), per GPU config name
FORWARD_TFLOPS: dict[str, dict[int, float]] = {
    "wan-tpdiff": {5: 15.6, 10: 38.4, 20: 106.6},  # Wan2.1 1.3B, 77 frames at 480 x 480
    "animatediff-tpdiff": {4: 1.03, 8: 2.05, 16: 4.11},  # AnimateDiff, 16 frames at 256 x 256
}


def forward_tflops(counted: dict[int, float], frames: int) -> tuple[float, bool]:
    """(TFLOPs at `frames`, whether it was scaled from the nearest counted frame count)."""
    if frames in counted:
        return counted[frames], False
    near = min(counted, key=lambda f: abs(f - frames))
    return counted[near] * frames / near, True


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _overrides(changes: dict) -> str:
    def value(v):
        return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v).lower()

    return " ".join(f"{k}={value(v)}" for k, v in changes.items())


def variant_commands(config: Path, base: Config, name: str, label: str, changes: dict) -> dict:
    """Commands and expected cost of one variant on the GPU config `base` (from `config`)."""
    row = dict(ablation=name, variant=label)
    try:
        cfg = base.replace(**changes)
        plan = plan_for(cfg)
    except ValueError as err:
        return row | dict(commands=f"not run on this config: {err}")
    if label != PAPER and cfg == base:
        return row | dict(commands="the config's own setting: the paper row")
    train, sampling = split_sampling(cfg)
    same_training = split_sampling(base)[0].name == train.name
    run = f"{base.out_dir}/{base.name}"
    cmds = []
    if not same_training:
        run_name = f"{base.name}-{_slug(name)}-{_slug(label)}"
        run = f"{base.out_dir}/{run_name}"
        cmds.append(f"torchrun --nproc_per_node 8 -m harness.train --config {config} "
                    f"data_root=$DATA name={run_name} {_overrides(changes)}".strip())  # fmt: skip
    cmds.append(f"python -m harness.sample --run {run} {_overrides(sampling)}".strip())
    row["commands"] = "<br>".join(f"`{c}`" for c in cmds)
    counted = FORWARD_TFLOPS.get(base.name)
    if counted:
        per = {s.frames: forward_tflops(counted, s.frames) for s in plan.stages}
        tflops = {f: t for f, (t, _) in per.items()}
        mark = "~" if any(scaled for _, scaled in per.values()) else ""
        step = expected_training_macs(tflops, plan, cfg.stage_weighting)
        row |= dict(train_tflops_per_sample_step=f"{mark}{step:.1f}",
                    run_pflops=f"{mark}{step * cfg.steps * cfg.batch_size / 1e3:,.0f}",
                    sample_tflops_per_video=f"{mark}{plan_macs(tflops, plan):,.0f}")  # fmt: skip
    return row


def commands_table(config: Path, names: list[str]) -> list[dict]:
    """A row per variant of the ablations `names` on the GPU config file `config`."""
    base = Config.from_file(config)
    rows = []
    for name in names:
        ablation = ABLATIONS[name]
        # a GPU config keeps its own frame count (a `base` of frames is the CPU recipe's)
        shared = {k: v for k, v in ablation.base.items() if k != "frames"}
        for label, changes in ablation.variants.items():
            if label == PAPER and name != names[0]:
                continue  # the paper's setting once
            rows.append(variant_commands(config, base, name, label, shared | changes))
    return rows
