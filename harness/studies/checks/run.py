"""The self-check suites: `engine` (every stage plan of every form checked end to end
against known answers) and `cost` (FLOPs, times and speedups per stage). Each writes its
tables and summary.json to `out`; `report` writes report.md from them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.common.io import write_csv, write_json
from harness.engine.forms import FORMS
from harness.engine.oracle import OracleDenoiser
from harness.engine.pyramid import jump, lambda_max, stage_data, uniform_plan, upsample
from harness.engine.sampler import sample
from harness.measure.cost import CONVENTION, cost_tables
from harness.measure.gate import target_table
from harness.pipeline.provenance import code_revision
from harness.studies.checks import report


def _jump_error(form, plan, x0: torch.Tensor, draws: int, g: torch.Generator) -> float:
    """Largest Monte Carlo deviation (in units of sigma^2) of the post-jump covariance and
    mean from the training marginal, over every jump of `plan`."""
    worst = 0.0
    for k in range(1, plan.num_stages):
        prev, nxt = plan.stages[k - 1], plan.stages[k]
        d = stage_data(x0, plan, k - 1)
        eps = torch.randn(draws, *d.shape[1:], generator=g, dtype=torch.float64)
        x_e = form.alpha(prev.u_end) * d + form.sigma(prev.u_end) * eps
        x_s = jump(x_e, form, plan, k, generator=g).flatten(1)
        s2 = float(form.sigma(nxt.u_start)) ** 2
        mean = (form.alpha(nxt.u_start) * upsample(d, plan.upsample)).flatten()
        cov = torch.cov(x_s.T) - s2 * torch.eye(x_s.shape[1], dtype=torch.float64)
        worst = max(
            worst, float(cov.abs().max()) / s2, float((x_s.mean(0) - mean).abs().max()) / s2**0.5
        )
    return worst


def engine(out: Path, frames: int) -> dict:
    """Stage plans of every form and upsample mode for K = 1..4 at 30 steps on `frames`
    frames, each checked end to end: the exact one-point oracle must land on its data point
    and every jump must reproduce the training marginal (Monte Carlo)."""
    draws = 50_000
    g = torch.Generator().manual_seed(0)
    plan_rows, check_rows = [], []
    cases = [(f, m, k) for f in FORMS for m in ("nearest", "linear") for k in (1, 2, 3, 4)]
    for name, mode, k in tqdm(cases, desc="engine"):
        form = FORMS[name]
        plan = uniform_plan(form, frames, k, total_steps=30, upsample=mode)
        for row in plan.rows():
            lam = lambda_max(row["frames"] // 2, mode) if row["index"] < k - 1 else float("nan")
            plan_rows.append(dict(form=name, upsample=mode, K=k, **row, jump_lambda=lam))
        x_star = torch.randn(1, 2, frames, 4, 4, generator=g, dtype=torch.float64)
        x = sample(
            OracleDenoiser(form, plan, x_star),
            form,
            plan,
            (4, 2, frames, 4, 4),
            generator=g,
            dtype=torch.float64,
        )
        tiny = torch.randn(1, 1, 2 ** (k - 1) * 2, 1, 1, generator=g, dtype=torch.float64)
        tiny_plan = uniform_plan(form, tiny.shape[2], k, total_steps=30, upsample=mode)
        check_rows.append(
            dict(
                form=name,
                upsample=mode,
                K=k,
                steps="/".join(map(str, plan.steps)),
                oracle_max_error=float((x - x_star).abs().max()),
                jump_marginal_error=_jump_error(form, tiny_plan, tiny, draws, g) if k > 1 else 0.0,
            )
        )
    plans, checks = pd.DataFrame(plan_rows), pd.DataFrame(check_rows)
    write_csv(out / "plans.csv", plans)
    write_csv(out / "checks.csv", checks)
    ok_oracle = bool((checks.oracle_max_error < 1e-4).all())
    ok_jump = bool((checks.jump_marginal_error < 0.05).all())
    summary = dict(
        suite="engine",
        code=code_revision(),
        frames=frames,
        jump_draws=draws,
        oracle_max_error=float(checks.oracle_max_error.max()),
        jump_marginal_error=float(checks.jump_marginal_error.max()),
        passed=ok_oracle and ok_jump,
    )
    report.engine(out, summary, checks, plans)
    write_json(out / "summary.json", summary)
    return summary


THROUGHPUT_BATCH = 8  # the cost suite's throughput mode, beside latency mode (batch 1)
COMPILE = "inductor"  # the cost suite samples through torch.compile (training steps eager)


def cost(out: Path, device: torch.device) -> dict:
    """Per-stage cost table of every backbone (default form, 3 uniform stages, 30 steps) on
    `device`: MACs / FLOPs with attention, measured forward, training-step and sampling
    times, achieved GMAC/s per stage, FLOP-ratio speedup bound and measured speedup, in
    latency mode (batch 1) and throughput mode (batch 8), sampling through torch.compile."""
    stages, plans = cost_tables(device, throughput_batch=THROUGHPUT_BATCH, compile=COMPILE,
                                progress=True)  # fmt: skip
    write_csv(out / "cost_stages.csv", stages)
    write_csv(out / "cost_plans.csv", plans)
    figures = {
        row["backbone"]: {
            k: row[k] for k in ("measured_over_bound", "throughput_measured_over_bound")
        }
        for row in plans.to_dict("records")
    }
    targets = target_table(figures)
    summaries = {row["backbone"]: row for row in plans.to_dict("records")}
    summary = dict(
        suite="cost",
        code=code_revision(),
        device=str(device),
        threads=torch.get_num_threads(),
        compile=COMPILE,
        convention=CONVENTION,
        backbones=summaries,
        targets=targets.to_dict("records"),
    )
    report.cost(out, summary, stages, plans, targets)
    write_json(out / "summary.json", summary)
    return summary
