"""report.md of a recipe-study folder, drawn from its recipe.csv alone
(`python -m harness.studies.recipe --report`, or `python -m harness.report DIR`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.common.io import write_text
from harness.studies.core.inputs import read_csv_strict
from harness.studies.core.staging import staged
from harness.studies.core.verdicts import QUALITY_BAR_FVD as FVD_BAR
from harness.studies.core.verdicts import QUALITY_BAR_PA as PA_BAR
from harness.studies.recipe.candidates import CANDIDATES


def report_md(table: pd.DataFrame, candidates: list[str]) -> str:
    """The study's report from recipe.csv's rows; `candidates`: every registered one (those
    without rows are listed as not run yet)."""
    final = table.sort_values("step").groupby("candidate").tail(1).sort_values("candidate")
    missing = [name for name in candidates if name not in set(final.candidate)]
    grids = [f"- `{c}`: ![{c}](grids/{c}.png)" for c in final.candidate]
    cols = ["candidate", "backbone", "size", "latent_channels", "steps", "guidance",
            "train_min", "FVD_md", "FVD_md_lo", "FVD_md_hi", "real_FVD_md", "noise_FVD_md",
            "fvd_over_real", "PA_md_digit", "chance_PA_md_digit", "meets_bar"]  # fmt: skip
    lines = [
        "# CPU recipe study",
        "",
        "Vanilla runs on 2 CPU cores; each scored at its last step on n generated videos "
        "against n real ones (FVD-md with its 90 % bootstrap interval, PA-md-digit); the "
        f"references are scored at the same n. The bar (issue 17): FVD-md <= {FVD_BAR:g} x "
        f"real vs real and PA-md-digit >= {PA_BAR}. Every row, with the points along each "
        "run, is in `recipe.csv`; the samples of each candidate's final weights are in "
        "`grids/`.",
        "",
        final[cols].to_markdown(index=False, floatfmt=".3g"),
        "",
        "`train_min` is the training wall time on this machine (2 cores, shared with other "
        "work at times); `study_min` in the CSV adds scoring.",
        "",
        "Not run yet: " + (", ".join(f"`{m}`" for m in missing) or "none") + ".",
        "",
        "## Samples (final weights, 30 steps, one row per prompt)",
        "",
        *grids,
        "",
    ]
    return "\n".join(lines)


def build(out: Path, candidates: list[str]) -> pd.DataFrame:
    """Redraw report.md of the recipe folder `out` from its recipe.csv, checked whole first
    (a torn or inconsistent file ends with one line naming it; nothing is written)."""
    fix = (f"restore it from git (a committed folder) or rerun python -m "
           f"harness.studies.recipe --out {out}")  # fmt: skip
    table = read_csv_strict(out / "recipe.csv", fix, filled=("candidate", "step", "n"),
                            numeric=("step", "n", "train_min", "FVD_md", "PA_md_digit"),
                            key=("candidate", "step"))  # fmt: skip
    with staged(out) as stage:
        write_text(stage / "report.md", report_md(table, candidates))
    return table


def redraw(folder: Path, reference: Path | None = None) -> str:
    """`python -m harness.report DIR` on a recipe folder; returns what to print."""
    table = build(folder, list(CANDIDATES))
    return f"report: {folder / 'report.md'} ({table['candidate'].nunique()} candidates)"
