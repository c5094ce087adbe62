"""What one run of the paper suite's CPU design costs, per arm: the budget behind the
pre-registered design (docs/paper-suite.md).

`python benchmarks/budget_pilot.py [--steps 300] [--videos 256]` (run it alone)

Each arm (DiT and UNet, vanilla and TPDiff, the `--scale cpu` configs) trains `--steps`
steps and samples `--videos` guided videos at the last step, in a process of one thread,
two processes side by side (vanilla and TPDiff of one backbone), as the suite runs them
with `--workers 2`. Writes benchmarks/budget_pilot.csv: training steps per second of
compute and sampling seconds per video, and prints the job's estimated wall-clock time at
the scale's design (steps, seeds, curve points, n) on 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARM = """
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
from harness.pipeline.sample import generate
from harness.pipeline.train import main
from harness.studies.core.scale import SCALES, scale_config
base, steps, videos = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = scale_config(SCALES["cpu"], base, Path(sys.argv[1]), 1)
cfg = cfg.replace(steps=steps, snapshot_every=steps, ckpt_every=steps, name=base)
run = main(cfg)
state = torch.load(run / "checkpoint.pt", weights_only=False)
start = time.perf_counter()
generate(run, dict(num_samples=videos), progress=False)
print(json.dumps(dict(arm=base, steps_per_s=steps / state["wall_time_s"],
                      s_per_video=(time.perf_counter() - start) / videos)))
"""


def pair(backbone: str, steps: int, videos: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as runs:
        procs = [subprocess.Popen([sys.executable, "-c", ARM, runs, f"{backbone}-{m}", str(steps),
                                   str(videos)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  env=os.environ | {"OMP_NUM_THREADS": "1"})
                 for m in ("vanilla", "tpdiff")]  # fmt: skip
        return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def estimate(table: pd.DataFrame) -> dict:
    """Core-minutes of the cpu design per phase, and the wall-clock on 2 workers."""
    from harness.studies.core.scale import SCALES

    scale = SCALES["cpu"]
    arms = table.set_index("arm")
    train = score = renoise = 0.0
    for arm, row in arms.iterrows():
        backbone, method = arm.split("-")
        steps = scale.steps_for(backbone)
        train += scale.seeds * steps / row.steps_per_s
        videos = (scale.curve.evals - 1) * scale.curve.n + scale.final_n
        score += scale.seeds * videos * row.s_per_video
        if method == "tpdiff":
            renoise += scale.renoise_seeds * scale.final_n * row.s_per_video
    dit = arms.loc["dit-tpdiff"]
    noalign = scale.align_seeds * (scale.steps_for("dit") / dit.steps_per_s
                                   + scale.final_n * dit.s_per_video)  # fmt: skip
    core = dict(train=train, curves_and_finals=score, renoise_off=renoise, noalign=noalign)
    core_min = {k: v / 60 for k, v in core.items()}
    return dict(core_minutes=core_min, wall_minutes_on_2_workers=sum(core_min.values()) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--videos", type=int, default=256)
    args = parser.parse_args()
    rows = [r | dict(steps=args.steps, videos=args.videos)
            for b in ("dit", "unet") for r in pair(b, args.steps, args.videos)]  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "budget_pilot.csv", index=False)
    print(table.round(4).to_string(index=False))
    print(json.dumps(estimate(table), indent=2))


if __name__ == "__main__":
    main()
