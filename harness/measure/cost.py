"""Cost of a backbone under a stage plan: MACs per stage (fvcore + attention),
measured forward / training-step / sampling times, and the speedup bound.

Conventions (also printed in every table): 1 MAC = one multiply-add (fvcore's
"flop"); FLOPs = 2 x MACs; training-step FLOPs use forward + backward = 3 x
forward; times follow `harness.measure.timing.measure` (warm-up, synchronize, median). The
training step timed is the training loop's own (stage-wise noising with aligned noise,
loss, backward, AdamW update), per stage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import pandas as pd
import torch
import torch.nn.functional as F

from harness.common.environment import environment
from harness.engine.pyramid import StagePlan, make_plan, uniform_plan
from harness.engine.sampler import sample
from harness.engine.stagewise import draw_training_batch, stage_probabilities
from harness.measure.flops import FlopCount, count_macs, expected_training_macs, plan_macs
from harness.measure.timing import Timing, measure
from harness.models.backbones import build_backbone
from harness.models.codec import codec_for
from harness.models.execution import compiled

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
    sample_batch: int = 1  # latency mode, as in the paper's table
    throughput_batch: int = 0  # throughput mode's batch (0: latency mode only)
    repeats: int = 3
    compile: str = "off"  # torch.compile backend of the sampling forward passes (or off)


class Probe:
    """A randomly initialised backbone of `setup` on `device` and inputs for it.

    `infer` is the module the sampling forward passes run: the backbone itself, or with
    `setup.compile` a `torch.compile` of it (static shapes: one graph per frame count and
    batch, compiled by the untimed warm-up). MACs are counted and training steps taken on
    the uncompiled backbone, which shares its parameters."""

    def __init__(self, setup: CostSetup, device: torch.device):
        torch.manual_seed(0)
        self.setup, self.device = setup, device
        self.model = build_backbone(setup.backbone, setup.size, setup.channels, setup.text_dim,
                                    setup.frames, setup.resolution).to(device)  # fmt: skip
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.infer = compiled(self.model, setup.compile)

    def video(self, batch: int, frames: int) -> torch.Tensor:
        s = self.setup
        return torch.randn(batch, s.channels, frames, s.resolution, s.resolution,
                           device=self.device)  # fmt: skip

    def cond(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.setup.text_len, self.setup.text_dim, device=self.device)

    def inputs(self, batch: int, frames: int) -> tuple[torch.Tensor, ...]:
        return self.video(batch, frames), torch.rand(batch, device=self.device), self.cond(batch)

    def train_step(
        self, plan: StagePlan, stage: int, x0: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """The training loop's step (harness.pipeline.train.train_step) on a bare backbone:
        stage-wise noising with aligned noise, the loss, backward, the update; the loss."""
        g = torch.Generator(device=self.device).manual_seed(0)
        batch = draw_training_batch(self.setup.form, plan, x0, generator=g, stage=stage)
        loss = F.mse_loss(self.model(batch.x_u, batch.u, cond), batch.target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def forward_costs(probe: Probe, frames: list[int]) -> dict[int, tuple[FlopCount, Timing]]:
    """{frames: (MACs of one sample, forward time at the sampling batch)}."""
    counts = {f: count_macs(probe.model, probe.inputs(1, f)) for f in sorted(set(frames))}
    times = forward_times(probe, list(counts), probe.setup.sample_batch)
    return {f: (counts[f], times[f]) for f in counts}


def forward_times(probe: Probe, frames: list[int], batch: int) -> dict[int, Timing]:
    """{frames: time of one forward pass of `batch` samples}."""
    with torch.inference_mode():
        return {f: measure(partial(probe.infer, *probe.inputs(batch, f)), probe.device,
                           repeats=probe.setup.repeats) for f in frames}  # fmt: skip


def training_step_times(probe: Probe, plan: StagePlan) -> list[Timing]:
    """Time of one real training step in each stage of `plan` (full-rate videos in, the
    stage's frames through the network) at the setup's training batch."""
    s = probe.setup
    x0, cond = probe.video(s.train_batch, s.frames), probe.cond(s.train_batch)
    return [
        measure(partial(probe.train_step, plan, k, x0, cond), probe.device, repeats=s.repeats)
        for k in range(plan.num_stages)
    ]


def sampling_times(probe: Probe, plans: list[StagePlan], batch: int = 0) -> list[Timing]:
    """Time to sample one batch of videos (default: the sampling batch) with each plan."""
    s = probe.setup
    batch = batch or s.sample_batch
    shape = (batch, s.channels, s.frames, s.resolution, s.resolution)
    with torch.inference_mode():  # inference tensors, like the sampler's: no recompile
        cond = probe.cond(batch)

    def run(plan: StagePlan):
        g = lambda: torch.Generator(device=probe.device).manual_seed(0)  # noqa: E731
        return lambda: sample(probe.infer, s.form, plan, shape, cond=cond,
                              device=probe.device, generator=g())  # fmt: skip

    with torch.inference_mode():
        return [measure(run(p), probe.device, repeats=s.repeats) for p in plans]


def mode_figures(batch: int, macs: dict, fwd: dict, t_vanilla: Timing, t_tpdiff: Timing,
                 bound: float) -> dict:  # fmt: skip
    """One mode's figures: sampling times, speedup against the bound, GMAC/s per frames."""
    speedup = t_vanilla.median_s / t_tpdiff.median_s
    return dict(
        batch=batch,
        vanilla_sampling_s=t_vanilla.median_s,
        tpdiff_sampling_s=t_tpdiff.median_s,
        sampling_spread=max(t_vanilla.spread, t_tpdiff.spread),
        inference_speedup=speedup,
        measured_over_bound=speedup / bound,
        gmacs_per_s={str(f): batch * macs[f] / t.median_s / 1e9 for f, t in fwd.items()},
    )


def throughput_mode(probe: Probe, plan: StagePlan, vanilla: StagePlan, macs: dict,
                    bound: float) -> dict:  # fmt: skip
    """The mode's figures at the setup's throughput batch."""
    batch = probe.setup.throughput_batch
    fwd = forward_times(probe, sorted(macs), batch)
    t_vanilla, t_tpdiff = sampling_times(probe, [vanilla, plan], batch)
    return mode_figures(batch, macs, fwd, t_vanilla, t_tpdiff, bound)


def stage_table(setup, plan, per_frames, steps: list[Timing], vanilla_step: Timing):
    """A row per stage (MACs, forward and training-step times against the full rate) plus
    a `total` row."""
    full_macs, full_fwd = per_frames[setup.frames][0].macs, per_frames[setup.frames][1]
    rows = []
    for s, p, step in zip(plan.stages, stage_probabilities(plan).tolist(), steps):
        count, fwd = per_frames[s.frames]
        rows.append(dict(
            backbone=setup.backbone, stage=str(s.index), frames=s.frames, steps=s.steps,
            train_prob=p, macs=count.macs, flops=count.flops,
            attention_share=count.attention_share, macs_vs_full=count.macs / full_macs,
            forward_ms=1e3 * fwd.median_s, forward_vs_full=fwd.median_s / full_fwd.median_s,
            gmacs_per_s=setup.sample_batch * count.macs / fwd.median_s / 1e9,
            train_step_ms=1e3 * step.median_s,
            train_step_vs_full=step.median_s / vanilla_step.median_s,
            plan_macs=s.steps * count.macs,
        ))  # fmt: skip
    table = pd.DataFrame(rows)
    total = {c: "" for c in table.columns} | dict(
        backbone=setup.backbone,
        stage="total",
        steps=int(table.steps.sum()),
        plan_macs=int(table.plan_macs.sum()),
    )
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def measure_costs(
    setup: CostSetup, plan: StagePlan, device: torch.device, say: Say = _quiet
) -> tuple[pd.DataFrame, dict]:
    """Per-stage rows (plus a `total` row) and plan-level figures for `plan` vs vanilla.
    `say(phase)` is called as each phase starts (the compile warm-ups take minutes)."""
    probe = Probe(setup, device)
    vanilla = make_plan(setup.form, setup.frames, (), (plan.total_steps,))
    warm = f", compiling each frame count ({setup.compile})" if setup.compile != "off" else ""
    say(f"FLOPs (fvcore) and forward times at batch {setup.sample_batch}{warm}")
    per_frames = forward_costs(probe, [s.frames for s in plan.stages] + [setup.frames])
    say(f"training steps, {plan.num_stages} stages and vanilla, batch {setup.train_batch}")
    steps = training_step_times(probe, plan)
    (vanilla_step,) = training_step_times(probe, vanilla)
    say(f"sampling, latency mode (batch {setup.sample_batch}), vanilla and TPDiff")
    t_vanilla, t_tpdiff = sampling_times(probe, [vanilla, plan])
    macs = {f: count.macs for f, (count, _) in per_frames.items()}
    bound = plan_macs(macs, vanilla) / plan_macs(macs, plan)
    fwd = {f: timing for f, (_, timing) in per_frames.items()}
    latency = mode_figures(setup.sample_batch, macs, fwd, t_vanilla, t_tpdiff, bound)
    probs = stage_probabilities(plan).tolist()
    measured_step = sum(p * t.median_s for p, t in zip(probs, steps))
    summary = dict(
        backbone=setup.backbone,
        form=setup.form,
        frames=setup.frames,
        plan=plan.to_dict(),
        vanilla_plan_macs=plan_macs(macs, vanilla),
        tpdiff_plan_macs=plan_macs(macs, plan),
        flop_ratio_bound=bound,
        **{k: v for k, v in latency.items() if k not in ("batch", "gmacs_per_s")},
        training_step_flop_ratio=expected_training_macs(macs, plan)
        / expected_training_macs(macs, vanilla),
        training_step_cost_ratio=measured_step / vanilla_step.median_s,
        peak_memory_bytes=max(t_vanilla.peak_memory, t_tpdiff.peak_memory),
        latency=latency,
        **environment(),  # torch version and threads the times were measured with
    )
    table = stage_table(setup, plan, per_frames, steps, vanilla_step)
    if setup.throughput_batch:
        say(f"throughput mode (batch {setup.throughput_batch}){warm}")
        summary["throughput"] = throughput_mode(probe, plan, vanilla, macs, bound)
        rates = summary["throughput"]["gmacs_per_s"]
        table[f"gmacs_per_s_b{setup.throughput_batch}"] = [
            rates.get(str(f), "") if s != "total" else "" for s, f in zip(table.stage, table.frames)
        ]
    return table, summary


def batch_sweep(setup: CostSetup, batches: list[int], device: torch.device,
                num_stages: int = 3, total_steps: int = 30) -> pd.DataFrame:  # fmt: skip
    """Sampling time of vanilla and TPDiff (uniform `num_stages` plan, `total_steps`) at
    each batch of `batches`: one row per batch with the median, fastest and slowest of the
    setup's repeats of one batch (`vanilla_s`, `vanilla_s_min`, `vanilla_s_max`, the same
    for `tpdiff_s`), seconds per video, and the FLOP bound. Where the time per video stops
    falling as the batch grows, arithmetic, not per-call overhead, sets the time."""
    probe = Probe(setup, device)
    plan = uniform_plan(setup.form, setup.frames, num_stages, total_steps=total_steps)
    vanilla = make_plan(setup.form, setup.frames, (), (plan.total_steps,))
    frames = sorted({st.frames for st in plan.stages} | {setup.frames})
    macs = {f: count_macs(probe.model, probe.inputs(1, f)).macs for f in frames}
    bound = plan_macs(macs, vanilla) / plan_macs(macs, plan)
    rows = []
    for batch in batches:
        t_van, t_tp = sampling_times(probe, [vanilla, plan], batch)
        row = dict(backbone=setup.backbone, form=setup.form, batch=batch, flop_ratio_bound=bound,
                   repeats=setup.repeats, **environment())  # fmt: skip
        for arm, t in (("vanilla", t_van), ("tpdiff", t_tp)):
            row |= {f"{arm}_s": t.median_s, f"{arm}_s_min": t.min_s, f"{arm}_s_max": t.max_s,
                    f"{arm}_s_per_video": t.median_s / batch}  # fmt: skip
        row["speedup"] = t_van.median_s / t_tp.median_s
        rows.append(row)
    return pd.DataFrame(rows)


def setup_for(cfg) -> CostSetup:
    """The CostSetup of a training config: its backbone and size at the shape the backbone
    sees (through its codec: video, or latents), its frame count and text width."""
    channels, frames, size, _ = codec_for(cfg, progress=False).latent_shape(
        cfg.frames, cfg.resolution
    )
    return CostSetup(
        backbone=cfg.backbone,
        size=cfg.size,
        form=cfg.form,
        frames=frames,
        resolution=size,
        channels=channels,
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
    throughput_batch: int = 0,
    compile: str = "off",
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-stage rows of every backbone (uniform `num_stages` plan) and one row of plan-level
    figures per backbone (bound, measured speedup, training-step ratios). `setups`: the
    backbones as configured (e.g. `setup_for` of the suite's runs), else every backbone of
    PAIRS at `size` and `frames`. `throughput_batch` > 0 adds the throughput mode; `compile`
    (a torch.compile backend) compiles the sampling passes of every setup. The modes'
    figures are flattened into columns `<mode>_<figure>` (GMAC/s: `<mode>_gmacs_per_s_<F>`).
    `progress`: a line on stderr as each backbone's phase starts, with the time so far."""
    if setups is None:
        setups = [CostSetup(backbone=b, size=size, form=f, frames=frames) for b, f in PAIRS]
    tables, summaries = [], []
    start = time.perf_counter()
    for i, setup in enumerate(setups):
        setup = replace(setup, throughput_batch=throughput_batch, compile=compile)
        plan = uniform_plan(setup.form, setup.frames, num_stages, total_steps=total_steps)
        head = f"cost [{i + 1}/{len(setups)}] {setup.backbone} ({setup.form})"
        say = partial(_progress, head, start) if progress else _quiet
        table, summary = measure_costs(setup, plan, device, say)
        tables.append(table)
        summaries.append(_flat(summary))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(summaries)


def _progress(head: str, start: float, phase: str) -> None:
    elapsed = time.perf_counter() - start
    print(f"{head}: {phase} ... [{elapsed:.0f} s]", file=sys.stderr, flush=True)


def _flat(summary: dict) -> dict:
    """The plan-level summary without the plan, each mode's figures as `<mode>_<figure>`."""
    flat = {k: v for k, v in summary.items() if k not in ("plan", "latency", "throughput")}
    for mode in ("latency", "throughput"):
        for key, value in summary.get(mode, {}).items():
            if isinstance(value, dict):
                flat |= {f"{mode}_{key}_{f}": v for f, v in value.items()}
            else:
                flat[f"{mode}_{key}"] = value
    return flat
