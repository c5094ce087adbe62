"""The CPU recipe study: which settings make the CPU-scale models learn (issue 17).

Each candidate is a vanilla baseline (`baselines/<backbone>-vanilla.toml`) with a few levers
changed: canvas and digit size, digits per clip, the tiny autoencoder (latent diffusion),
backbone size and patch, learning-rate schedule, EMA, batch, steps, guidance. It is trained
in chunks (`harness.studies.core.train_and_score`, resumable, bit-identical to one run) and
scored at each chunk end on `n` videos: FVD-md with its 90 % bootstrap interval and
PA-md-digit. The real vs real and noise vs real references are scored at the same n on the
candidate's data, so every row says how far from "learned nothing" and from "as good as
real data" it is.

    python -m harness.studies.recipe                    # every candidate into results/recipe/
    python -m harness.studies.recipe dit-latent unet-latent --n 128

Outputs: `recipe.csv` (one row per candidate and scored step: levers, minutes on this
machine, FVD-md [lo, hi], PA-md-digit, the references and whether the issue's bar is met),
`grids/<candidate>.png` (the final weights' samples) and `report.md`. A rerun reuses every
score whose identity (config, weights, sampling, metrics, n, code) matches.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.io import write_csv, write_text
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.pipeline.evaluate import reference_scores
from harness.pipeline.provenance import read_results
from harness.pipeline.sample import main as sample_main
from harness.studies.core import cpu_recipe
from harness.studies.core.scale import BASELINES, Points
from harness.studies.core.train_and_score import split_sampling, train_and_score, trial_arm
from harness.studies.core.verdicts import QUALITY_BAR_FVD, QUALITY_BAR_PA, bar_misses
from harness.studies.recipe.candidates import CANDIDATES
from harness.studies.recipe.report import report_md

OUT = Path(__file__).resolve().parents[3] / "results" / "recipe"
EVALUATOR = EvaluatorRecipe(**cpu_recipe.EVALUATOR)  # every candidate's, on the same data
METRICS = ["fvd-md", "pa-md"]
FVD_BAR, PA_BAR = QUALITY_BAR_FVD, QUALITY_BAR_PA  # the bar of a model that learns


def candidate_config(name: str, runs: Path, evals: int) -> Config:
    backbone, steps, overrides = CANDIDATES[name]
    every = steps // evals
    base = Config.from_file(BASELINES / f"{backbone}-vanilla.toml")
    return base.replace(
        **overrides, steps=steps, snapshot_every=every, ckpt_every=every, device="cpu",
        out_dir=str(runs), name=name, sample_steps=30,
    )  # fmt: skip


def levers(cfg: Config) -> dict:
    return dict(
        backbone=cfg.backbone, size=cfg.size, latent_channels=cfg.latent_channels,
        resolution=cfg.resolution, digit_size=cfg.digit_size, max_digits=cfg.max_digits,
        frames=cfg.frames, batch_size=cfg.batch_size, lr=cfg.lr, lr_schedule=cfg.lr_schedule,
        ema_decay=cfg.ema_decay, guidance=cfg.guidance, steps=cfg.steps,
    )  # fmt: skip


def study(out: Path, names: list[str], n: int, evals: int) -> pd.DataFrame:
    """Train and score each candidate of `names`; (re)write recipe.csv, grids and report.md."""
    options = MetricOptions(evaluator=EVALUATOR, device="cpu")
    path = out / "recipe.csv"
    old = read_results(path) if path.is_file() else pd.DataFrame(columns=["candidate"])
    rows = [r for r in old.to_dict("records") if r["candidate"] not in names]
    for name in tqdm(names, desc="recipe candidates"):
        cfg = candidate_config(name, out / "runs", evals)
        start = time.perf_counter()
        scored = train_and_score([trial_arm(cfg, Points(evals, n), METRICS)], options)
        refs = reference_scores(out / "references.csv", cfg, n, options, METRICS)
        real, noise = refs["real"]["FVD-md"], refs["noise"]["FVD-md"]
        for row in scored:
            fvd, pa = row["FVD-md"], row["PA-md-digit"]
            rows.append(
                dict(
                    candidate=name,
                    **levers(cfg),
                    step=row["step"],
                    n=n,
                    train_min=row["train_wall_s"] / 60,
                    FVD_md=fvd,
                    FVD_md_lo=row["FVD-md-lo"],
                    FVD_md_hi=row["FVD-md-hi"],
                    PA_md_digit=pa,
                    real_FVD_md=real,
                    noise_FVD_md=noise,
                    chance_PA_md_digit=refs["chance"]["PA-md-digit"],
                    fvd_over_real=fvd / real,
                    meets_bar=not bar_misses(fvd, pa, real),
                    study_min=(time.perf_counter() - start) / 60,
                )  # fmt: skip
            )
        grid = out / "grids" / f"{name}.png"
        if not grid.is_file():
            train, changes = split_sampling(cfg)
            run = train.run_dir
            samples = sample_main(run, changes | dict(num_samples=8), out=run / "grid")
            grid.parent.mkdir(parents=True, exist_ok=True)
            grid.write_bytes((samples / "grid.png").read_bytes())
        write_csv(path, pd.DataFrame(rows))
    table = pd.DataFrame(rows)
    write_text(out / "report.md", report_md(table, list(CANDIDATES)))
    return table
