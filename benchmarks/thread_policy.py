"""How fast a CPU training run is alone and with one busy process beside it, per thread policy.

`python benchmarks/thread_policy.py [--steps 300]` (run it alone on the machine)

Each policy trains the CPU recipe's DiT (vanilla, `--scale cpu` config) for `--steps` steps
in a fresh process, twice: idle, and with one busy process beside it (a pure-Python loop:
one core taken). The figure is training steps per second of compute (the run's own
`wall_time_s`, start-up excluded). Policies: torch's default (one thread per core) with
OpenMP's default spin-waiting, the same with `OMP_WAIT_POLICY=PASSIVE` (threads sleep
instead of spinning while they wait) and with a short spin (`GOMP_SPINCOUNT=10000`, GNU
OpenMP's: spin that many times, then sleep), and one thread. Writes
benchmarks/thread_policy.csv; the harness's policy (`harness.common.threads`) is chosen
from it, see docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POLICIES = {
    "default threads, spin": {},
    "default threads, passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "default threads, spin 10k": {"GOMP_SPINCOUNT": "10000"},
    "default threads, spin 1k": {"GOMP_SPINCOUNT": "1000"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
TRAIN = """
import json, sys, torch
from pathlib import Path
from harness.pipeline.train import main
from harness.studies.core.scale import SCALES, scale_config
cfg = scale_config(SCALES["cpu"], "dit-vanilla", Path(sys.argv[1]), 1)
steps = int(sys.argv[2])
cfg = cfg.replace(steps=steps, snapshot_every=steps, ckpt_every=steps, name="bench")
main(cfg)
state = torch.load(Path(sys.argv[1]) / "bench" / "checkpoint.pt", weights_only=False)
print(json.dumps(dict(steps_per_s=steps / state["wall_time_s"],
                      threads=torch.get_num_threads())))
"""


def train(env: dict, steps: int, busy: bool) -> dict:
    hog = None
    if busy:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1)
    try:
        with tempfile.TemporaryDirectory() as runs:
            done = subprocess.run([sys.executable, "-c", TRAIN, runs, str(steps)], cwd=ROOT,
                                  env=os.environ | env, capture_output=True, text=True,
                                  check=True)  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()
    rows = []
    for policy, env in ((p, POLICIES[p]) for p in args.policies):
        for busy in (False, True):
            figures = train(env, args.steps, busy)
            rows.append(dict(policy=policy, beside="one busy process" if busy else "idle",
                             steps=args.steps, cores=os.cpu_count(), **figures))  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    idle = table[table.beside == "idle"].set_index("policy").steps_per_s
    table["slowdown_vs_idle"] = [idle[p] / s for p, s in zip(table.policy, table.steps_per_s)]
    table.to_csv(HERE / "thread_policy.csv", index=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
