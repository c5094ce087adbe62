"""The paper suite (arXiv 2503.09566): matched vanilla / TPDiff runs on both backbone-form
pairs, quality along each run, the alignment and renoising ablations, and the cost tables.

This module only trains, samples and measures; it writes run folders (`runs/`),
`evals.csv` (one row per evaluation: run, backbone, form, variant, step, renoise, training
FLOPs and compute time at that step, the identity of what produced it, the metric columns)
and the cost tables. Every table and plot is then drawn from those files by
`harness.report`, so `python -m harness.report DIR` redraws them without retraining.

A results folder belongs to one job (`job.json`: scale, code revision, the hash of every
run's training config, metric options, n; see `harness.provenance.claim_folder`).
Rerunning the same job into it resumes: training continues from checkpoints, and an
evaluation is reused only when its stored row has the identity of the one about to be made
(same config, weights, sampling setting, metrics, n and code). Another job is refused
before anything runs (`--out` elsewhere, or `--fresh`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness import report
from harness.config import Config
from harness.cost import PAIRS, cost_tables
from harness.evaluate import metrics_key, reference_videos, score_or_reuse
from harness.io import write_csv, write_json
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.provenance import checkpoint_info, claim_folder, code_revision, digest, training_hash
from harness.sample import generate
from harness.sample import main as sample_main
from harness.train import main as train_main
from harness.trials import BASELINES, METRICS, TrialScale

REFERENCE = report.COMMITTED  # results/paper: the committed results of one full CPU run
# evaluations that stand for each other unless their identities differ
EVAL_KEY = ("run", "step", "renoise")


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
    def variant(self) -> str:
        return self.method + ("" if self.align else "-noalign")

    @property
    def name(self) -> str:
        return f"{self.backbone}-{self.form}-{self.variant}"


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


def evaluations(run: Path, curve: bool, renoise_off: bool) -> list[tuple[Path, bool]]:
    """(snapshot, renoise) pairs to score for a trained run: every snapshot if `curve`,
    else the last; plus the last without renoising if `renoise_off`."""
    snaps = sorted((run / "snapshots").glob("step_*.pt"))
    if not snaps:
        raise FileNotFoundError(f"{run} has no snapshots/step_*.pt to score; train it first")
    todo = [(snap, True) for snap in (snaps if curve else snaps[-1:])]
    return todo + ([(snaps[-1], False)] if renoise_off else [])


def evaluate_run(
    run: Path,
    spec: RunSpec,
    scale: PaperScale,
    evals_path: Path,
    options: MetricOptions,
    todo: list[tuple[Path, bool]],
    bar: tqdm | None = None,
) -> None:
    """Score each (snapshot, renoise) of `todo` with the run's own plan into `evals_path`;
    a stored row is reused only when its identity matches (evaluate.score_or_reuse)."""
    cfg = Config.from_dict(json.loads((run / "config.json").read_text())["config"])
    real = functools.cache(lambda: reference_videos(cfg, scale.eval_samples))  # once per run
    for snap, renoise in todo:
        extra = dict(
            run=run.name, backbone=spec.backbone, form=spec.form, variant=spec.variant,
            renoise=renoise,
        )  # fmt: skip
        score_or_reuse(
            evals_path, run, snap.relative_to(run), scale.eval_samples, options, METRICS,
            changes=dict(renoise=renoise), real=real, extra=extra, same=EVAL_KEY, progress=True,
        )  # fmt: skip
        if bar is not None:
            bar.update(1)


def renoise_strip(run: Path, out: Path, device: str) -> None:
    """The same two prompts and seeds sampled with and without renoising -> renoise_strip.pt
    ({"renoise": (2, C, F, H, W), "no_renoise": ..., "captions": [...]}) for the report."""
    videos = {}
    for key, flag in (("renoise", True), ("no_renoise", False)):
        gen = generate(run, dict(num_samples=2, renoise=flag, device=device), progress=False)
        videos[key], videos["captions"] = gen.videos, gen.captions
    torch.save(videos, out / "renoise_strip.pt")


def job_identity(scale_name: str, scale: PaperScale, runs: Path, options: MetricOptions) -> dict:
    """What the results of this suite call depend on (recorded in the folder's job.json)."""
    specs = run_specs(scale)
    configs = {s.name: run_config(s, scale, runs) for s in specs}
    first = next(iter(configs.values()))
    return dict(
        suite="paper",
        scale=scale_name,
        code=code_revision(),
        runs={name: training_hash(cfg) for name, cfg in configs.items()},
        metrics=metrics_key(METRICS, options, first),
        n=scale.eval_samples,
        grid_samples=scale.grid_samples,
    )


class Artifacts:
    """`artifacts.json`: the identity of each derived file (grids, renoise strip) of a folder,
    so a file made from other weights is remade instead of kept."""

    def __init__(self, out: Path):
        self.path = out / "artifacts.json"
        self.keys = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def current(self, name: str, key: str) -> bool:
        return self.keys.get(name) == key and (self.path.parent / name).exists()

    def record(self, name: str, key: str) -> None:
        self.keys[name] = key
        write_json(self.path, self.keys)


def _final_key(run: Path, **settings) -> str:
    return digest(dict(weights=checkpoint_info(run / "checkpoint.pt").key, **settings))


def paper(out: Path, scale_name: str, fresh: bool = False) -> dict:
    """Train, sample and measure everything `harness.report` needs, then build the report."""
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    runs, evals_path = out / "runs", out / "evals.csv"
    options = MetricOptions(evaluator=scale.evaluator, device=scale.device)
    claim_folder(out, job_identity(scale_name, scale, runs, options), fresh)
    specs = run_specs(scale)
    for spec in tqdm(specs, desc="train"):
        train_main(run_config(spec, scale, runs))
    plan = {
        spec: evaluations(runs / spec.name, spec.align, spec.method == "tpdiff" and spec.align)
        for spec in specs
    }
    with tqdm(total=sum(map(len, plan.values())), desc="score", unit="eval") as bar:
        for spec, todo in plan.items():
            evaluate_run(runs / spec.name, spec, scale, evals_path, options, todo, bar)
    artifacts = Artifacts(out)
    for spec in tqdm(specs, desc="grids"):
        name = f"grids/{spec.name}.png"
        key = _final_key(runs / spec.name, n=scale.grid_samples)
        if not artifacts.current(name, key):
            folder = sample_main(
                runs / spec.name, dict(num_samples=scale.grid_samples, device=scale.device)
            )
            (out / "grids").mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes((folder / "grid.png").read_bytes())
            artifacts.record(name, key)
    first_tpdiff = next(s for s in specs if s.method == "tpdiff")
    key = _final_key(runs / first_tpdiff.name, strip=2)
    if not artifacts.current("renoise_strip.pt", key):
        renoise_strip(runs / first_tpdiff.name, out, scale.device)
        artifacts.record("renoise_strip.pt", key)
    if not (out / "cost_plans.csv").exists():  # random-init backbones: the job fixes them
        shape = run_config(specs[0], scale, runs)
        stages, plans = cost_tables(torch.device(scale.device), shape.size, shape.frames)
        write_csv(out / "cost_stages.csv", stages)
        write_csv(out / "cost_plans.csv", plans)
    reference = REFERENCE if out.resolve() != REFERENCE.resolve() else None
    return report.build(out, reference=reference)
