"""The paper suite (arXiv 2503.09566): matched vanilla / TPDiff runs on both backbone-form
pairs, quality along each run, the alignment and renoising ablations, and the cost tables.

This module only trains, samples and measures; it writes run folders (`runs/`),
`evals.csv` (one row per evaluation: run, backbone, form, variant, step, renoise, training
FLOPs and compute time at that step, the identity of what produced it, the metric columns)
and the cost tables. Every table and plot is then drawn from those files by
`harness.report`, so `python -m harness.report DIR` redraws them without retraining.

A results folder belongs to one job (`job.json`: scale, code revision, the hash of every
run's training config, metric options, n; see `harness.pipeline.provenance.claim_folder`).
Rerunning the same job into it resumes: training continues from checkpoints, and an
evaluation is reused only when its stored row has the identity of the one about to be made
(same config, weights, sampling setting, metrics, n and code). Another job is refused
before anything runs (`--out` elsewhere, or `--fresh`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.io import write_csv
from harness.measure.cost import PAIRS, cost_tables, setup_for
from harness.metrics import MetricOptions
from harness.pipeline.evaluate import metrics_key, reference_scores
from harness.pipeline.provenance import (
    checkpoint_info,
    claim_folder,
    code_revision,
    data_hash,
    digest,
    training_hash,
)
from harness.pipeline.sample import generate
from harness.pipeline.sample import main as sample_main
from harness.studies.core.artifacts import Artifacts
from harness.studies.core.protocol import CURVE_METRICS, FINAL_METRICS, Evaluation
from harness.studies.core.scale import SCALES, Scale, scale_config
from harness.studies.core.train_and_score import Arm, train_and_score
from harness.studies.paper import report

REFERENCE = report.COMMITTED  # results/paper: the committed results of one full CPU run
# evaluations that stand for each other unless their identities differ
EVAL_KEY = ("run", "role", "step", "renoise", "n")
# backbones trained again with align=false (the alignment ablation), per scale
ALIGN_ABLATION = {"gpu": ("dit", "unet")}  # other scales: ("dit",)
SEED_RUNS = ("dit",)  # backbones whose pair is trained again with seed + 1 (the seed spread)


@dataclass(frozen=True)
class RunSpec:
    backbone: str
    form: str
    method: str
    align: bool = True
    seed: int = 0  # added to the baseline's seed

    @property
    def variant(self) -> str:
        return self.method + ("" if self.align else "-noalign")

    @property
    def name(self) -> str:
        return f"{self.backbone}-{self.form}-{self.variant}" + (
            f"-seed{self.seed}" if self.seed else ""
        )

    @property
    def curve(self) -> bool:
        """Scored at every snapshot (the matched pairs), else only at the end."""
        return self.align and not self.seed


def run_specs(scale_name: str) -> list[RunSpec]:
    """Matched pairs first (both methods, both backbones), then the alignment ablation, then
    the pairs trained again with another seed."""
    noalign = ALIGN_ABLATION.get(scale_name, ("dit",))
    specs = [RunSpec(b, f, m) for b, f in PAIRS for m in ("vanilla", "tpdiff")]
    specs += [RunSpec(b, f, "tpdiff", align=False) for b, f in PAIRS if b in noalign]
    specs += [RunSpec(b, f, m, seed=1) for b, f in PAIRS if b in SEED_RUNS
              for m in ("vanilla", "tpdiff")]  # fmt: skip
    return specs


def run_config(spec: RunSpec, scale: Scale, runs: Path) -> Config:
    """The matched baseline config of `spec` (baselines/<backbone>-<method>.toml) at `scale`,
    snapshotted at its curve points."""
    cfg = scale_config(scale, f"{spec.backbone}-{spec.method}", runs, scale.curve.evals,
                       form=spec.form, align=spec.align)  # fmt: skip
    return cfg.replace(seed=cfg.seed + spec.seed, name=spec.name)


def arm(spec: RunSpec, scale: Scale, runs: Path, book: Path) -> Arm:
    """What to train and score for `spec`: every snapshot at the curve n (the matched pairs),
    the last at the final n, and for TPDiff the last without renoising at the final n."""
    cfg = run_config(spec, scale, runs)

    def score(role: str, n: int, metrics: list[str], renoise: bool = True) -> Evaluation:
        extra = dict(run=spec.name, backbone=spec.backbone, form=spec.form,
                     variant=spec.variant, seed=spec.seed, role=role, renoise=renoise)  # fmt: skip
        return Evaluation(n, tuple(metrics), dict(renoise=renoise), extra)

    every = (score("curve", scale.curve.n, CURVE_METRICS),) if spec.curve else ()
    last = (score("final", scale.final_n, FINAL_METRICS),)
    if spec.method == "tpdiff" and spec.align and not spec.seed:
        last += (score("final", scale.final_n, FINAL_METRICS, renoise=False),)
    return Arm(cfg, scale.curve.evals, every, last, book=book, same=EVAL_KEY)


def renoise_strip(run: Path, out: Path, device: str) -> None:
    """The same two prompts and seeds sampled with and without renoising -> renoise_strip.pt
    ({"renoise": (2, C, F, H, W), "no_renoise": ..., "captions": [...]}) for the report."""
    videos = {}
    for key, flag in (("renoise", True), ("no_renoise", False)):
        gen = generate(run, dict(num_samples=2, renoise=flag, device=device), progress=False)
        videos[key], videos["captions"] = gen.videos, gen.captions
    torch.save(videos, out / "renoise_strip.pt")


def job_identity(scale_name: str, scale: Scale, runs: Path, options: MetricOptions) -> dict:
    """What the results of this suite call depend on (recorded in the folder's job.json)."""
    specs = run_specs(scale_name)
    configs = {s.name: run_config(s, scale, runs) for s in specs}
    first = next(iter(configs.values()))
    return dict(
        suite="paper",
        scale=scale_name,
        code=code_revision(),
        runs={name: training_hash(cfg) for name, cfg in configs.items()},
        metrics={role: metrics_key(names, options, first)
                 for role, names in (("curve", CURVE_METRICS), ("final", FINAL_METRICS))},
        curve_n=scale.curve.n,
        final_n=scale.final_n,
        grid_samples=scale.grid_samples,
    )  # fmt: skip


def score_references(out: Path, scale: Scale, specs: list[RunSpec], runs: Path,
                     options: MetricOptions) -> None:  # fmt: skip
    """references.csv: real vs real, noise vs real and chance agreement, for each data
    config of the suite's main runs (training seed offset 0; the seed runs draw other
    videos of the same distribution), at the curve n and at the final n."""
    main = [s for s in specs if s.seed == 0]
    configs = {data_hash(c): c for c in (run_config(s, scale, runs) for s in main)}
    jobs = [(cfg, scale.curve.n, CURVE_METRICS) for cfg in configs.values()]
    jobs += [(cfg, scale.final_n, FINAL_METRICS) for cfg in configs.values()]
    for cfg, n, names in tqdm(jobs, desc="references"):
        reference_scores(out / "references.csv", cfg, n, options, names, progress=True)


def _final_key(run: Path, **settings) -> str:
    return digest(dict(weights=checkpoint_info(run / "checkpoint.pt").key, **settings))


def samples(out: Path, scale: Scale, specs: list[RunSpec], runs: Path) -> None:
    """grids/<run>.png of every main run and the renoise strip of the first TPDiff run, each
    remade only when the weights it was drawn from change (artifacts.json)."""
    artifacts = Artifacts(out)
    for spec in tqdm([s for s in specs if not s.seed], desc="grids"):
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


def paper(out: Path, scale_name: str, fresh: bool = False) -> dict:
    """Train and score the matched runs, score the references, sample the grids and strip,
    measure the cost tables, then draw the report (`report.build`, from the files alone)."""
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    runs = out / "runs"
    options = MetricOptions(evaluator=scale.evaluator, device=scale.device)
    claim_folder(out, job_identity(scale_name, scale, runs, options), fresh)
    specs = run_specs(scale_name)
    for spec in tqdm(specs, desc="train and score"):
        train_and_score([arm(spec, scale, runs, out / "evals.csv")], options, progress=True)
    score_references(out, scale, specs, runs, options)
    samples(out, scale, specs, runs)
    if not (out / "cost_plans.csv").exists():  # random-init backbones: the job fixes them
        setups = [setup_for(run_config(RunSpec(b, f, "vanilla"), scale, runs)) for b, f in PAIRS]
        stages, plans = cost_tables(torch.device(scale.device), setups=setups)
        write_csv(out / "cost_stages.csv", stages)
        write_csv(out / "cost_plans.csv", plans)
    reference = REFERENCE if out.resolve() != REFERENCE.resolve() else None
    return report.build(out, reference=reference)
