"""Data at scale (pytest-benchmark, apart from the unit tests): `python -m pytest
benchmarks/test_scale.py --benchmark-only`.

On a generated folder of 2,000 tiny clips (and its first 200): how fast `harness.prepare`
decodes with 1 and 2 worker processes, and what a training process costs at its start
(peak RSS, time to the first step) once the data are prepared. Each figure is measured in a
fresh process, so one measurement cannot warm the next. Figures go to `extra_info` and to
the README (docs/training.md, "Preparing data").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from harness.data.prepared import Source, prepare, prepared_folder

ROOT = Path(__file__).resolve().parent.parent
CLIPS, SMALL = 2000, 200
FRAMES, SIZE = 8, 16


def write_clips(root: Path, n: int) -> Path:
    """n 8-frame 24x20 mpeg4 clips of a moving square and their captions.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,caption"]
    for k in range(n):
        name = f"clip{k:05d}.mp4"
        with av.open(str(root / name), "w") as out:
            stream = out.add_stream("mpeg4", rate=8)
            stream.width, stream.height, stream.pix_fmt = 24, 20, "yuv420p"
            for t in range(FRAMES):
                img = np.zeros((20, 24, 3), np.uint8)
                x = (2 * t + k) % 18
                img[6:12, x : x + 6] = (255, (37 * k) % 256, 40)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(stream.encode())
        rows.append(f"{name},a square moving right {k}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    big = write_clips(tmp_path_factory.mktemp("clips2000"), CLIPS)
    small = tmp_path_factory.mktemp("clips200")
    lines = (big / "captions.csv").read_text().splitlines()[: SMALL + 1]
    for line in lines[1:]:
        (small / line.split(",")[0]).symlink_to(big / line.split(",")[0])
    (small / "captions.csv").write_text("\n".join(lines) + "\n")
    return {SMALL: small, CLIPS: big}


def overrides(data_root: Path, out: Path) -> list[str]:
    return ["size=tiny", "dataset=video-folder", f"data_root={data_root}", "channels=3",
            f"frames={FRAMES}", f"resolution={SIZE}", "batch_size=8", "steps=1",
            "data_workers=2", f"out_dir={out}"]  # fmt: skip


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def prepare_seconds(data_root: Path, out: Path, workers: int) -> float:
    """Seconds to decode and write the folder's shards (the preparation itself, without the
    interpreter start-up of the command line)."""
    source = Source(str(data_root), FRAMES, SIZE, channels=3)
    t0 = time.perf_counter()
    prepare(source, prepared_folder(source, out / "prepared"), workers=workers, shard_size=128)
    return time.perf_counter() - t0


START = """
import json, resource, sys, time
t0 = time.perf_counter()
from harness.common.config import Config
from harness.pipeline import train
cfg = Config().override(sys.argv[1:])
train.main(cfg)
print(json.dumps(dict(seconds=time.perf_counter() - t0,
                      peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def training_start(data_root: Path, out: Path) -> dict:
    """Peak RSS and wall time of a fresh process that builds the run and trains one step."""
    return json.loads(run(["-c", START, *overrides(data_root, out)]).stdout.splitlines()[-1])


def test_prepare_throughput_scales_with_workers(benchmark, folders, tmp_path):
    one = prepare_seconds(folders[CLIPS], tmp_path / "w1", 1)
    two = benchmark.pedantic(prepare_seconds, (folders[CLIPS], tmp_path / "w2", 2), rounds=1,
                             iterations=1)  # fmt: skip
    speedup = one / two
    benchmark.extra_info |= dict(clips=CLIPS, one_worker_s=one, two_workers_s=two,
                                 speedup=speedup, clips_per_s=CLIPS / two)  # fmt: skip
    print(f"prepare {CLIPS} clips: 1 worker {one:.2f} s, 2 workers {two:.2f} s ({speedup:.2f}x)")
    assert speedup >= 1.6, f"2 workers {two:.1f} s vs 1 worker {one:.1f} s"


def test_training_start_does_not_grow_with_the_data(benchmark, folders, tmp_path):
    figures = {}
    for n in (SMALL, CLIPS):
        prepare_seconds(folders[n], tmp_path / str(n), 2)
        figures[n] = training_start(folders[n], tmp_path / str(n))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info |= {f"{k}_{n}": v for n, f in figures.items() for k, v in f.items()}
    print(f"training start: {figures}")
    small, big = figures[SMALL], figures[CLIPS]
    assert big["peak_rss_mib"] <= 1.10 * small["peak_rss_mib"], figures
    assert big["seconds"] <= 1.25 * small["seconds"] + 1.0, figures
