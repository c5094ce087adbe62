"""The paper suite (arXiv 2503.09566): matched vanilla / TPDiff runs on both backbone-form
pairs, quality along each run, the alignment and renoising ablations, and the cost tables.

This module only trains, samples and measures; it writes run folders (`runs/`),
`evals.csv` (one row per evaluation: run, step, renoise, metric columns) and the cost
tables. Every table and plot is then drawn from those files by `harness.report`, so
`python -m harness.report DIR` redraws them without retraining. Rerunning the suite
resumes: finished training steps and evaluations already in `evals.csv` are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from harness import report
from harness.config import Config
from harness.cost import PAIRS, cost_tables
from harness.evaluate import append_row, reference_videos, score_checkpoint
from harness.io import write_csv
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.sample import generate
from harness.sample import main as sample_main
from harness.train import main as train_main
from harness.trials import BASELINES, METRICS, TrialScale


@dataclass(frozen=True)
class PaperScale(TrialScale):
    """How big the suite runs: a TrialScale (steps, evals, eval_samples, device, overrides
    applied to every baseline config, evaluator) plus the sample grids and which backbones
    get the alignment ablation."""

    grid_samples: int = 8  # videos in each method's sample grid
    align_ablation: tuple[str, ...] = ("dit",)  # backbones trained again with align=false


SCALES: dict[str, PaperScale] = {
    "smoke": PaperScale(
        steps=4,
        evals=2,
        eval_samples=8,
        grid_samples=2,
        device="cpu",
        align_ablation=("dit",),
        overrides=dict(size="tiny", frames=8, num_videos=64, warmup_steps=2, batch_size=4),
        evaluator=EvaluatorRecipe(frames=8, steps=30, heldout=64, batch_size=16),
    ),
    "cpu": PaperScale(  # under 60 min on 2 CPU cores, evaluator training included (README)
        steps=240,
        evals=3,
        eval_samples=32,
        grid_samples=8,
        device="cpu",
        align_ablation=("dit",),
    ),
    "gpu": PaperScale(
        steps=5000,
        evals=10,
        eval_samples=512,
        grid_samples=8,
        device="cuda",
        align_ablation=("dit", "unet"),
        overrides=dict(batch_size=32, ema_decay=0.999),
    ),
}


@dataclass(frozen=True)
class RunSpec:
    backbone: str
    form: str
    method: str
    align: bool = True

    @property
    def name(self) -> str:
        return f"{self.backbone}-{self.form}-{self.method}" + ("" if self.align else "-noalign")


def run_specs(scale: PaperScale) -> list[RunSpec]:
    """Matched pairs first (both methods, both backbones), then the alignment ablation."""
    specs = [RunSpec(b, f, m) for b, f in PAIRS for m in ("vanilla", "tpdiff")]
    specs += [RunSpec(b, f, "tpdiff", align=False) for b, f in PAIRS if b in scale.align_ablation]
    return specs


def run_config(spec: RunSpec, scale: PaperScale, runs: Path) -> Config:
    """The matched baseline config of `spec` (baselines/<backbone>-<method>.toml) at `scale`."""
    base = Config.from_file(BASELINES / f"{spec.backbone}-{spec.method}.toml")
    every = scale.steps // scale.evals
    return base.replace(
        **scale.overrides,
        form=spec.form,
        align=spec.align,
        steps=scale.steps,
        snapshot_every=every,
        ckpt_every=every,
        device=scale.device,
        out_dir=str(runs),
        name=spec.name,
    )


def _done(evals_path: Path) -> set[tuple[str, int, bool]]:
    if not evals_path.is_file():
        return set()
    frame = pd.read_csv(evals_path)
    return {(r.run, int(r.step), bool(r.renoise)) for r in frame.itertuples()}


def evaluate_run(
    run: Path,
    scale: PaperScale,
    evals_path: Path,
    options: MetricOptions,
    curve: bool,
    renoise_off: bool,
) -> None:
    """Score the snapshots of `run` with its own plan (all of them if `curve`, else the last)
    and, if `renoise_off`, the last one without renoising; rows already in `evals_path` are
    skipped."""
    done = _done(evals_path)
    todo = [(snap, True) for snap in sorted((run / "snapshots").glob("step_*.pt"))]
    todo = todo if curve else todo[-1:]
    if renoise_off:
        todo.append((todo[-1][0], False))
    real = None  # the run's real videos, built once for all its scores
    for snap, renoise in todo:
        step = int(snap.stem.split("_")[1])
        if (run.name, step, renoise) in done:
            continue
        if real is None:
            cfg = Config.from_dict(json.loads((run / "config.json").read_text())["config"])
            real = reference_videos(cfg, scale.eval_samples)
        scores = score_checkpoint(
            run,
            scale.eval_samples,
            options,
            METRICS,
            checkpoint=snap.relative_to(run),
            changes=dict(renoise=renoise),
            real=real,
        )
        row = dict(run=run.name, step=step, renoise=renoise, n=scale.eval_samples, **scores)
        append_row(evals_path, row)


def renoise_strip(run: Path, out: Path, device: str) -> None:
    """The same two prompts and seeds sampled with and without renoising -> renoise_strip.pt
    ({"renoise": (2, C, F, H, W), "no_renoise": ..., "captions": [...]}) for the report."""
    videos = {}
    for key, flag in (("renoise", True), ("no_renoise", False)):
        gen = generate(run, dict(num_samples=2, renoise=flag, device=device), progress=False)
        videos[key], videos["captions"] = gen.videos, gen.captions
    torch.save(videos, out / "renoise_strip.pt")


def paper(out: Path, scale_name: str) -> dict:
    """Train, sample and measure everything `harness.report` needs, then build the report."""
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    runs, evals_path = out / "runs", out / "evals.csv"
    options = MetricOptions(evaluator=scale.evaluator, device=scale.device)
    specs = run_specs(scale)
    for spec in tqdm(specs, desc="train"):
        train_main(run_config(spec, scale, runs))
    for spec in tqdm(specs, desc="evaluate"):
        tpdiff = spec.method == "tpdiff" and spec.align
        evaluate_run(runs / spec.name, scale, evals_path, options, spec.align, renoise_off=tpdiff)
    grids = out / "grids"
    for spec in specs:
        if not (grids / f"{spec.name}.png").exists():
            folder = sample_main(
                runs / spec.name, dict(num_samples=scale.grid_samples, device=scale.device)
            )
            grids.mkdir(parents=True, exist_ok=True)
            (grids / f"{spec.name}.png").write_bytes((folder / "grid.png").read_bytes())
    first_tpdiff = next(s for s in specs if s.method == "tpdiff")
    if not (out / "renoise_strip.pt").exists():
        renoise_strip(runs / first_tpdiff.name, out, scale.device)
    if not (out / "cost_plans.csv").exists():
        shape = run_config(specs[0], scale, runs)
        stages, plans = cost_tables(torch.device(scale.device), shape.size, shape.frames)
        write_csv(out / "cost_stages.csv", stages)
        write_csv(out / "cost_plans.csv", plans)
    return report.build(out) | {"suite": "paper", "scale": scale_name}
