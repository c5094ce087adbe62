"""How far FVD-md and KVD-md move between evaluators trained with different seeds.

`python benchmarks/evaluator_spread.py RUNS [--n 1024] [--seeds 9001 9002 ...]`

The CPU recipe's evaluator is trained again with each seed (`python -m harness.weights
train evaluator --seed S` does the same; seed 9001 is the committed recipe), and every one
scores the same videos: a second real set against the reference set (real vs real), and
`n` samples from each trained run under RUNS (its checkpoint.pt; sampled once, shared by all
evaluators). Writes benchmarks/evaluator_spread.csv (one row per evaluator and set) and
prints each set's spread over evaluators: min, max and max / min. The videos and the real
reference are the paper suite's (`harness.pipeline.evaluate`); only the evaluator changes.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import torch

from harness.common.config import Config
from harness.metrics import MetricOptions, VideoSet, compute_metrics
from harness.metrics import evaluator as ev
from harness.pipeline.build import build_data
from harness.pipeline.evaluate import OTHER_REAL_SEED_OFFSET, reference_videos
from harness.pipeline.sample import generate
from harness.studies.core import cpu_recipe

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder of trained runs (each with checkpoint.pt)")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--seeds", type=int, nargs="+", default=[9001, 9002, 9003, 9004, 9005])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/evaluator-spread"))
    args = parser.parse_args()
    base = ev.EvaluatorRecipe(**cpu_recipe.EVALUATOR)
    runs = sorted(p.parent for p in args.runs.glob("*/checkpoint.pt"))
    sets: dict[str, VideoSet] = {}
    cfg = None
    for run in runs:
        gen = generate(run, dict(num_samples=args.n, device="cpu"), progress=False)
        sets[run.name] = VideoSet(gen.videos, tuple(gen.captions))
        cfg = cfg or gen.config
        print(f"sampled {args.n} videos from {run.name}", flush=True)
    if cfg is None:
        cfg = Config().replace(**cpu_recipe.OVERRIDES)
    real = reference_videos(cfg, args.n)
    data = build_data(cfg, seed_offset=OTHER_REAL_SEED_OFFSET)
    other = [data[i] for i in range(args.n)]
    sets["real"] = VideoSet(torch.stack([o["video"] for o in other]),
                            tuple(o["caption"] for o in other))  # fmt: skip
    rows = []
    for seed in args.seeds:
        recipe = dataclasses.replace(base, seed=seed)
        options = MetricOptions(evaluator=recipe, cache=str(args.cache))
        sha = ev.evaluator_weights(recipe, str(args.cache), progress=False).sha
        for name, fake in sets.items():
            scores = compute_metrics(fake, real, ["fvd-md", "kvd-md", "pa-md"], options, False)
            figures = {k: scores[k] for k in ("FVD-md", "KVD-md", "PA-md-digit")}
            rows.append(dict(seed=seed, evaluator=sha, set=name, n=args.n, **figures))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "evaluator_spread.csv", index=False)
    spread = table.groupby("set")[["FVD-md", "KVD-md"]].agg(["min", "max"])
    print(spread.round(3).to_string())


if __name__ == "__main__":
    main()
