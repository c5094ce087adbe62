"""Evaluation: `python -m harness.evaluate (--samples DIR | --run DIR) [options]`.

Scores a samples folder (`videos.pt` (N, C, F, H, W) in [-1, 1] and `captions.txt`, as
written by `harness.sample`) or a trained run folder (sampled first, into
`<run>/eval-samples/`) against real reference videos, and appends one row per evaluation
to a CSV (default `results/runs/evaluations.csv`, git-ignored): time, samples folder, run,
n, n_real, every metric column (named by feature space: FVD-I3D vs FVD-md, CLIPSIM vs
PA-md), evaluator key, metric options key and code revision.

Real reference: the dataset of the run that made the samples (the samples folder's
sampling.json, the run's config.json, or --config), drawn with a seed offset no training
run or sampling caption uses, so moving-digits references are unseen videos; without any
config, moving-digits at the samples' shape.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from harness.common.cli import add_debug_flag, guarded
from harness.common.config import Config
from harness.common.io import check_output_file, load_torch
from harness.metrics import METRICS, MetricOptions, VideoSet, compute_metrics, default_metrics
from harness.metrics.i3d import I3D_RECIPES
from harness.pipeline.evaluate import for_data, metrics_key, reference_videos
from harness.pipeline.provenance import append_result, code_revision

DEFAULT_OUT = Path("results/runs/evaluations.csv")  # results/runs/ is git-ignored


def load_samples(folder: str | Path) -> VideoSet:
    """videos.pt and captions.txt ("idx<TAB>caption" lines) of a samples folder."""
    folder = Path(folder)
    videos_path, captions_path = folder / "videos.pt", folder / "captions.txt"
    for path in (videos_path, captions_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: a samples folder holds videos.pt and captions.txt "
                "(written by python -m harness.sample)"
            )
    fix = "sample again with python -m harness.sample (it writes videos.pt whole or not at all)"
    videos = load_torch(videos_path, "samples file", fix, map_location="cpu", weights_only=True)
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5:
        what = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"{videos_path} holds {what}, not videos (N, C, F, H, W); {fix}")
    videos = videos.float()
    bad = int((~torch.isfinite(videos)).flatten(1).any(1).sum())
    if bad:
        raise ValueError(
            f"{videos_path}: {bad} of {len(videos)} videos hold NaN or Inf values, which no "
            f"metric can score; {fix} (a model that diverged gives such samples)"
        )
    lines = [line for line in captions_path.read_text(encoding="utf-8").splitlines() if line]
    captions = tuple(line.split("\t", 1)[-1] for line in lines)
    return VideoSet(videos, captions)


def find_config(samples: Path, config: str | Path | None) -> Config | None:
    """The config naming the real data: --config (TOML or a run's config.json), else the
    samples folder's sampling.json (harness.sample), else its parent run's config.json."""
    if config:
        path = Path(config)
        if path.suffix != ".json":
            return Config.from_file(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        return Config.from_dict(json.loads(path.read_text())["config"])
    for meta in (samples / "sampling.json", samples.parent / "config.json"):
        if meta.is_file():
            return Config.from_dict(json.loads(meta.read_text())["config"])
    return None


def sample_run(run: Path, num_samples: int, device: str = "cpu") -> Path:
    """Sample `num_samples` videos from a trained run folder into <run>/eval-samples/."""
    from harness.pipeline.sample import main as sample_main

    if not (run / "config.json").is_file() or not (run / "checkpoint.pt").is_file():
        raise FileNotFoundError(
            f"{run} is not a trained run folder (needs config.json and checkpoint.pt; "
            "train with python -m harness.train)"
        )
    changes = {"num_samples": num_samples, "device": device}
    return sample_main(run, changes, out=run / "eval-samples")


def main(
    samples: str | Path | None = None,
    run: str | Path | None = None,
    real: int | None = None,
    out: str | Path | None = DEFAULT_OUT,
    metrics: list[str] | None = None,
    options: MetricOptions | None = None,
    config: str | Path | None = None,
    num_samples: int = 256,
    progress: bool = True,
) -> dict:
    """Evaluate a samples folder (or sample a run first); returns the row, appended to `out`."""
    if (samples is None) == (run is None):
        raise ValueError("give exactly one of samples=DIR (a samples folder) or run=DIR")
    if out:
        check_output_file(out)  # before any sampling or scoring
    options = options or MetricOptions()
    if run is not None:
        run = Path(run)
        samples = sample_run(run, num_samples, options.device)
    samples = Path(samples)
    if not samples.is_dir():
        raise FileNotFoundError(f"samples folder {samples} not found")
    fake = load_samples(samples)
    cfg = find_config(samples, config)
    known = cfg is not None
    n, c, f, h, w = fake.videos.shape
    if cfg is None:  # bare samples folder: moving-digits at the samples' shape
        cfg = Config(frames=f, resolution=h, channels=c)
    real_set = reference_videos(cfg, real or n)
    options = for_data(options, cfg)
    names = metrics or default_metrics(options)
    start = time.perf_counter()
    scores = compute_metrics(fake, real_set, names, options, progress=progress)
    row = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "samples": str(samples),
        "run": str(run) if run is not None else "",
        "name": cfg.name if known else "",
        "method": cfg.method if known else "",
        "dataset": cfg.dataset,
        "n": n,
        "n_real": len(real_set),
        "frames": f,
        "resolution": h,
        **scores,
        "eval_time_s": round(time.perf_counter() - start, 2),
        "metrics_key": metrics_key(names, options, cfg),
        "git": code_revision(),
    }
    if out:
        append_result(Path(out), row)
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", type=Path, help="samples folder (videos.pt, captions.txt)")
    source.add_argument("--run", type=Path, help="trained run folder: sample it, then evaluate")
    parser.add_argument(
        "--real", type=int, help="real reference videos (default: as many as samples)"
    )
    parser.add_argument("--num-samples", type=int, default=256, help="videos to sample with --run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to append a row to")
    parser.add_argument(
        "--metrics",
        help=f"comma-separated subset of {','.join(METRICS)} "
        "(default: fvd-i3d if an I3D file is configured else fvd-md; clipsim if "
        "--clip else pa-md; flicker)",
    )
    parser.add_argument(
        "--i3d",
        default="",
        help="i3d_torchscript.pt (else $TPDIFF_I3D, else ~/.cache/tpdiff/i3d_torchscript.pt)",
    )
    parser.add_argument("--i3d-recipe", default="stylegan-v", choices=sorted(I3D_RECIPES))
    parser.add_argument("--clip", default="", help="local transformers CLIP folder for CLIPSIM")
    parser.add_argument(
        "--cache",
        default="",
        help="evaluator cache root (else $TPDIFF_CACHE, else ~/.cache/tpdiff-harness)",
    )
    parser.add_argument("--config", help="config (TOML or run config.json) naming the real data")
    parser.add_argument("--device", default="cpu")
    add_debug_flag(parser)
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> dict:
    """The command line: evaluate, print the row, append it to --out; bad input exits 2."""
    args = parse_args(argv)
    opts = MetricOptions(
        i3d=args.i3d,
        i3d_recipe=args.i3d_recipe,
        clip=args.clip,
        cache=args.cache,
        device=args.device,
    )
    result = guarded(
        "python -m harness.evaluate",
        args.debug,
        lambda: main(
            samples=args.samples,
            run=args.run,
            real=args.real,
            out=args.out,
            metrics=args.metrics.split(",") if args.metrics else None,
            options=opts,
            config=args.config,
            num_samples=args.num_samples,
        ),
    )
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in result.items()))
    print(f"-> appended to {args.out}")
    return result


if __name__ == "__main__":
    cli()
