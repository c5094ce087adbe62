"""Scoring, the library every study and command uses: real reference videos drawn from a
run's dataset at a held-out seed (`reference_videos`), the score of a checkpoint
(`score_checkpoint`), the reference rows that say what a score means (`reference_scores`:
real vs real, noise vs real, chance agreement) and a score reused only when its identity
matches (`score_or_reuse`). The command line over it is `harness.pipeline.evaluate_folder`
(`python -m harness.evaluate`).

Real reference: the dataset of the run that made the samples, drawn with a seed offset no
training run or sampling caption uses, so moving-digits references are unseen videos.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from harness.common.config import Config
from harness.metrics import (
    EvaluatorRecipe,
    MetricOptions,
    VideoSet,
    compute_metrics,
)
from harness.metrics.evaluator import evaluator_weights
from harness.models.codec import trained_codec_hash
from harness.pipeline.build import build_data
from harness.pipeline.provenance import (
    ResultIdentity,
    append_result,
    checkpoint_info,
    code_revision,
    digest,
    stored_row,
    training_hash,
)

REAL_SEED_OFFSET = 20_011  # training uses +0, sampling captions +10_007
OTHER_REAL_SEED_OFFSET = 30_011  # a second real set, disjoint from the reference set


def reference_videos(cfg: Config, n: int) -> VideoSet:
    """The first n videos of cfg's dataset at a held-out seed (moving-digits) -> VideoSet."""
    data = build_data(cfg, seed_offset=REAL_SEED_OFFSET)
    if n > len(data):
        raise ValueError(f"asked for {n} real videos but the reference set has {len(data)}")
    items = [data[i] for i in range(n)]
    return VideoSet(
        torch.stack([it["video"] for it in items]), tuple(it["caption"] for it in items)
    )


def score_checkpoint(
    run: str | Path,
    n: int,
    options: MetricOptions,
    names: list[str] | None = None,
    checkpoint: str | Path | None = None,
    changes: dict | None = None,
    real: VideoSet | None = None,
    progress: bool = False,
) -> dict:
    """Sample n videos from a trained run (its checkpoint.pt, or `checkpoint`, e.g. a snapshot
    path relative to the run; sampling `changes` such as {"renoise": False}) and score them
    against n unseen real videos of the run's dataset (`real`: that set, already built by
    `reference_videos`, when scoring several checkpoints of one run). Returns
    {metric column: value} and the seconds it took to sample (`sample_s`) and to score
    (`metrics_s`: features, distances and their bootstrap intervals)."""
    from harness.pipeline.sample import generate

    changes = dict(changes or {}, num_samples=n, device=options.device)
    start = time.perf_counter()
    gen = generate(Path(run), changes, checkpoint=checkpoint, progress=progress)
    sampled = time.perf_counter()
    options = for_data(options, gen.config)
    fake = VideoSet(gen.videos, tuple(gen.captions))
    if real is None:  # sampling changes leave the data keys alone: the run's own data
        real = reference_videos(gen.config, n)
    scores = compute_metrics(fake, real, names, options, progress=progress)
    return scores | dict(sample_s=sampled - start, metrics_s=time.perf_counter() - sampled)


def evaluator_recipe(cfg: Config) -> EvaluatorRecipe:
    """The embedded evaluator for cfg's moving digits: its frames, canvas, digit size and
    digits per clip (the other fields at the default recipe)."""
    return EvaluatorRecipe(frames=cfg.frames, size=cfg.resolution, max_digits=cfg.max_digits,
                           digit_size=cfg.digit_size)  # fmt: skip


def for_data(options: MetricOptions, cfg: Config) -> MetricOptions:
    """`options` with the evaluator of cfg's data when none is set."""
    if options.evaluator is not None:
        return options
    return dataclasses.replace(options, evaluator=evaluator_recipe(cfg))


EVALUATOR_METRICS = {"fvd-md", "kvd-md", "pa-md"}  # the metrics the embedded evaluator makes


def instruments(names: list[str], options: MetricOptions, cfg: Config) -> dict[str, str]:
    """The hashes of the trained instruments a score of cfg's run depends on: the embedded
    evaluator's weights (when a metric of `names` uses it) and the tiny autoencoder's that
    decodes the samples (latent_channels > 0): committed, cached or trained now."""
    out = {}
    if EVALUATOR_METRICS & set(names):
        recipe = for_data(options, cfg).evaluator
        out["evaluator_weights"] = evaluator_weights(recipe, options.cache or None, False).sha
    codec = trained_codec_hash(cfg)
    if codec is not None:
        out["autoencoder_weights"] = codec
    return out


def metrics_key(names: list[str], options: MetricOptions, cfg: Config) -> str:
    """Hash of what a score's value depends on besides the trained run: the metric names,
    the options that pick the metric models (I3D file and recipe, CLIP folder), the
    evaluator recipe at cfg's shape (its key) and the hashes of the evaluator's and the
    autoencoder's weights (`instruments`), how the real reference is drawn, and the
    bootstrap draws behind every interval (named only when not the default, so that the
    keys of scores made at the default stay what they were)."""
    recipe = for_data(options, cfg).evaluator
    draws = options.bootstrap
    return digest(
        dict(
            metrics=sorted(names),
            **({} if draws == MetricOptions().bootstrap else dict(bootstrap=draws)),
            i3d=options.i3d if "fvd-i3d" in names else "",
            i3d_recipe=options.i3d_recipe if "fvd-i3d" in names else "",
            clip=options.clip if "clipsim" in names else "",
            evaluator=recipe.key(),
            real_seed_offset=REAL_SEED_OFFSET,
            **instruments(names, options, cfg),
        )
    )


def reference_scores(
    table: Path,
    cfg: Config,
    n: int,
    options: MetricOptions,
    names: list[str],
    progress: bool = False,
) -> dict[str, dict]:
    """The scores that put a run's scores in context, at n (rows of `table`, reused under
    the same identity): `real`, a second real set from disjoint seeds against the reference
    set (the best a model can score at this n); `noise`, uniform noise in [-1, 1] against
    it (a model that learned nothing); `chance`, the second real set scored against the
    reference set's captions (PA-md of videos that ignore their captions)."""
    from harness.pipeline.provenance import data_hash

    real = reference_videos(cfg, n)
    data = build_data(cfg, seed_offset=OTHER_REAL_SEED_OFFSET)
    if n > len(data):
        raise ValueError(f"asked for {n} real videos but the second real set has {len(data)}")
    items = [data[i] for i in range(n)]
    other = VideoSet(
        torch.stack([it["video"] for it in items]), tuple(it["caption"] for it in items)
    )
    g = torch.Generator().manual_seed(n)
    sets = {
        "real": other,
        "noise": VideoSet(torch.rand(real.videos.shape, generator=g) * 2 - 1, real.captions),
        "chance": VideoSet(other.videos, real.captions),
    }
    rows = {}
    for kind, fake in sets.items():
        used = ["pa-md"] if kind == "chance" else names
        identity = ResultIdentity(
            config=data_hash(cfg), checkpoint=f"reference:{kind}", sampling="",
            metrics=metrics_key(used, options, cfg), n=n, code=code_revision(),
        )  # fmt: skip
        row = stored_row(table, identity)
        if row is None:
            scores = compute_metrics(fake, real, used, for_data(options, cfg), progress=progress)
            row = dict(kind=kind) | identity.columns() | scores
            append_result(table, row, same=("kind", "n", "config_hash"))
        rows[kind] = row
    return rows


def score_or_reuse(
    table: Path,
    run: Path,
    checkpoint: str | Path,
    n: int,
    options: MetricOptions,
    names: list[str],
    changes: dict | None = None,
    real: Callable[[], VideoSet] | None = None,
    extra: dict | None = None,
    same: tuple[str, ...] = (),
    progress: bool = False,
) -> dict:
    """The score of `checkpoint` (relative to `run`) under the sampling `changes`, reused
    from `table` when a row there has exactly this identity (provenance.ResultIdentity:
    training config, weights, sampling setting, metrics, n, code revision), else computed
    and appended (older rows that share the `same` columns but not the identity are moved
    aside, see provenance.append_result). `real()` gives the real reference videos (built
    once by the caller for all scores of a run). Returns the row: `extra`, the identity
    columns, step, train_flops, train_wall_s, the thread count and torch version training ran
    with, and the metric columns."""
    from harness.pipeline.sample import plan_tag, sampling_config

    info = checkpoint_info(Path(run) / checkpoint)
    trained = Config.from_dict(info.config)
    sampled = sampling_config(trained, dict(changes or {}, num_samples=n))
    identity = ResultIdentity(
        config=training_hash(trained),
        checkpoint=info.key,
        sampling=plan_tag(sampled),
        metrics=metrics_key(names, options, trained),
        n=n,
        code=code_revision(),
    )
    row = stored_row(table, identity)
    if row is not None:
        return row
    reference = real() if real is not None else None
    scores = score_checkpoint(
        run, n, options, names, checkpoint, changes, reference, progress=progress
    )
    row = dict(extra or {}) | identity.columns()
    row |= dict(
        step=info.step,
        train_flops=info.train_flops,
        train_wall_s=info.wall_time_s,
        train_threads=info.environment.get("threads"),
        torch=info.environment.get("torch"),
    )
    row |= scores
    append_result(table, row, same)
    return row
