"""Train a config and score it along the way: the one unit of work of every study.

An `Arm` is a training config with the scores to make at each of its `evals` snapshots
(`every`) and at its last (`last`), and the table the rows go to (`book`, where a stored
score is reused only when its identity matches, see `harness.pipeline.provenance`).
`train_and_score` trains each arm in chunks of `steps / evals` (`train.main(stop_at=)`,
bit-identical to one uninterrupted run, since resume is exact), makes the scores after each
chunk, and returns one row per score: step, the metric columns, the identity, the costs and
the run's training wall time. It takes a list of training seeds (each arm is trained again
per seed, named `<name>-seed<s>` for s > 0) and can hand them to parallel worker processes,
one thread each.

A config is split into what training depends on and what only sampling changes
(`split_sampling`): configs that differ only in sampling settings (renoising, steps per
stage) share one trained run. The sweep and the ablations name a run by a hash of its
training config (`trial_config`), so a killed and restarted study, or a trial retried on
another worker, resumes the same checkpoint instead of starting over.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.common.config import Config
from harness.common.lock import owned
from harness.measure.flops import expected_training_macs, plan_macs
from harness.metrics import MetricOptions
from harness.pipeline.build import plan_for
from harness.pipeline.evaluate import reference_videos, score_or_reuse
from harness.pipeline.provenance import training_hash
from harness.pipeline.sample import sampling_config
from harness.pipeline.tracking import log_scores
from harness.pipeline.train import main as train_main
from harness.studies.core.protocol import CURVE_METRICS, FINAL_METRICS, QUALITY, Evaluation
from harness.studies.core.scale import Points, Scale, scale_config
from harness.studies.core.seeds import seeded_name


def trial_config(scale: Scale, runs: Path, **changes: Any) -> Config:
    """A sweep trial or ablation variant: baselines/dit-tpdiff.toml at `scale` with
    `changes` applied, snapshotted at the scale's curve points (`curve_and_final`), named
    by the hash of its training config."""
    cfg = scale_config(scale, "dit-tpdiff", runs, scale.curve.evals, **changes)
    train, _ = split_sampling(cfg)
    return cfg.replace(name=train.name)


def split_sampling(cfg: Config) -> tuple[Config, dict[str, Any]]:
    """(the config training runs with, the sampling changes that turn it back into `cfg`).

    Renoising is sampling-only; steps per stage are too unless the stage weighting is
    "steps". The training config is named by a hash of everything training depends on."""
    sampling = {"renoise": cfg.renoise}
    if cfg.stage_weighting != "steps":
        sampling["stage_steps"] = cfg.stage_steps
    defaults = {k: getattr(Config(), k) for k in ("renoise", "stage_steps")}
    train = cfg.replace(**{k: defaults[k] for k in sampling})
    changes = {k: v for k, v in sampling.items() if v != defaults[k]}
    name = f"{cfg.backbone}-{cfg.form}-{cfg.method}-{training_hash(train)}"
    return train.replace(name=name), changes


def costs(run: Path, cfg: Config) -> dict[str, float]:
    """Training GFLOPs per sample-step (expected over the stage distribution) and
    inference GFLOPs per video of `cfg`'s plan, from the MACs the run recorded."""
    saved = json.loads((run / "config.json").read_text())
    macs = {int(f): m for f, m in saved["forward_macs"].items()}
    train = Config.from_dict(saved["config"])
    train_macs = expected_training_macs(macs, plan_for(train), train.stage_weighting)
    return {
        "train_gflops": 2 * train_macs / 1e9,
        "infer_gflops": 2 * plan_macs(macs, plan_for(cfg)) / 1e9,
    }


@contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Exclusive use of a run folder across processes (two sweep workers that drew the same
    training config take turns, the waiting one saying whom it waits for; the second finds
    the work done)."""
    with owned(run, "training run", wait=True):
        yield


@dataclass(frozen=True)
class Arm:
    """A training config (its run folder: `cfg.run_dir`) trained in `evals` chunks, with
    the scores made after every chunk (`every`) and after the last (`last`); the rows go to
    `book` (default `<run>/evals.csv`), where an older row that agrees on the columns `same`
    but not on its identity is moved aside."""

    cfg: Config
    evals: int
    every: tuple[Evaluation, ...] = ()
    last: tuple[Evaluation, ...] = ()
    book: Path | None = None
    same: tuple[str, ...] = ("step", "sampling", "n")
    every_at_last: bool = True  # False: the last snapshot gets only `last` (which stands in)

    def __post_init__(self):
        if self.cfg.steps % self.evals:
            raise ValueError(f"steps={self.cfg.steps} must be a multiple of evals={self.evals}")

    def with_seed(self, seed: int) -> Arm:
        """This arm trained with its config's seed + `seed` (itself for 0), in the run folder
        `<name>-seed<seed>`; its rows name that run and their seed offset (`seed` column:
        the arm's own offset, if its rows carry one, + `seed`)."""
        if not seed:
            return self
        cfg = self.cfg.replace(seed=self.cfg.seed + seed, name=seeded_name(self.cfg.name, seed))

        def seeded(evaluations: tuple[Evaluation, ...]) -> tuple[Evaluation, ...]:
            return tuple(
                dataclasses.replace(e, extra=e.extra | dict(seed=e.extra.get("seed", 0) + seed,
                                                            run=cfg.name))
                for e in evaluations
            )  # fmt: skip

        return dataclasses.replace(self, cfg=cfg, every=seeded(self.every), last=seeded(self.last))


OnScore = Callable[[int, dict], None]


def score_arm(arm: Arm, options: MetricOptions, on_score: OnScore | None = None,
              progress: bool = False) -> list[dict]:  # fmt: skip
    """Train `arm` chunk by chunk and make its scores; returns their rows in order.
    `on_score(step, row)` runs after each score and may raise (e.g. optuna.TrialPruned) to
    stop early. A non-finite loss stops training with FloatingPointError naming the step
    (harness.train); so does a non-finite FVD-md."""
    train, run = arm.cfg, arm.cfg.run_dir
    book = arm.book or run / "evals.csv"
    every = train.steps // arm.evals
    real = {}  # n -> the real reference videos, built once per run
    rows = []
    for step in range(every, train.steps + 1, every):
        final = step == train.steps
        todo = (arm.every if not final or arm.every_at_last else ()) + (arm.last if final else ())
        with run_lock(run):
            train_main(train, stop_at=step)
            scored = []
            for e in todo:
                real.setdefault(e.n, functools.cache(lambda n=e.n: reference_videos(train, n)))
                row = score_or_reuse(
                    book, run, f"snapshots/step_{step:06d}.pt", e.n, options, list(e.metrics),
                    e.changes, real[e.n], extra=e.extra, same=arm.same, progress=progress,
                )  # fmt: skip
                if QUALITY.lower() in e.metrics and not math.isfinite(row[QUALITY]):
                    raise FloatingPointError(f"{QUALITY} is {row[QUALITY]} at step {step} of {run}")
                scored.append(row | costs(run, sampling_config(train, e.changes)))
            log_scores(train, run, step, [(e.n, r) for e, r in zip(todo, scored)])
        rows += scored
        for row in scored:
            if on_score is not None:
                on_score(step, row)
    return rows


def _one_thread(arm: Arm, options: MetricOptions, progress: bool) -> list[dict]:
    torch.set_num_threads(1)  # workers side by side: no OpenMP spin (README, "The machines")
    return score_arm(arm, options, progress=progress)


def train_and_score(
    arms: Sequence[Arm],
    options: MetricOptions,
    seeds: Sequence[int] = (0,),
    workers: int = 1,
    on_score: OnScore | None = None,
    progress: bool = False,
) -> list[dict]:
    """Every arm at every training seed (`Arm.with_seed`), trained and scored; returns the
    rows arm by arm, seed by seed (the arms of the first seed first). `workers` > 1 runs
    that many worker processes side by side, one thread each, that take the seeded arms in
    that order as they free up (the matched arms of the first seed start first); `on_score`
    needs `workers` = 1. `progress`: the scores' bars in one process, one line per finished
    run with workers."""
    if workers <= 1:
        seeded = [arm.with_seed(s) for s in seeds for arm in arms]
        return [row for arm in seeded for row in score_arm(arm, options, on_score, progress)]
    if on_score is not None:
        raise ValueError("on_score runs in this process: use workers=1 with it")
    spawn = multiprocessing.get_context("spawn")  # CUDA and OpenMP state are not forked
    seeded = [arm.with_seed(s) for s in seeds for arm in arms]
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        futures = {pool.submit(_one_thread, arm, options, False): arm for arm in seeded}
        # the workers' own bars would interleave: one line per finished run instead
        bar = tqdm(total=len(futures), desc=f"runs ({workers} workers)", disable=not progress)
        for future in as_completed(futures):
            future.result()  # a worker's error stops the study here
            bar.set_postfix_str(futures[future].cfg.name, refresh=False)
            bar.update(1)
        bar.close()
        return [row for future in futures for row in future.result()]


def trial_arm(cfg: Config, points: Points, metrics: Sequence[str]) -> Arm:
    """A sweep trial, ablation variant (`trial_config`) or recipe candidate as an arm: its
    training config scored at `points` (a scale's `trial`), every snapshot on `metrics`
    under the config's own sampling settings."""
    train, changes = split_sampling(cfg)
    return Arm(train, points.evals, (Evaluation(points.n, tuple(metrics), changes),))


def curve_and_final(train: Config, scale: Scale, finals: dict[str, dict[str, Any]],
                    curve_metrics: Sequence[str] = CURVE_METRICS,
                    extra: dict[str, Any] | None = None,
                    curve_changes: dict[str, Any] | None = None) -> Arm:  # fmt: skip
    """The studies' scoring protocol for one trained run (`split_sampling`'s training
    config): every snapshot but the last at the scale's curve n on `curve_metrics` under
    `curve_changes` (default: the run's own sampling; role `curve`), and the last at the
    final n on FINAL_METRICS once per sampling setting of `finals` (key -> sampling
    changes; role `final`, the key in `sampling_key`); the final under the curve's sampling
    is the curve's last point. Rows carry `run` and `seed` (0: `Arm.with_seed` shifts it)."""
    base = (extra or {}) | dict(run=train.name, seed=0)
    every = (Evaluation(scale.curve.n, tuple(curve_metrics), dict(curve_changes or {}),
                        base | dict(role="curve", sampling_key="")),)  # fmt: skip
    last = tuple(Evaluation(scale.final_n, tuple(FINAL_METRICS), changes,
                            base | dict(role="final", sampling_key=key))
                 for key, changes in finals.items())  # fmt: skip
    return Arm(train, scale.curve.evals, every, last, every_at_last=False)
