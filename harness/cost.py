"""Cost of a backbone under a stage plan: MACs per stage (fvcore + attention),
measured forward / training-step / sampling times, and the speedup bound.

Conventions (also printed in every table): 1 MAC = one multiply-add (fvcore's
"flop"); FLOPs = 2 x MACs; training-step FLOPs use forward + backward = 3 x
forward; times follow `harness.timing.measure` (warm-up, synchronize, median).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
import torch.nn.functional as F

from harness.backbones import build_backbone
from harness.flops import count_macs, expected_training_macs, plan_macs
from harness.pyramid import StagePlan, make_plan, uniform_plan
from harness.sampling import sample
from harness.stagewise import stage_probabilities
from harness.timing import measure

# each backbone with the form of its role in the paper (MiniFlux-vid: flow, AnimateDiff: DDIM)
PAIRS = (("dit", "flow"), ("unet", "ddim"))

CONVENTION = (
    "1 MAC = one multiply-add (fvcore); FLOPs = 2 x MACs; attention (SDPA) counted; "
    "training FLOPs = 3 x forward; times: median of repeats after warm-up"
)


@dataclass(frozen=True)
class CostSetup:
    backbone: str
    size: str = "small"
    form: str = "flow"
    frames: int = 16
    resolution: int = 32
    channels: int = 1
    text_dim: int = 64
    text_len: int = 12
    train_batch: int = 8
    sample_batch: int = 1
    repeats: int = 3


def measure_costs(
    setup: CostSetup, plan: StagePlan, device: torch.device
) -> tuple[pd.DataFrame, dict]:
    """Per-stage rows (plus a `total` row) and plan-level figures for `plan` vs vanilla."""
    torch.manual_seed(0)
    model = build_backbone(
        setup.backbone, setup.size, setup.channels, setup.text_dim, setup.frames, setup.resolution
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    hw = (setup.resolution, setup.resolution)

    def inputs(batch: int, frames: int):
        return (
            torch.randn(batch, setup.channels, frames, *hw, device=device),
            torch.rand(batch, device=device),
            torch.randn(batch, setup.text_len, setup.text_dim, device=device),
        )

    def train_step(x, u, cond):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x, u, cond), x).backward()
        opt.step()

    per_frames = {}
    for frames in sorted({s.frames for s in plan.stages} | {setup.frames}):
        count = count_macs(model, inputs(1, frames))
        with torch.no_grad():
            fwd = measure(
                partial(model, *inputs(setup.sample_batch, frames)), device, repeats=setup.repeats
            )
        step = measure(
            partial(train_step, *inputs(setup.train_batch, frames)), device, repeats=setup.repeats
        )
        per_frames[frames] = (count, fwd, step)

    full_macs = per_frames[setup.frames][0].macs
    full_fwd, full_step = per_frames[setup.frames][1].median_s, per_frames[setup.frames][2].median_s
    probs = stage_probabilities(plan).tolist()
    rows = []
    for s, p in zip(plan.stages, probs):
        count, fwd, step = per_frames[s.frames]
        rows.append(
            dict(
                backbone=setup.backbone,
                stage=str(s.index),
                frames=s.frames,
                steps=s.steps,
                train_prob=p,
                macs=count.macs,
                flops=count.flops,
                attention_share=count.attention_share,
                macs_vs_full=count.macs / full_macs,
                forward_ms=1e3 * fwd.median_s,
                forward_vs_full=fwd.median_s / full_fwd,
                train_step_ms=1e3 * step.median_s,
                train_step_vs_full=step.median_s / full_step,
                plan_macs=s.steps * count.macs,
            )
        )
    table = pd.DataFrame(rows)
    total = {c: "" for c in table.columns} | dict(
        backbone=setup.backbone,
        stage="total",
        steps=int(table.steps.sum()),
        plan_macs=int(table.plan_macs.sum()),
    )
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)

    vanilla = make_plan(setup.form, setup.frames, (), (plan.total_steps,))
    macs = {f: v[0].macs for f, v in per_frames.items()}
    net = lambda x, u, cond: model(x, u, cond)  # noqa: E731
    shape = (setup.sample_batch, setup.channels, setup.frames, *hw)
    cond = torch.randn(setup.sample_batch, setup.text_len, setup.text_dim, device=device)

    def run(p):
        return lambda: sample(
            net,
            setup.form,
            p,
            shape,
            cond=cond,
            device=device,
            generator=torch.Generator(device=device).manual_seed(0),
        )

    with torch.no_grad():
        t_vanilla = measure(run(vanilla), device, repeats=setup.repeats)
        t_tpdiff = measure(run(plan), device, repeats=setup.repeats)
    bound = plan_macs(macs, vanilla) / plan_macs(macs, plan)
    speedup = t_vanilla.median_s / t_tpdiff.median_s
    step_time = {f: v[2].median_s for f, v in per_frames.items()}
    measured_step = sum(p * step_time[s.frames] for p, s in zip(probs, plan.stages))
    summary = dict(
        backbone=setup.backbone,
        form=setup.form,
        frames=setup.frames,
        plan=plan.to_dict(),
        vanilla_plan_macs=plan_macs(macs, vanilla),
        tpdiff_plan_macs=plan_macs(macs, plan),
        flop_ratio_bound=bound,
        vanilla_sampling_s=t_vanilla.median_s,
        tpdiff_sampling_s=t_tpdiff.median_s,
        sampling_spread=max(t_vanilla.spread, t_tpdiff.spread),
        inference_speedup=speedup,
        measured_over_bound=speedup / bound,
        training_step_flop_ratio=expected_training_macs(macs, plan)
        / expected_training_macs(macs, vanilla),
        training_step_cost_ratio=measured_step / step_time[setup.frames],
        peak_memory_bytes=max(t_vanilla.peak_memory, t_tpdiff.peak_memory),
    )
    return table, summary


def setup_for(cfg) -> CostSetup:
    """The CostSetup of a training config: its backbone and size at the shape the backbone
    sees (latents with the tiny autoencoder), its frame count and text width."""
    latent = cfg.latent_channels > 0
    return CostSetup(
        backbone=cfg.backbone,
        size=cfg.size,
        form=cfg.form,
        frames=cfg.plan_frames,
        resolution=cfg.resolution // 2**cfg.latent_down if latent else cfg.resolution,
        channels=cfg.latent_channels if latent else cfg.channels,
        text_dim=cfg.text_dim,
        text_len=cfg.text_len,
        train_batch=cfg.batch_size,
    )


def cost_tables(
    device: torch.device,
    size: str = "small",
    frames: int = 16,
    num_stages: int = 3,
    total_steps: int = 30,
    setups: list[CostSetup] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-stage rows of every backbone (uniform `num_stages` plan) and one row of plan-level
    figures per backbone (bound, measured speedup, training-step ratios). `setups`: the
    backbones as configured (e.g. `setup_for` of the suite's runs), else every backbone of
    PAIRS at `size` and `frames`."""
    if setups is None:
        setups = [CostSetup(backbone=b, size=size, form=f, frames=frames) for b, f in PAIRS]
    tables, summaries = [], []
    for setup in setups:
        plan = uniform_plan(setup.form, setup.frames, num_stages, total_steps=total_steps)
        table, summary = measure_costs(setup, plan, device)
        tables.append(table)
        summaries.append({k: v for k, v in summary.items() if k != "plan"})
    return pd.concat(tables, ignore_index=True), pd.DataFrame(summaries)
