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

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.io import write_csv, write_json
from harness.measure.cost import PAIRS, cost_tables, setup_for
from harness.metrics import EvaluatorRecipe, MetricOptions
from harness.pipeline.evaluate import (
    metrics_key,
    reference_scores,
    reference_videos,
    score_or_reuse,
)
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
from harness.pipeline.train import main as train_main
from harness.studies import cpu_recipe, report
from harness.studies.trials import BASELINES, TrialScale

REFERENCE = report.COMMITTED  # results/paper: the committed results of one full CPU run
# evaluations that stand for each other unless their identities differ
EVAL_KEY = ("run", "step", "renoise", "n")


@dataclass(frozen=True)
class PaperScale(TrialScale):
    """How big the suite runs: a TrialScale (steps, evals, eval_samples = the n of every
    curve point, device, overrides applied to every baseline config, evaluator) plus the n
    of the final points, the sample grids, which backbones get the alignment ablation and
    which get their pair trained again with other seeds (the training-seed spread)."""

    final_samples: int = 0  # n of the final scores (FVD-md: >= 2 x feature dim); 0: eval_samples
    grid_samples: int = 8  # videos in each method's sample grid
    align_ablation: tuple[str, ...] = ("dit",)  # backbones trained again with align=false
    sizes: dict[str, str] = field(default_factory=dict)  # backbone -> size (else the baseline's)
    backbone_steps: dict[str, int] = field(default_factory=dict)  # backbone -> steps (else steps)
    seed_runs: tuple[str, ...] = ()  # backbones whose pair is trained again with seed + 1

    @property
    def final_n(self) -> int:
        return self.final_samples or self.eval_samples


SCALES: dict[str, PaperScale] = {
    "smoke": PaperScale(  # every code path, not the figures: 4 curve points, 6-step sampling
        steps=8,
        evals=4,
        eval_samples=8,
        final_samples=12,
        grid_samples=2,
        device="cpu",
        align_ablation=("dit",),
        seed_runs=("dit",),
        overrides=dict(
            size="tiny", frames=8, num_videos=64, warmup_steps=2, batch_size=4, sample_steps=6
        ),
        evaluator=EvaluatorRecipe(frames=8, steps=30, heldout=64, batch_size=16),
    ),
    # the CPU reference recipe (harness.studies.cpu_recipe); the DiT pair is trained again with
    # seed 1 (seed spread)
    "cpu": PaperScale(
        steps=max(cpu_recipe.STEPS.values()),
        evals=8,
        eval_samples=64,
        final_samples=cpu_recipe.N,
        grid_samples=8,
        device="cpu",
        align_ablation=("dit",),
        seed_runs=("dit",),
        sizes=cpu_recipe.SIZES,
        backbone_steps=cpu_recipe.STEPS,
        overrides=cpu_recipe.OVERRIDES,
        evaluator=cpu_recipe.EVALUATOR,
    ),
    "gpu": PaperScale(
        steps=5000,
        evals=10,
        eval_samples=256,
        final_samples=2048,
        grid_samples=8,
        device="cuda",
        align_ablation=("dit", "unet"),
        seed_runs=("dit",),
        overrides=dict(batch_size=32, ema_decay=0.999),
    ),
}
# curve points: an unbiased kernel distance at small n; final points add the Fréchet distance
CURVE_METRICS = ["kvd-md", "pa-md", "motion"]
FINAL_METRICS = ["fvd-md", "kvd-md", "pa-md", "flicker", "motion"]


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


def run_specs(scale: PaperScale) -> list[RunSpec]:
    """Matched pairs first (both methods, both backbones), then the alignment ablation, then
    the pairs trained again with another seed."""
    specs = [RunSpec(b, f, m) for b, f in PAIRS for m in ("vanilla", "tpdiff")]
    specs += [RunSpec(b, f, "tpdiff", align=False) for b, f in PAIRS if b in scale.align_ablation]
    specs += [RunSpec(b, f, m, seed=1) for b, f in PAIRS if b in scale.seed_runs
              for m in ("vanilla", "tpdiff")]  # fmt: skip
    return specs


def run_config(spec: RunSpec, scale: PaperScale, runs: Path) -> Config:
    """The matched baseline config of `spec` (baselines/<backbone>-<method>.toml) at `scale`."""
    base = Config.from_file(BASELINES / f"{spec.backbone}-{spec.method}.toml")
    steps = scale.backbone_steps.get(spec.backbone, scale.steps)
    every = steps // scale.evals
    sizes = {"size": scale.sizes[spec.backbone]} if spec.backbone in scale.sizes else {}
    return base.replace(
        **(scale.overrides | sizes),
        form=spec.form,
        align=spec.align,
        seed=base.seed + spec.seed,
        steps=steps,
        snapshot_every=every,
        ckpt_every=every,
        device=scale.device,
        out_dir=str(runs),
        name=spec.name,
    )


@dataclass(frozen=True)
class Evaluation:
    """One score to make: a snapshot, with or without renoising, at n, with some metrics."""

    snapshot: Path
    renoise: bool
    n: int
    role: str  # "curve" (a point of the quality curve) or "final"
    metrics: tuple[str, ...]


def evaluations(run: Path, spec: RunSpec, scale: PaperScale) -> list[Evaluation]:
    """What to score for a trained run: every snapshot at the curve n (matched pairs), the
    last at the final n, and for TPDiff the last without renoising at the final n."""
    snaps = sorted((run / "snapshots").glob("step_*.pt"))
    if not snaps:
        raise FileNotFoundError(f"{run} has no snapshots/step_*.pt to score; train it first")
    curve, final = tuple(CURVE_METRICS), tuple(FINAL_METRICS)
    todo = (
        [Evaluation(s, True, scale.eval_samples, "curve", curve) for s in snaps]
        if spec.curve
        else []
    )
    todo.append(Evaluation(snaps[-1], True, scale.final_n, "final", final))
    if spec.method == "tpdiff" and spec.align and not spec.seed:
        todo.append(Evaluation(snaps[-1], False, scale.final_n, "final", final))
    return todo


def evaluate_run(
    run: Path,
    spec: RunSpec,
    evals_path: Path,
    options: MetricOptions,
    todo: list[Evaluation],
    bar: tqdm | None = None,
) -> None:
    """Make each score of `todo` with the run's own plan into `evals_path`; a stored row is
    reused only when its identity matches (evaluate.score_or_reuse)."""
    cfg = Config.from_dict(json.loads((run / "config.json").read_text())["config"])
    real = {n: functools.cache(lambda n=n: reference_videos(cfg, n)) for n in {e.n for e in todo}}
    for e in todo:
        extra = dict(
            run=run.name, backbone=spec.backbone, form=spec.form, variant=spec.variant,
            seed=spec.seed, role=e.role, renoise=e.renoise,
        )  # fmt: skip
        score_or_reuse(
            evals_path, run, e.snapshot.relative_to(run), e.n, options, list(e.metrics),
            changes=dict(renoise=e.renoise), real=real[e.n], extra=extra, same=EVAL_KEY,
            progress=True,
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
        metrics={role: metrics_key(names, options, first)
                 for role, names in (("curve", CURVE_METRICS), ("final", FINAL_METRICS))},
        curve_n=scale.eval_samples,
        final_n=scale.final_n,
        grid_samples=scale.grid_samples,
    )  # fmt: skip


def score_references(out: Path, scale: PaperScale, specs: list[RunSpec], runs: Path,
                     options: MetricOptions) -> None:  # fmt: skip
    """references.csv: real vs real, noise vs real and chance agreement, for each data
    config of the suite's main runs (training seed offset 0; the seed runs draw other
    videos of the same distribution), at the curve n and at the final n."""
    main = [s for s in specs if s.seed == 0]
    configs = {data_hash(c): c for c in (run_config(s, scale, runs) for s in main)}
    jobs = [(cfg, scale.eval_samples, CURVE_METRICS) for cfg in configs.values()]
    jobs += [(cfg, scale.final_n, FINAL_METRICS) for cfg in configs.values()]
    for cfg, n, names in tqdm(jobs, desc="references"):
        reference_scores(out / "references.csv", cfg, n, options, names, progress=True)


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
    score_references(out, scale, specs, runs, options)
    plan = {spec: evaluations(runs / spec.name, spec, scale) for spec in specs}
    with tqdm(total=sum(map(len, plan.values())), desc="score", unit="eval") as bar:
        for spec, todo in plan.items():
            evaluate_run(runs / spec.name, spec, evals_path, options, todo, bar)
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
    if not (out / "cost_plans.csv").exists():  # random-init backbones: the job fixes them
        setups = [setup_for(run_config(RunSpec(b, f, "vanilla"), scale, runs)) for b, f in PAIRS]
        stages, plans = cost_tables(torch.device(scale.device), setups=setups)
        write_csv(out / "cost_stages.csv", stages)
        write_csv(out / "cost_plans.csv", plans)
    reference = REFERENCE if out.resolve() != REFERENCE.resolve() else None
    return report.build(out, reference=reference)
