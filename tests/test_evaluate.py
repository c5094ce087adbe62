import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_metrics_evaluator import TINY

import harness.pipeline.evaluate_folder as evaluate
import harness.pipeline.train as train
from harness.common.config import Config
from harness.data import MovingDigits, collate
from harness.metrics import MetricOptions


def _samples_folder(path: Path, n: int, seed: int = 7) -> Path:
    """A folder laid out like harness.sample's output, holding real moving digits."""
    data = MovingDigits(num_videos=n, frames=8, seed=seed)
    batch = collate([data[i] for i in range(n)])
    path.mkdir(parents=True)
    torch.save(batch["video"], path / "videos.pt")
    lines = "".join(f"{i:03d}\t{c}\n" for i, c in enumerate(batch["caption"]))
    (path / "captions.txt").write_text(lines)
    return path


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    # same cache folder as test_metrics_evaluator: the tiny evaluator trains once per session
    return MetricOptions(
        cache=str(tmp_path_factory.getbasetemp() / "evaluator-cache"), evaluator=TINY
    )


@pytest.mark.slow
def test_samples_folder_appends_one_row_per_evaluation(tmp_path, options):
    samples = _samples_folder(tmp_path / "samples", 160)
    out = tmp_path / "results" / "evaluations.csv"
    row = evaluate.main(samples=samples, out=out, options=options, progress=False)
    assert row["n"] == row["n_real"] == 160 and row["dataset"] == "moving-digits"
    assert row["evaluator"] == TINY.key() and row["git"]
    assert 0 <= row["PA-md"] <= row["PA-md-digit"] <= 1 and row["FVD-md"] > 0
    evaluate.main(
        samples=samples, out=out, options=options, real=200, metrics=["flicker"], progress=False
    )
    table = pd.read_csv(out)
    assert len(table) == 2 and list(table["n_real"]) == [160, 200]
    assert pd.isna(table["FVD-md"][1])  # the second evaluation did not compute it
    assert not list(out.parent.glob(".*.tmp"))


def test_run_folder_is_sampled_then_evaluated(tmp_path, options):
    cfg = Config().override(
        [
            "size=tiny",
            "frames=8",
            "resolution=32",
            "batch_size=2",
            "num_videos=16",
            "warmup_steps=1",
            "sample_steps=3",
            "steps=1",
            f"out_dir={tmp_path}",
            "name=tiny",
        ]
    )
    run = train.main(cfg)
    out = tmp_path / "eval.csv"
    row = evaluate.main(
        run=run,
        num_samples=3,
        out=out,
        options=options,
        metrics=["pa-md", "flicker"],
        progress=False,
    )
    assert row["run"] == str(run) and row["samples"] == str(run / "eval-samples")
    assert (
        row["n"] == row["n_real"] == 3
        and torch.load(run / "eval-samples" / "videos.pt").shape[0] == 3
    )
    assert len(pd.read_csv(out)) == 1


def test_clear_errors(tmp_path, options):
    with pytest.raises(FileNotFoundError, match="samples folder"):
        evaluate.main(samples=tmp_path / "missing", out=None, options=options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="videos.pt"):
        evaluate.main(samples=tmp_path / "empty", out=None, options=options)
    with pytest.raises(FileNotFoundError, match="not a trained run folder"):
        evaluate.main(run=tmp_path / "empty", out=None, options=options)
    with pytest.raises(ValueError, match="exactly one"):
        evaluate.main(out=None)
    samples = _samples_folder(tmp_path / "s", 4)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate.main(samples=samples, out=None, metrics=["fid"], options=options)


def test_cli(tmp_path, capsys):
    samples = _samples_folder(tmp_path / "samples", 6)
    out = tmp_path / "e.csv"
    row = evaluate.cli(["--samples", str(samples), "--out", str(out), "--metrics", "flicker"])
    assert "flicker" in capsys.readouterr().out and len(pd.read_csv(out)) == 1
    assert row["flicker"] == pytest.approx(pd.read_csv(out)["flicker"][0])
    with pytest.raises(SystemExit) as exit_:
        evaluate.cli(["--samples", str(tmp_path / "nope")])
    assert exit_.value.code == 2 and "samples folder" in capsys.readouterr().err


def test_default_outputs_are_git_ignored():
    """Ad-hoc and first-run outputs land where git ignores them; committed results stay."""
    from harness.common.config import Config
    from harness.studies.suites import cli as run
    from harness.studies.sweep import run as sweep

    paths = [
        evaluate.DEFAULT_OUT,
        run.default_out("paper", "cpu") / "evals.csv",
        run.default_out("smoke", "cpu") / "runs" / "x" / "checkpoint.pt",
        sweep.RUNS / "stages-K3-cpu-train" / "study.db",
        Config().run_dir / "checkpoint.pt",
        Path("results/paper.superseded-20260101T000000/evals.csv"),
    ]
    root = Path(__file__).resolve().parent.parent
    for path in paths:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=root)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "results/paper/evals.csv"], cwd=root)
    assert kept.returncode == 1  # the committed reference is not ignored
