"""The CPU recipe study: which settings make the CPU-scale models learn (issue 17).

Each candidate is a vanilla baseline (`baselines/<backbone>-vanilla.toml`) with a few levers
changed: canvas and digit size, digits per clip, the tiny autoencoder (latent diffusion),
backbone size and patch, learning-rate schedule, EMA, batch, steps, guidance. It is trained
in chunks (`trials.train_and_score`, resumable, bit-identical to one run) and scored at each
chunk end on `n` videos: FVD-md with its 90 % bootstrap interval and PA-md-digit. The real
vs real and noise vs real references are scored at the same n on the candidate's data, so
every row says how far from "learned nothing" and from "as good as real data" it is.

    python -m harness.studies.recipe                    # every candidate into results/recipe/
    python -m harness.studies.recipe dit-latent unet-latent --n 128

Outputs: `recipe.csv` (one row per candidate and scored step: levers, minutes on this
machine, FVD-md [lo, hi], PA-md-digit, the references and whether the issue's bar is met),
`grids/<candidate>.png` (the final weights' samples) and `report.md`. A rerun reuses every
score whose identity (config, weights, sampling, metrics, n, code) matches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from harness.common.cli import add_debug_flag, guarded
from harness.common.config import Config
from harness.common.io import write_csv, write_text
from harness.common.lock import owned
from harness.metrics import MetricOptions
from harness.pipeline.evaluate import reference_scores
from harness.pipeline.sample import main as sample_main
from harness.studies import cpu_recipe
from harness.studies.trials import BASELINES, TrialScale, split_sampling, train_and_score
from harness.studies.verdicts import QUALITY_BAR_FVD, QUALITY_BAR_PA, bar_misses

OUT = Path(__file__).resolve().parents[2] / "results" / "recipe"
# the data and evaluator every candidate shares, and the recipe's levers (cpu_recipe)
DATA, EVALUATOR, OPTIM = cpu_recipe.DATA, cpu_recipe.EVALUATOR, cpu_recipe.OPTIM
GUIDED, LATENT = cpu_recipe.GUIDED, cpu_recipe.LATENT
# name -> (backbone, steps, overrides on baselines/<backbone>-vanilla.toml)
CANDIDATES: dict[str, tuple[str, int, dict]] = {
    "dit-pixel-p4": ("dit", 1500, DATA | OPTIM | GUIDED | dict(size="small-p4")),
    "dit-latent": ("dit", 1500, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-latent-noguide": ("dit", 1500, DATA | OPTIM | LATENT | dict(size="small-p2")),
    "dit-latent-long": ("dit", 3000, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-latent-6k": ("dit", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-base-latent-6k": ("dit", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="base-p2")),
    # the two levers of the recipe, one at a time at the recipe's steps: pixels instead of
    # latents (4x4-pixel patches: the same 16 tokens per frame), and no guidance
    "dit-pixel-p4-6k": ("dit", 6000, DATA | OPTIM | GUIDED | dict(size="small-p4")),
    "dit-latent-noguide-6k": ("dit", 6000, DATA | OPTIM | LATENT | dict(size="small-p2")),
    "unet-pixel": ("unet", 1500, DATA | OPTIM | GUIDED | dict(size="lite")),
    "unet-latent": ("unet", 1500, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
    "unet-latent-long": ("unet", 2000, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
    "unet-latent-6k": ("unet", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
}
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
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["candidate"])
    rows = [r for r in old.to_dict("records") if r["candidate"] not in names]
    for name in tqdm(names, desc="recipe candidates"):
        cfg = candidate_config(name, out / "runs", evals)
        scale = TrialScale(steps=cfg.steps, evals=evals, eval_samples=n, device="cpu",
                           evaluator=EVALUATOR)  # fmt: skip
        start = time.perf_counter()
        scored = train_and_score(cfg, scale, options, metrics=METRICS)
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
    write_text(out / "report.md", report_md(table))
    return table


def report_md(table: pd.DataFrame) -> str:
    final = table.sort_values("step").groupby("candidate").tail(1).sort_values("candidate")
    missing = [name for name in CANDIDATES if name not in set(final.candidate)]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.studies.recipe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("candidates", nargs="*", help=f"default: all of {list(CANDIDATES)}")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    parser.add_argument("--n", type=int, default=128, help="videos per score (default 128)")
    parser.add_argument("--evals", type=int, default=3, help="scored points per run")
    parser.add_argument(
        "--report", action="store_true", help="only redraw report.md from --out's recipe.csv"
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    unknown = set(args.candidates) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {list(CANDIDATES)}")
    if args.report:
        table = pd.read_csv(args.out / "recipe.csv")
        write_text(args.out / "report.md", report_md(table))
        return 0
    names = args.candidates or list(CANDIDATES)
    def held() -> pd.DataFrame:
        with owned(args.out, "recipe study folder"):
            return study(args.out, names, args.n, args.evals)

    guarded(parser.prog, args.debug, held)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
