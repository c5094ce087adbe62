"""Quality metrics, registered by name. Every result column names its feature space.

`METRICS[name](fake, real, ctx) -> {column: value}` for a generated `VideoSet` and a real
reference `VideoSet`:

| name      | columns                                          | needs                        |
|-----------|--------------------------------------------------|------------------------------|
| `fvd-i3d` | `FVD-I3D`, `-lo`, `-hi` (or `FVD-I3D-<recipe>`…) | the Kinetics-400 I3D (`--i3d`)|
| `fvd-md`  | `FVD-md`, `FVD-md-lo`, `FVD-md-hi`, `evaluator`  | the embedded evaluator       |
| `kvd-md`  | `KVD-md`, `KVD-md-lo`, `KVD-md-hi`               | the embedded evaluator       |
| `clipsim` | `CLIPSIM` (0-100)                                | a local CLIP folder (`--clip`)|
| `pa-md`   | `PA-md`, `PA-md-digit`, `PA-md-dir`, `PA-md-real`| the embedded evaluator       |
| `flicker` | `flicker`, `flicker-real`                        | nothing                      |
| `motion`  | `motion-gap`, `-lo`, `-hi`, `stutter`, `stutter-real` | nothing                 |

`-lo` / `-hi` are the 90 % bootstrap interval (both sets resampled, `MetricOptions.bootstrap`
draws). Defaults (`default_metrics`): I3D FVD when an I3D file is configured, else FVD-md
and KVD-md; CLIPSIM when a CLIP folder is configured, else PA-md; flicker and motion.
FVD-md, KVD-md and PA-md are measured by our own moving-digits classifier and are never
comparable with published FVD / CLIPSIM. The evaluator's outputs for each set are computed
once per `compute_metrics` call and shared by every metric that needs them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from harness.metrics.agreement import parse_caption, prompt_agreement
from harness.metrics.bootstrap import bootstrap_interval
from harness.metrics.clipsim import ClipSim
from harness.metrics.evaluator import EvaluatorRecipe, Outputs, load_evaluator, predict
from harness.metrics.flicker import flicker
from harness.metrics.frechet import frechet_distance, frechet_distance_of_features, gaussian_stats
from harness.metrics.i3d import DEFAULT_PATH as I3D_DEFAULT_PATH
from harness.metrics.i3d import ENV_VAR as I3D_ENV_VAR
from harness.metrics.i3d import I3D_RECIPES, I3DFeatures
from harness.metrics.kernel import kernel_distance
from harness.metrics.motion import frame_changes, motion_gap, stutter


@dataclass(frozen=True)
class VideoSet:
    """videos (N, C, F, H, W) float in [-1, 1] and one caption per video."""

    videos: Tensor
    captions: tuple[str, ...]

    def __post_init__(self):
        if self.videos.ndim != 5:
            raise ValueError(f"videos must be (N, C, F, H, W), got {tuple(self.videos.shape)}")
        if len(self.captions) != len(self.videos):
            raise ValueError(f"{len(self.captions)} captions for {len(self.videos)} videos")

    def __len__(self) -> int:
        return len(self.videos)


@dataclass(frozen=True)
class MetricOptions:
    """Where the metric models live. Empty strings mean "not configured" (see each field)."""

    i3d: str = ""  # I3D TorchScript path; "" -> $TPDIFF_I3D, else ~/.cache/tpdiff/...
    i3d_recipe: str = "stylegan-v"  # key of I3D_RECIPES
    clip: str = ""  # local transformers CLIP folder for CLIPSIM
    cache: str = ""  # evaluator cache root; "" -> $TPDIFF_CACHE, else ~/.cache/tpdiff-harness
    evaluator: EvaluatorRecipe | None = None  # None: default recipe at the videos' shape
    device: str = "cpu"
    bootstrap: int = 200  # resamples behind every -lo / -hi interval

    def i3d_configured(self) -> bool:
        return bool(
            self.i3d or os.environ.get(I3D_ENV_VAR) or I3D_DEFAULT_PATH.expanduser().is_file()
        )


@dataclass
class MetricContext:
    """Options plus the metric models, each loaded on first use and shared by all metrics."""

    options: MetricOptions
    frames: int
    size: int
    progress: bool = True

    @cached_property
    def evaluator(self):
        recipe = self.options.evaluator or EvaluatorRecipe(frames=self.frames, size=self.size)
        evaluator = load_evaluator(
            recipe, self.options.cache or None, self.options.device, progress=self.progress
        )
        evaluator.progress = self.progress
        return evaluator

    @cached_property
    def i3d(self) -> I3DFeatures:
        return I3DFeatures(self.options.i3d or None, self.options.i3d_recipe, self.options.device)

    @cached_property
    def clip(self) -> ClipSim:
        if not self.options.clip:
            raise ValueError("CLIPSIM needs a local CLIP folder: pass --clip PATH")
        return ClipSim(self.options.clip, self.options.device)

    def outputs(self, videos: VideoSet) -> Outputs:
        """The evaluator's outputs for one of the two sets, computed once per set."""
        key = id(videos)
        if key not in self._outputs:
            self._outputs[key] = self.evaluator.outputs(videos.videos)
        return self._outputs[key]

    def interval(self, statistic, real, fake) -> tuple[float, float]:
        return bootstrap_interval(statistic, real, fake, draws=self.options.bootstrap)

    def __post_init__(self):
        self._outputs: dict[int, Outputs] = {}


Metric = Callable[[VideoSet, VideoSet, MetricContext], dict]


def _md_features(fake: VideoSet, real: VideoSet, ctx: MetricContext):
    return ctx.outputs(real).features.double().numpy(), ctx.outputs(fake).features.double().numpy()


def _fvd_md(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    r, f = _md_features(fake, real, ctx)
    value = frechet_distance(gaussian_stats(r, "FVD-md real features"),
                             gaussian_stats(f, "FVD-md generated features"))  # fmt: skip
    with warnings.catch_warnings():  # the resamples repeat the n <= d warning, if any
        warnings.simplefilter("ignore", UserWarning)
        lo, hi = ctx.interval(frechet_distance_of_features, r, f)
    return {"FVD-md": value, "FVD-md-lo": lo, "FVD-md-hi": hi,
            "evaluator": ctx.evaluator.recipe.key()}  # fmt: skip


def _kvd_md(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    r, f = (ctx.evaluator.standardize(torch.from_numpy(x)).numpy()
            for x in _md_features(fake, real, ctx))  # fmt: skip
    lo, hi = ctx.interval(kernel_distance, r, f)
    return {"KVD-md": kernel_distance(r, f), "KVD-md-lo": lo, "KVD-md-hi": hi}


def _fvd_i3d(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    """FVD in the I3D's space with the same bootstrap interval as FVD-md (features are
    extracted once; the resamples reuse them)."""
    name = ctx.i3d.name
    with torch.no_grad():
        r = ctx.i3d(real.videos).double().cpu().numpy()
        f = ctx.i3d(fake.videos).double().cpu().numpy()
    value = frechet_distance(gaussian_stats(r, f"{name} real features"),
                             gaussian_stats(f, f"{name} generated features"))  # fmt: skip
    with warnings.catch_warnings():  # the resamples repeat the n <= d warning, if any
        warnings.simplefilter("ignore", UserWarning)
        lo, hi = ctx.interval(frechet_distance_of_features, r, f)
    return {name: value, f"{name}-lo": lo, f"{name}-hi": hi}


def _clipsim(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    return {"CLIPSIM": ctx.clip(fake.videos, list(fake.captions))}


def _pa_md(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    acc = prompt_agreement(*predict(ctx.outputs(fake)), list(fake.captions))
    ceiling = prompt_agreement(*predict(ctx.outputs(real)), list(real.captions))  # ceiling
    return {
        "PA-md": acc.both,
        "PA-md-digit": acc.digit,
        "PA-md-dir": acc.direction,
        "PA-md-real": ceiling.both,
    }


def _flicker(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    return {"flicker": flicker(fake.videos), "flicker-real": flicker(real.videos)}


def _motion(fake: VideoSet, real: VideoSet, ctx: MetricContext) -> dict:
    r, f = frame_changes(real.videos), frame_changes(fake.videos)
    lo, hi = ctx.interval(motion_gap, r, f)
    return {"motion-gap": motion_gap(r, f), "motion-gap-lo": lo, "motion-gap-hi": hi,
            "stutter": stutter(f, r), "stutter-real": stutter(r, r)}  # fmt: skip


METRICS: dict[str, Metric] = {
    "fvd-i3d": _fvd_i3d,
    "fvd-md": _fvd_md,
    "kvd-md": _kvd_md,
    "clipsim": _clipsim,
    "pa-md": _pa_md,
    "flicker": _flicker,
    "motion": _motion,
}


def default_metrics(options: MetricOptions) -> list[str]:
    """I3D FVD if an I3D file is configured else FVD-md and KVD-md; CLIPSIM if a CLIP folder
    is configured else PA-md; flicker and motion."""
    return [
        *(["fvd-i3d"] if options.i3d_configured() else ["fvd-md", "kvd-md"]),
        "clipsim" if options.clip else "pa-md",
        "flicker",
        "motion",
    ]


def compute_metrics(
    fake: VideoSet,
    real: VideoSet,
    names: list[str] | None = None,
    options: MetricOptions | None = None,
    progress: bool = True,
) -> dict:
    """{column: value} of the metrics `names` (default: default_metrics) of fake vs real."""
    options = options or MetricOptions()
    names = names or default_metrics(options)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    if fake.videos.shape[1:] != real.videos.shape[1:]:
        raise ValueError(
            f"generated videos {tuple(fake.videos.shape[1:])} and real videos "
            f"{tuple(real.videos.shape[1:])} differ in (C, F, H, W)"
        )
    for which, videos in (("generated", fake.videos), ("real", real.videos)):
        bad = int((~torch.isfinite(videos)).flatten(1).any(1).sum())
        if bad:
            raise ValueError(
                f"{bad} of {len(videos)} {which} videos hold NaN or Inf values, which no metric "
                "can score (a diverged model or a broken decode); nothing was scored"
            )
    _, _, frames, size, _ = fake.videos.shape
    ctx = MetricContext(options, frames=frames, size=size, progress=progress)
    row: dict = {}
    for name in names:
        row.update(METRICS[name](fake, real, ctx))
    return row


__all__ = [
    "I3D_RECIPES",
    "METRICS",
    "ClipSim",
    "EvaluatorRecipe",
    "I3DFeatures",
    "MetricContext",
    "MetricOptions",
    "Outputs",
    "VideoSet",
    "compute_metrics",
    "default_metrics",
    "flicker",
    "frechet_distance",
    "gaussian_stats",
    "kernel_distance",
    "motion_gap",
    "load_evaluator",
    "parse_caption",
    "prompt_agreement",
]
