"""report.md of the engine and cost suites, drawn from the tables and summary each suite
wrote beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.common.io import write_text

# the plan totals the cost report shows
SHOWN = [
    "backbone", "flop_ratio_bound", "inference_speedup", "measured_over_bound",
    "training_step_flop_ratio", "training_step_cost_ratio", "sampling_spread",
    "throughput_inference_speedup", "throughput_measured_over_bound",
]  # fmt: skip


def engine(out: Path, summary: dict, checks: pd.DataFrame, plans: pd.DataFrame) -> None:
    """The engine self-check: the pass/fail table and every stage plan."""
    lines = [
        "# Engine self-check",
        "",
        f"Oracle landing (float64, must be < 1e-4) and jump marginal Monte Carlo "
        f"({summary['jump_draws']} draws; max |cov - sigma^2 I| / sigma^2 and |mean error| / "
        f"sigma, must be < 0.05). Passed: **{summary['passed']}**.",
        "",
        checks.to_markdown(index=False, floatfmt=".3g"),
        "",
        f"## Stage plans ({summary['frames']} frames, uniform jump points, 30 steps)",
        "",
        plans.to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))


def cost(out: Path, summary: dict, stages: pd.DataFrame, plans: pd.DataFrame,
         targets: pd.DataFrame) -> None:  # fmt: skip
    """The cost suite: per-stage costs, plan totals and measured/bound against the targets."""
    lines = [
        "# Cost per stage (3 uniform stages, 30 sampling steps, 16 frames, 32x32)",
        "",
        f"Convention: {summary['convention']}. Device: {summary['device']}, "
        f"{summary['threads']} threads; sampling compiled with torch.compile "
        f"({summary['compile']}), training eager.",
        "",
        stages.to_markdown(index=False, floatfmt=".4g"),
        "",
        "## Plan totals",
        "",
        plans[SHOWN].to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Measured/bound against the speed targets",
        "",
        targets.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))
