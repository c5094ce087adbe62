"""Every command line ends bad input in one line and exit status 2; --debug shows the
traceback. In-process for each CLI, plus one real subprocess for what a user sees."""

import subprocess
import sys
from pathlib import Path

import pytest

import harness.pipeline.evaluate_folder as evaluate
import harness.pipeline.sample as sample
import harness.pipeline.train as train
import harness.studies.suites.cli as run
import harness.studies.sweep.cli as sweep

ROOT = Path(__file__).resolve().parent.parent


def _fails_cleanly(capsys, call, *expected):
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ": error: " in err
    for text in expected:
        assert text in err, (text, err)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["jump_points=0.2,0.7"], "jump points must be strictly descending"),
        (["frames=10"], "not divisible by 2^(K-1)=4"),
        (["lr=nan"], "lr must be a finite number >= 0, got nan"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["--config", "missing.toml"], "missing.toml not found"),
    ],
)
def test_train(capsys, tmp_path, overrides, expected):
    _fails_cleanly(capsys, lambda: train.cli([*overrides, f"out_dir={tmp_path}"]), expected)


def test_sample(capsys, tmp_path):
    _fails_cleanly(capsys, lambda: sample.cli(["--run", str(tmp_path)]), "no checkpoint at")
    _fails_cleanly(capsys, lambda: sample.cli(["--run", str(tmp_path), "steps"]), "key=value")


def test_evaluate(capsys, tmp_path):
    _fails_cleanly(
        capsys, lambda: evaluate.cli(["--samples", str(tmp_path / "nope")]), "samples folder"
    )


def test_run(capsys, tmp_path):
    (tmp_path / "evals.csv").write_text("run\nold\n")  # results of unknown origin
    call = lambda: run.main(["--suite", "smoke", "--out", str(tmp_path)])  # noqa: E731
    _fails_cleanly(capsys, call, "no recorded identity", "--out", "--fresh")


def test_sweep(capsys):
    _fails_cleanly(capsys, lambda: sweep.main(["--trials", "0"]), "--trials must be >= 1")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="strictly descending"):
        train.cli(["jump_points=0.2,0.7", "--debug", f"out_dir={tmp_path}"])


@pytest.mark.slow
def test_a_real_command_line(tmp_path):
    cmd = [sys.executable, "-m", "harness.train", "jump_points=0.2,0.7", f"out_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("python -m harness.train: error: jump points")
    debug = subprocess.run([*cmd, "--debug"], cwd=ROOT, capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
