"""Suites: named end-to-end jobs run by `python -m harness.run --suite NAME`.

A suite is `fn(out: Path, scale: str, fresh: bool) -> dict` that writes its tables to
`out` and returns a JSON-able summary (`fresh`: move an occupied folder aside first, for
suites that resume; see `harness.pipeline.provenance.claim_folder`). Suites are entries in
`SUITES`; their keys are the only names the CLI and result folders use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.common.io import write_csv, write_json, write_text
from harness.engine.forms import FORMS
from harness.engine.oracle import OracleDenoiser
from harness.engine.pyramid import jump, lambda_max, stage_data, uniform_plan, upsample
from harness.engine.sampler import sample
from harness.measure.cost import CONVENTION, cost_tables
from harness.measure.gate import target_table
from harness.pipeline.provenance import code_revision
from harness.studies.paper import paper as paper_suite

Suite = Callable[[Path, str, bool], dict]


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


def engine(out: Path, scale: str, fresh: bool = False) -> dict:
    """Stage plans of every form and upsample mode for K = 1..4 at 30 steps, each
    checked end to end: the exact one-point oracle must land on its data point and
    every jump must reproduce the training marginal (Monte Carlo)."""
    frames = 16 if scale == "cpu" else 64
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
    write_text(
        out / "report.md",
        "\n".join(
            [
                "# Engine self-check",
                "",
                f"Oracle landing (float64, must be < 1e-4) and jump marginal Monte Carlo "
                f"({draws} draws; max |cov - sigma^2 I| / sigma^2 and |mean error| / sigma, "
                f"must be < 0.05). Passed: **{summary['passed']}**.",
                "",
                checks.to_markdown(index=False, floatfmt=".3g"),
                "",
                f"## Stage plans ({frames} frames, uniform jump points, 30 steps)",
                "",
                plans.to_markdown(index=False, floatfmt=".4g"),
                "",
            ]
        ),
    )
    write_json(out / "summary.json", summary)
    return summary


THROUGHPUT_BATCH = 8  # the cost suite's throughput mode, beside latency mode (batch 1)
COMPILE = "inductor"  # the cost suite samples through torch.compile (training steps eager)


def cost(out: Path, scale: str, fresh: bool = False) -> dict:
    """Per-stage cost table of every backbone (default form, 3 uniform stages, 30 steps):
    MACs / FLOPs with attention, measured forward, training-step and sampling times, achieved
    GMAC/s per stage, FLOP-ratio speedup bound and measured speedup, in latency mode (batch
    1) and throughput mode (batch 8), sampling through torch.compile."""
    device = torch.device("cuda" if scale == "gpu" and torch.cuda.is_available() else "cpu")
    if scale == "gpu" and device.type != "cuda":
        raise ValueError("--scale gpu needs a CUDA device; use --scale cpu here")
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
    shown = [
        "backbone",
        "flop_ratio_bound",
        "inference_speedup",
        "measured_over_bound",
        "training_step_flop_ratio",
        "training_step_cost_ratio",
        "sampling_spread",
        "throughput_inference_speedup",
        "throughput_measured_over_bound",
    ]
    write_text(
        out / "report.md",
        "\n".join(
            [
                "# Cost per stage (3 uniform stages, 30 sampling steps, 16 frames, 32x32)",
                "",
                f"Convention: {CONVENTION}. Device: {device}, {torch.get_num_threads()} "
                f"threads; sampling compiled with torch.compile ({COMPILE}), training eager.",
                "",
                stages.to_markdown(index=False, floatfmt=".4g"),
                "",
                "## Plan totals",
                "",
                plans[shown].to_markdown(index=False, floatfmt=".3f"),
                "",
                "## Measured/bound against the speed targets",
                "",
                targets.to_markdown(index=False, floatfmt=".3f"),
                "",
            ]
        ),
    )
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
    write_json(out / "summary.json", summary)
    return summary


def smoke(out: Path, scale: str, fresh: bool = False) -> dict:
    """Every stage of the paper suite at tiny size (minutes on 2 CPU cores; used by CI)."""
    return paper_suite(out, "smoke", fresh)


def paper(out: Path, scale: str, fresh: bool = False) -> dict:
    """Tables 1 and 3 and Figures 5 and 6 analogues from matched runs (harness.studies.paper)."""
    return paper_suite(out, scale, fresh)


SUITES: dict[str, Suite] = {
    "engine": engine,
    "cost": cost,
    "smoke": smoke,
    "paper": paper,
}
