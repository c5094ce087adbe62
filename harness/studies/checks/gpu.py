"""`python -m harness.run --suite gpu-check [--dry-run]`: every CUDA path of the harness
exercised in a few minutes on one GPU, before a multi-day run trusts it.

Parts, each timed and reported (`summary.json`, `report.md` in `results/gpu/<device>/`):

1. **packages**: the ones the check itself imports beyond what `python -m harness.run`
   already needs (`NEEDED`: pytest, transformers, accelerate, scikit-learn, tabulate,
   optuna; docs/gpu.md says how to carry them as wheels). A missing one stops the check
   with one line naming it.
2. **device tests**: `python -m pytest -m cuda` on the test files that hold `cuda`-marked
   tests, with `TPDIFF_TEST_DEVICE=cuda`: placement,
   bf16 autocast, a fused attention kernel, CUDA-event timing, `torch.compile`,
   bit-identical resume (with cuBLAS made deterministic), the tests' own tiny Wan and
   AnimateDiff pipelines fine-tuned as vanilla and as TPDiff, then sampled and scored, and
   a torchrun (NCCL) training run killed and resumed. Their JUnit file is kept.
3. **cost shapes**: the cost tables at `small` on 16 frames and at a shape big enough to be
   compute-bound on the card: latency at batch 1 (CUDA events), throughput at a large
   batch, and measured / FLOP bound for both backbones.

`--dry-run` runs the same plumbing on the CPU with the device tests on `cpu` and the cost
shapes shrunk to seconds, so CI keeps the check itself working. At most 8 files are
written, all in one folder: what comes back from a lent machine.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from harness.common.cli import pip_name
from harness.common.io import write_csv, write_json, write_text
from harness.common.processes import kill_tree
from harness.measure.cost import cost_tables
from harness.pipeline.provenance import code_revision
from harness.studies.core.paper_figures import PAPER_FIGURES

ROOT = Path(__file__).resolve().parents[3]
# imported only inside the check (the rest is imported by `python -m harness.run` itself,
# which names a missing one: harness/run.py)
NEEDED = ("pytest", "transformers", "accelerate", "sklearn", "tabulate", "optuna")


@dataclass(frozen=True)
class Shape:
    """A cost-table shape: backbone size, frames, and the batch of the throughput figure."""

    name: str
    size: str
    frames: int
    batch: int


# the cost suite's shape, and 4x its frames: enough arithmetic per call to be compute-bound
GPU_SHAPES = (Shape("small-16f", "small", 16, 64), Shape("small-64f", "small", 64, 64))
DRY_SHAPES = (Shape("tiny-8f", "tiny", 8, 2),)
TESTS_TIMEOUT_S = 200  # the device tests in all: a hung kernel ends them, and the report says so


def missing_packages(names: tuple[str, ...] = NEEDED) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def cuda_test_files(tests: Path = ROOT / "tests") -> list[str]:
    """The test files that hold `cuda`-marked tests, relative to the repository root: the
    only ones the device tests collect (the others may import what the check does not need)."""
    return sorted(str(p.relative_to(ROOT)) for p in tests.glob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text())  # fmt: skip


def device_slug(dry_run: bool) -> str:
    """The folder name of this machine's results: the GPU's name, or `cpu-dry-run`."""
    if dry_run:
        return "cpu-dry-run"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def device_tests(out: Path, device: str, quick: bool = False,
                 timeout: int = TESTS_TIMEOUT_S) -> dict:  # fmt: skip
    """`pytest -m cuda` on `device` in a child process (its own session: a timeout ends
    it and everything it started, torchrun workers included); its counts from the JUnit
    file. `quick`: the fast ones only (`not slow`; the dry run, which CI runs beside the
    full tests)."""
    junit = out / "cuda-tests.xml"
    junit.unlink(missing_ok=True)
    env = dict(os.environ, TPDIFF_TEST_DEVICE=device, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    marks = "cuda and not slow" if quick else "cuda"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", marks, "-p", "no:cacheprovider",
           "-o", "junit_family=xunit1", f"--junitxml={junit}", *cuda_test_files()]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)  # torchrun's workers run in sessions of their own
        output, _ = proc.communicate()
        output += f"\n(stopped after {timeout} s)"
    seconds = round(time.perf_counter() - start, 1)
    if not junit.is_file():
        return dict(tests=0, failures=0, errors=1, skipped=0, failed=["(pytest did not finish)"],
                    notes={}, seconds=seconds, device=device, passed=False,
                    output=output[-2000:])  # fmt: skip
    parsed = read_junit(junit)
    return dict(parsed, seconds=seconds, device=device,
                passed=tests_passed(parsed, proc.returncode, every_test=not quick),
                output=output[-2000:] if proc.returncode else "")  # fmt: skip


def read_junit(junit: Path) -> dict:
    """A pytest JUnit file (xunit1): its counts (tests, failures, errors, skipped), the names
    of the failed tests and the `record_property` notes."""
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [c.get("name") for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]  # fmt: skip
    notes = {p.get("name"): p.get("value") for p in suite.iter("property")}  # record_property
    return dict(counts, failed=failed, notes=notes)


def tests_passed(counts: dict, returncode: int, every_test: bool) -> bool:
    """pytest exited 0 and at least one test ran (a skipped one did not); `every_test` (the
    real GPU run): none was skipped either, since a skip there is a path left unchecked."""
    ran = counts["tests"] - counts["skipped"]
    return returncode == 0 and ran > 0 and not (every_test and counts["skipped"])


def cost_shapes(out: Path, device: torch.device, shapes: tuple[Shape, ...]) -> list[dict]:
    """The cost tables at each shape (latency at batch 1, throughput at the shape's
    batch): one row per backbone and shape; `cost_plans.csv` keeps them all. A shape that
    fails (out of memory on a smaller card, a compiler error) gets a row with its `error`
    and the next shape runs."""
    rows, plans = [], []
    for shape in shapes:
        start = time.perf_counter()
        try:
            _, table = cost_tables(device, size=shape.size, frames=shape.frames,
                                   throughput_batch=shape.batch)  # fmt: skip
        except Exception as err:  # recorded in the report; the check then fails
            rows.append(dict(shape=shape.name, error=f"{type(err).__name__}: {err}"[:500]))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        table = table.assign(shape=shape.name, seconds=round(time.perf_counter() - start, 1))
        plans.append(table)
        for r in table.to_dict("records"):
            rows.append({k: r.get(k) for k in (
                "shape", "backbone", "form", "flop_ratio_bound", "latency_inference_speedup",
                "latency_measured_over_bound", "throughput_batch",
                "throughput_inference_speedup", "throughput_measured_over_bound",
                "latency_vanilla_sampling_s", "latency_tpdiff_sampling_s",
                "seconds")})  # fmt: skip
    if plans:
        write_csv(out / "cost_plans.csv", pd.concat(plans, ignore_index=True))
    return rows


# Table 1 of the paper: the inference speedup at 30 steps, a GPU latency
PAPER_LATENCY = {r["backbone"]: r["inference_speedup"] for r in PAPER_FIGURES}


def report_md(summary: dict) -> str:
    tests = summary["device_tests"]
    lines = [
        f"# GPU check on `{summary['device']}`",
        "",
        f"Code `{summary['code']}`, torch {summary['torch']}, CUDA {summary['cuda']}; "
        f"{summary['seconds']:.0f} s in all: **{'passed' if summary['passed'] else 'failed'}**.",
        "",
        f"Device tests (`pytest -m cuda` on {tests['device']}): {tests['tests']} run, "
        f"{tests['failures']} failed, {tests['errors']} errors, {tests['skipped']} skipped "
        f"({tests['seconds']} s)"
        + (f"; failed: {tests['failed']}" if tests["failed"] else "")
        + ".",
        *(["", "```", tests["output"].strip(), "```"] if tests.get("output") else []),
        "",
        *[f"- {k}: {v}" for k, v in tests["notes"].items()],
        "",
        "| shape | backbone | bound | latency speedup (batch 1) | measured / bound | "
        "throughput speedup | paper (GPU latency) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["cost"]:
        fmt = lambda v: "" if v is None else f"{v:.3g}"  # noqa: E731
        if r.get("error"):
            lines.append(f"| {r['shape']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['shape']} | {r['backbone']} | {fmt(r['flop_ratio_bound'])} | "
                     f"{fmt(r['latency_inference_speedup'])} | "
                     f"{fmt(r['latency_measured_over_bound'])} | "
                     f"{fmt(r['throughput_inference_speedup'])} at batch "
                     f"{r['throughput_batch']} | {PAPER_LATENCY.get(r['backbone'], '')} "
                     "|")  # fmt: skip
    return "\n".join(lines) + "\n"


def gpu_check(root: Path, dry_run: bool = False) -> dict:
    """Run the check into `root/<device>/` (`--out results/gpu` is the committed place);
    returns the summary (`passed`: every part passed)."""
    missing = missing_packages()
    if missing:
        raise ValueError(
            f"the GPU check needs {', '.join(missing)}: pip install "
            f"{' '.join(pip_name(m) for m in missing)} (offline: the wheels docs/gpu.md "
            "gathers with pip download), then rerun"
        )
    if not dry_run and not torch.cuda.is_available():
        raise ValueError("no CUDA device is visible: run on a GPU machine, or pass --dry-run "
                           "to check the plumbing on this CPU")  # fmt: skip
    start = time.perf_counter()
    out = root / device_slug(dry_run)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if dry_run else "cuda")
    tests = device_tests(out, device.type, quick=dry_run)

    def write(cost: list[dict], done: bool) -> dict:
        summary = dict(
            suite="gpu-check", device=device_slug(dry_run), dry_run=dry_run,
            code=code_revision(), torch=torch.__version__, cuda=torch.version.cuda,
            device_tests=tests, cost=cost, cost_done=done,
            seconds=round(time.perf_counter() - start, 1),
            passed=bool(tests["passed"]) and done and not any(r.get("error") for r in cost),
            folder=str(out),
        )  # fmt: skip
        write_json(out / "summary.json", summary)
        write_text(out / "report.md", report_md(summary))
        return summary

    write([], done=False)  # the device tests' results are kept if the cost step dies
    return write(cost_shapes(out, device, DRY_SHAPES if dry_run else GPU_SHAPES), done=True)
