"""`python -m harness.run --suite gpu-check`: its CPU mode (what CI runs) and its one-line
refusals."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import harness.studies.checks.gpu as gpu
from harness.studies.suites.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_dry_run_runs_every_part_on_this_cpu(tmp_path):
    assert main(["--suite", "gpu-check", "--dry-run", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "cpu-dry-run"
    summary = json.loads((folder / "summary.json").read_text())
    tests = summary["device_tests"]
    assert summary["passed"] and summary["dry_run"] and tests["device"] == "cpu"
    assert tests["tests"] >= 5 and tests["failures"] == tests["errors"] == 0
    assert {r["backbone"] for r in summary["cost"]} == {"dit", "unet"}
    assert all(r["flop_ratio_bound"] > 1 and r["latency_inference_speedup"] > 0
               for r in summary["cost"])  # fmt: skip
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) <= 8, files  # what comes back from a lent machine
    assert "Device tests (`pytest -m cuda` on cpu)" in (folder / "report.md").read_text()


def test_a_missing_package_or_gpu_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu, "missing_packages", lambda names=gpu.NEEDED: ["pytest", "sklearn"])
    with pytest.raises(SystemExit) as stop:
        main(["--suite", "gpu-check", "--dry-run", "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs pytest, sklearn" in err[0] and "pip download" in err[0]
    assert "pip install pytest scikit-learn " in err[0]  # pip's names, not the import names
    monkeypatch.setattr(gpu, "missing_packages", lambda names=gpu.NEEDED: [])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stop:
            main(["--suite", "gpu-check", "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA device is visible" in err[0] and "--dry-run" in err[0]
    with pytest.raises(SystemExit):
        main(["--suite", "engine", "--dry-run", "--out", str(tmp_path)])
    assert "--dry-run applies to the suites ['gpu-check'] only" in capsys.readouterr().err


def test_a_package_the_harness_imports_is_named_when_missing(tmp_path):
    """A bare CUDA image without fvcore: one line, exit 2, before any suite starts."""
    code = ("import sys; sys.modules['fvcore'] = None; sys.argv = ['harness.run', '--suite', "
            f"'engine', '--out', {str(tmp_path)!r}]; from harness.run import main; "
            "sys.exit(main())")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'fvcore' is missing" in lines[0] and "docs/gpu.md" in lines[0]
    assert not list(tmp_path.iterdir())


def test_the_device_tests_collect_only_the_files_with_cuda_marked_tests():
    files = gpu.cuda_test_files()
    assert {"tests/test_cuda.py", "tests/test_train.py", "tests/test_pretrained.py"} <= set(files)
    assert "tests/test_sweep.py" not in files  # imports optuna, holds no cuda test
    assert all("pytest.mark.cuda" in (ROOT / f).read_text() for f in files)


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="{failures}" skipped="{skipped}"
 tests="{tests}"><testcase classname="tests.test_cuda" name="test_bf16"><properties>
<property name="sdpa" value="flash"/></properties>{body}</testcase></testsuite></testsuites>"""


@pytest.mark.parametrize(
    "tests, skipped, failures, rc, every_test, passed",
    [
        (3, 0, 0, 0, True, True),
        (3, 1, 0, 0, False, True),  # the dry run may skip one
        (3, 1, 0, 0, True, False),  # the GPU run may not: that path went unchecked
        (2, 2, 0, 0, False, False),  # all skipped: nothing ran
        (3, 0, 1, 1, False, False),
    ],
)
def test_skipped_device_tests_do_not_count_as_run(tmp_path, tests, skipped, failures, rc,
                                                  every_test, passed):  # fmt: skip
    body = "<failure message='boom'/>" if failures else ""
    junit = tmp_path / "cuda-tests.xml"
    junit.write_text(JUNIT.format(tests=tests, skipped=skipped, failures=failures, body=body))
    parsed = gpu.read_junit(junit)
    assert parsed["tests"] == tests and parsed["skipped"] == skipped
    assert parsed["failed"] == (["test_bf16"] if failures else [])
    assert parsed["notes"] == {"sdpa": "flash"}
    assert gpu.tests_passed(parsed, rc, every_test=every_test) is passed


@pytest.mark.parametrize(
    "module, pip",
    [("sklearn.linear_model", "scikit-learn"), ("PIL", "pillow"), ("yaml", "pyyaml"), ("av", "av")],
)
def test_a_missing_package_is_named_with_the_pip_name_that_installs_it(capsys, module, pip):
    from harness.common.cli import missing_package

    err = ModuleNotFoundError(f"No module named {module!r}", name=module)
    assert missing_package("python -m harness.run", err) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    top = module.split(".")[0]
    assert len(lines) == 1 and f"the package {top!r} is missing: pip install {pip} (" in lines[0]


def test_a_failing_cost_shape_is_reported_and_the_device_results_are_kept(tmp_path, monkeypatch):
    tests = dict(tests=3, failures=0, errors=0, skipped=0, failed=[], notes={}, seconds=1.0,
                 device="cpu", passed=True, output="")  # fmt: skip
    monkeypatch.setattr(gpu, "device_tests", lambda *args, **kwargs: tests)
    shapes = (gpu.Shape("fits", "tiny", 8, 2), gpu.Shape("too-big", "tiny", 8, 64))

    def cost_tables(device, size, frames, throughput_batch):
        if throughput_batch == 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        row = dict(backbone="dit", form="flow", flop_ratio_bound=1.8,
                   latency_inference_speedup=1.5, throughput_inference_speedup=1.6)  # fmt: skip
        return None, pd.DataFrame([row])

    monkeypatch.setattr(gpu, "cost_tables", cost_tables)
    monkeypatch.setattr(gpu, "DRY_SHAPES", shapes)
    summary = gpu.gpu_check(tmp_path, dry_run=True)
    fits, big = summary["cost"]
    assert fits["shape"] == "fits" and fits["latency_inference_speedup"] == 1.5
    assert big["shape"] == "too-big" and big["error"].startswith("OutOfMemoryError: CUDA out")
    assert summary["cost_done"] and not summary["passed"]  # the tests passed, the cost did not
    report = (tmp_path / "cpu-dry-run" / "report.md").read_text()
    assert "| too-big | failed: OutOfMemoryError" in report


def test_the_device_results_are_written_before_the_cost_step(tmp_path, monkeypatch):
    tests = dict(tests=3, failures=0, errors=0, skipped=0, failed=[], notes={}, seconds=1.0,
                 device="cpu", passed=True, output="")  # fmt: skip
    monkeypatch.setattr(gpu, "device_tests", lambda *args, **kwargs: tests)

    def killed(*args, **kwargs):  # the process dies here (a kill, a driver fault)
        raise KeyboardInterrupt

    monkeypatch.setattr(gpu, "cost_shapes", killed)
    with pytest.raises(KeyboardInterrupt):
        gpu.gpu_check(tmp_path, dry_run=True)
    summary = json.loads((tmp_path / "cpu-dry-run" / "summary.json").read_text())
    assert summary["device_tests"]["tests"] == 3 and not summary["cost_done"]
    assert not summary["passed"]
