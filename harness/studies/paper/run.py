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

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.environment import environment
from harness.common.io import write_csv, write_npz
from harness.common.video import to_uint8_videos
from harness.measure.cost import PAIRS, batch_sweep, cost_tables, setup_for
from harness.metrics import MetricOptions
from harness.pipeline.evaluate import instruments, metrics_key, reference_scores
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
from harness.studies.core.phases import Phases
from harness.studies.core.protocol import CURVE_METRICS, FINAL_METRICS, Evaluation
from harness.studies.core.scale import SCALES, Scale, scale_config
from harness.studies.core.seeds import seeded_name
from harness.studies.core.train_and_score import Arm, train_and_score
from harness.studies.paper import report

# evaluations that stand for each other unless their identities differ
EVAL_KEY = ("run", "role", "step", "renoise", "n")
# backbones trained again with align=false (the alignment ablation), per scale
ALIGN_ABLATION = {"gpu": ("dit", "unet")}  # other scales: ("dit",)


@dataclass(frozen=True)
class RunSpec:
    backbone: str
    form: str
    method: str
    align: bool = True
    seed: int = 0  # added to the baseline's seed (the job's offset included)

    @property
    def variant(self) -> str:
        return self.method + ("" if self.align else "-noalign")

    @property
    def name(self) -> str:
        return seeded_name(f"{self.backbone}-{self.form}-{self.variant}", self.seed)


@dataclass(frozen=True)
class Design:
    """One paper-suite job's pre-registered design (docs/paper-suite.md): the training seeds
    of the main arms (vanilla and TPDiff of each backbone, paired seed by seed), those the
    alignment ablation is trained with, and those whose TPDiff runs are also sampled
    without renoising. Seeds are offsets on the baselines' seed: `offset`, offset + 1, ..."""

    seeds: tuple[int, ...]
    align_seeds: tuple[int, ...]
    renoise_seeds: tuple[int, ...]

    @property
    def offset(self) -> int:
        return self.seeds[0]


def design(scale_name: str, seeds: int | None = None, offset: int = 0) -> Design:
    """The design at `scale_name` with `seeds` training seeds (default: the scale's) from
    seed `offset` on (a replica: another offset, every seed shifted)."""
    scale = SCALES[scale_name]
    count = scale.seeds if seeds is None else seeds
    if count < 1:
        raise ValueError(f"--seeds must be at least 1, got {count}")
    if offset < 0:
        raise ValueError(f"--seed-offset must be 0 or more, got {offset}")
    all_seeds = tuple(offset + i for i in range(count))
    return Design(all_seeds, all_seeds[: scale.align_seeds], all_seeds[: scale.renoise_seeds])


def run_specs(scale_name: str, plan: Design | None = None) -> list[RunSpec]:
    """The matched pairs seed by seed (both methods, both backbones), then the alignment
    ablation at its seeds."""
    plan = plan or design(scale_name)
    noalign = ALIGN_ABLATION.get(scale_name, ("dit",))
    specs = [RunSpec(b, f, m, seed=s) for s in plan.seeds for b, f in PAIRS
             for m in ("vanilla", "tpdiff")]  # fmt: skip
    specs += [RunSpec(b, f, "tpdiff", align=False, seed=s) for s in plan.align_seeds
              for b, f in PAIRS if b in noalign]  # fmt: skip
    return specs


def run_config(spec: RunSpec, scale: Scale, runs: Path) -> Config:
    """The matched baseline config of `spec` (baselines/<backbone>-<method>.toml) at `scale`,
    snapshotted at its curve points."""
    cfg = scale_config(scale, f"{spec.backbone}-{spec.method}", runs, scale.curve.evals,
                       form=spec.form, align=spec.align)  # fmt: skip
    return cfg.replace(seed=cfg.seed + spec.seed, name=spec.name)


def arm(spec: RunSpec, scale: Scale, runs: Path, book: Path, plan: Design) -> Arm:
    """What to train and score for `spec`. A main run: every snapshot but the last at the
    curve n (its curve; the final score, which carries the curve metric too, is its last
    point) and the last at the final n, and for TPDiff at a renoise seed the last again
    without renoising. The alignment ablation: the last at the final n."""
    cfg = run_config(spec, scale, runs)

    def score(role: str, n: int, metrics: list[str], renoise: bool = True) -> Evaluation:
        extra = dict(run=spec.name, backbone=spec.backbone, form=spec.form,
                     variant=spec.variant, seed=spec.seed, role=role, renoise=renoise)  # fmt: skip
        return Evaluation(n, tuple(metrics), dict(renoise=renoise), extra)

    every = (score("curve", scale.curve.n, CURVE_METRICS),) if spec.align else ()
    last = (score("final", scale.final_n, FINAL_METRICS),)
    if spec.method == "tpdiff" and spec.align and spec.seed in plan.renoise_seeds:
        last += (score("final", scale.final_n, FINAL_METRICS, renoise=False),)
    return Arm(cfg, scale.curve.evals, every, last, book=book, same=EVAL_KEY, every_at_last=False)


STRIP_N = 4  # prompts in the renoise strip


def renoise_strip(run: Path, out: Path, device: str, n: int = STRIP_N) -> None:
    """The same `n` prompts and seeds sampled with and without renoising -> report.STRIP (uint8
    "renoise" and "no_renoise" (n, C, F, H, W) and their "captions"), for the report's
    strip and animation."""
    videos = {}
    for key, flag in (("renoise", True), ("no_renoise", False)):
        gen = generate(run, dict(num_samples=n, renoise=flag, device=device), progress=False)
        videos[key], captions = to_uint8_videos(gen.videos), gen.captions
    (out / report.STRIP).parent.mkdir(parents=True, exist_ok=True)
    write_npz(out / report.STRIP, **videos, captions=np.array(captions))


def training_threads(workers: int) -> int:
    """The intra-op threads every run of the job trains with (part of its bits)."""
    return 1 if workers > 1 else torch.get_num_threads()


def job_identity(scale_name: str, scale: Scale, runs: Path, options: MetricOptions,
                 plan: Design, workers: int) -> dict:  # fmt: skip
    """What the results of this suite call depend on (recorded in the folder's job.json)."""
    specs = run_specs(scale_name, plan)
    configs = {s.name: run_config(s, scale, runs) for s in specs}
    first = next(iter(configs.values()))
    return dict(
        suite="paper",
        scale=scale_name,
        code=code_revision(),
        runs={name: training_hash(cfg) for name, cfg in configs.items()},
        metrics={role: metrics_key(names, options, first)
                 for role, names in (("curve", CURVE_METRICS), ("final", FINAL_METRICS))},
        instruments=instruments(FINAL_METRICS, options, first),
        curve_n=scale.curve.n,
        curve_points=scale.curve.evals,
        final_n=scale.final_n,
        grid_samples=scale.grid_samples,
        seeds=list(plan.seeds),
        seed_offset=plan.offset,
        align_seeds=list(plan.align_seeds),
        renoise_seeds=list(plan.renoise_seeds),
        batches=list(scale.batches),
        environment=dict(environment(), threads=training_threads(workers)),
    )  # fmt: skip


def score_references(out: Path, scale: Scale, specs: list[RunSpec], runs: Path,
                     options: MetricOptions, plan: Design) -> None:  # fmt: skip
    """references.csv: real vs real, noise vs real and chance agreement, for each data
    config of the suite's main runs at the job's first seed (the other seeds draw other
    videos of the same distribution), at the curve n and at the final n."""
    main = [s for s in specs if s.seed == plan.offset]
    configs = {data_hash(c): c for c in (run_config(s, scale, runs) for s in main)}
    jobs = [(cfg, scale.curve.n, CURVE_METRICS) for cfg in configs.values()]
    jobs += [(cfg, scale.final_n, FINAL_METRICS) for cfg in configs.values()]
    for cfg, n, names in tqdm(jobs, desc="references"):
        reference_scores(out / "references.csv", cfg, n, options, names, progress=True)


def _final_key(run: Path, **settings) -> str:
    return digest(dict(weights=checkpoint_info(run / "checkpoint.pt").key, **settings))


def samples(out: Path, scale: Scale, specs: list[RunSpec], runs: Path, plan: Design) -> None:
    """grids/<run>.png of every main run at the first seed, finals/<run>.npz (uint8 videos
    (N, C, F, H, W) and captions: what reports show and animate without checkpoints) of
    every run, and the renoise strip of the first TPDiff run (`report.STRIP`); each remade only when
    the weights it was drawn from change (artifacts.json)."""
    artifacts = Artifacts(out)
    for spec in tqdm(specs, desc="samples"):
        name = f"finals/{spec.name}.npz"
        key = _final_key(runs / spec.name, n=scale.grid_samples)
        if not artifacts.current(name, key):
            gen = generate(runs / spec.name, dict(num_samples=scale.grid_samples,
                                                  device=scale.device), progress=False)  # fmt: skip
            (out / "finals").mkdir(parents=True, exist_ok=True)
            write_npz(out / name, videos=to_uint8_videos(gen.videos),
                      captions=np.array(gen.captions))  # fmt: skip
            artifacts.record(name, key)
        if spec.seed != plan.offset:
            continue
        name = f"grids/{spec.name}.png"
        if not artifacts.current(name, key):
            folder = sample_main(
                runs / spec.name,
                dict(num_samples=scale.grid_samples, device=scale.device),
                formats=("png",),
            )
            (out / "grids").mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes((folder / "grid.png").read_bytes())
            artifacts.record(name, key)
    first_tpdiff = next(s for s in specs if s.method == "tpdiff")
    key = _final_key(runs / first_tpdiff.name, strip=STRIP_N)
    if not artifacts.current(report.STRIP, key):
        renoise_strip(runs / first_tpdiff.name, out, scale.device)
        artifacts.record(report.STRIP, key)


def inference_sweep(out: Path, scale: Scale, runs: Path, plan: Design) -> None:
    """inference_batches.csv: each backbone's sampling time, vanilla and TPDiff, over the
    scale's batches (`measure.cost.batch_sweep`, the runs' shapes; timing does not depend
    on the weights' values), measured once per job, after training, alone."""
    if (out / "inference_batches.csv").exists():
        return
    device = torch.device(scale.device)
    setups = [setup_for(run_config(RunSpec(b, f, "vanilla", seed=plan.offset), scale, runs))
              for b, f in PAIRS]  # fmt: skip
    sweep = [batch_sweep(s, list(scale.batches), device) for s in tqdm(setups, desc="batches")]
    write_csv(out / "inference_batches.csv", pd.concat(sweep, ignore_index=True))


def paper(out: Path, scale_name: str, fresh: bool = False, seeds: int | None = None,
          seed_offset: int = 0, workers: int | None = None) -> dict:  # fmt: skip
    """Train and score the matched runs at every seed of the design (`workers` side by
    side, default the scale's), score the references, sample the grids, finals and strip,
    sweep the inference batches, measure the cost tables, then draw the report
    (`report.build`, from the files alone)."""
    scale = SCALES[scale_name]
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} needs a CUDA device; use --scale cpu here")
    plan = design(scale_name, seeds, seed_offset)
    workers = scale.workers if workers is None else workers
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    runs = out / "runs"
    options = MetricOptions(evaluator=scale.evaluator, device=scale.device)
    claim_folder(out, job_identity(scale_name, scale, runs, options, plan, workers), fresh)
    specs = run_specs(scale_name, plan)
    timer = Phases(out / "phases.json")
    with timer("train and score", workers=workers):
        arms = [arm(spec, scale, runs, out / "evals.csv", plan) for spec in specs]
        train_and_score(arms, options, workers=workers, progress=True)
    with timer("references"):
        score_references(out, scale, specs, runs, options, plan)
    with timer("samples"):
        samples(out, scale, specs, runs, plan)
    with timer("inference sweep"):
        inference_sweep(out, scale, runs, plan)
    with timer("cost tables"):
        if not (out / "cost_plans.csv").exists():  # random-init backbones: the job fixes them
            setups = [setup_for(run_config(RunSpec(b, f, "vanilla"), scale, runs))
                      for b, f in PAIRS]  # fmt: skip
            stages, plans = cost_tables(torch.device(scale.device), setups=setups)
            write_csv(out / "cost_stages.csv", stages)
            write_csv(out / "cost_plans.csv", plans)
    return report.build(out, reference=report.partner(out))
