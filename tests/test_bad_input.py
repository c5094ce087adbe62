"""Bad input a careless user gives ends in one line naming the file and the fix, exit 2, and
touches nothing: torn checkpoints, junk or non-finite samples, outputs that cannot be
written, empty or broken configs, run names that are not one folder. Result files get the
user's normal permissions."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import harness.pipeline.evaluate_folder as evaluate
import harness.pipeline.sample as sample
import harness.pipeline.train as train
from harness.common.config import Config
from harness.common.io import write_json, write_text
from harness.pipeline.provenance import checkpoint_info

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
TINY = ["size=tiny", "frames=8", "batch_size=2", "num_videos=16", "warmup_steps=1",
        "sample_steps=3", "num_samples=2"]  # fmt: skip


def _one_line(capsys, call, *expected) -> str:
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, (text, err)
    return err


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], env=ENV, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def torn_run(tmp_path_factory) -> Path:
    """A trained run whose checkpoint.pt was cut in half from outside."""
    out = tmp_path_factory.mktemp("torn")
    run = train.main(Config().override([*TINY, "steps=2", f"out_dir={out}", "name=torn"]))
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return run


def test_a_truncated_checkpoint_in_sampling_resuming_and_provenance(torn_run, capsys):
    before = {p.name: p.read_bytes() for p in torn_run.iterdir() if p.is_file()}
    _one_line(capsys, lambda: sample.cli(["--run", str(torn_run)]),
              "checkpoint.pt is not a readable checkpoint", "train the run again")  # fmt: skip
    args = [*TINY, "steps=4", f"out_dir={torn_run.parent}", "name=torn"]
    _one_line(capsys, lambda: train.cli(args), "checkpoint.pt is not a readable checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint_info(torn_run / "checkpoint.pt")
    after = {p.name: p.read_bytes() for p in torn_run.iterdir() if p.is_file()}
    assert after == before  # the resume touched nothing
    done = _command("harness.sample", "--run", str(torn_run))  # what a user sees
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _samples(folder: Path, videos) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(videos, bytes):
        (folder / "videos.pt").write_bytes(videos)
    else:
        torch.save(videos, folder / "videos.pt")
    (folder / "captions.txt").write_text("".join(f"{i}\tdigit\n" for i in range(4)))
    return folder


@pytest.mark.parametrize(
    "videos,expected",
    [
        (b"not a torch file at all", "videos.pt is not a readable samples file"),
        ({"videos": 1}, "holds dict, not videos"),
        (torch.full((4, 1, 8, 32, 32), float("nan")), "4 of 4 videos hold NaN or Inf"),
        (torch.zeros(4, 1, 8, 32, 32).index_fill_(0, torch.tensor([2]), float("inf")),
         "1 of 4 videos hold NaN or Inf"),
    ],
)  # fmt: skip
def test_junk_or_non_finite_samples_are_not_scored(tmp_path, capsys, videos, expected):
    folder = _samples(tmp_path / "samples", videos)
    out = tmp_path / "evals.csv"
    args = ["--samples", str(folder), "--out", str(out)]
    _one_line(capsys, lambda: evaluate.cli(args), expected)
    assert not out.exists()  # no row appended, not even an empty one


def test_evaluate_out_that_cannot_be_a_csv(tmp_path, capsys):
    folder = _samples(tmp_path / "samples", torch.zeros(4, 1, 8, 32, 32))
    (tmp_path / "afile").write_text("x")
    for out, expected in [(tmp_path, "is a folder; give a file path"),
                          (tmp_path / "afile" / "evals.csv", "afile is a file, not a folder")]:
        args = ["--samples", str(folder), "--out", str(out)]  # fmt: skip
        _one_line(capsys, lambda: evaluate.cli(args), f"--out {out}", expected)  # noqa: B023
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "samples"]


def test_an_unwritable_output_names_the_file_not_a_temporary_one(tmp_path, monkeypatch):
    def denied(*args, **kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".report.md.x.tmp"))

    monkeypatch.setattr("harness.common.io.tempfile.mkstemp", denied)
    with pytest.raises(ValueError) as err:
        write_text(tmp_path / "report.md", "# hi\n")
    assert str(err.value).startswith(f"cannot write {tmp_path / 'report.md'}: Permission denied")


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "sets no key, so it would train the defaults"),
        (b"# only a comment\n", "sets no key"),
        (b"steps = [1,\n", "is not valid TOML"),
        (b"name = \"caf\xe9\"\n", "is not UTF-8 text"),
        (b"stepz = 3\n", "unknown config key 'stepz'"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path, capsys, content, expected):
    path = tmp_path / "run.toml"
    path.write_bytes(content)
    args = ["--config", str(path), f"out_dir={tmp_path}"]
    _one_line(capsys, lambda: train.cli(args), f"config file {path}", expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "a/b", "/abs"])
def test_a_run_name_is_one_folder_name(tmp_path, capsys, name):
    args = [*TINY, f"out_dir={tmp_path / 'runs'}", f"name={name}"]
    _one_line(capsys, lambda: train.cli(args), "name must be a single folder name")
    assert list(tmp_path.iterdir()) == []


def test_result_files_get_the_users_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        for path in (write_text(tmp_path / "report.md", "x\n"),
                     write_json(tmp_path / "summary.json", {})):  # fmt: skip
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        os.umask(0o002)
        path = write_text(tmp_path / "shared.md", "x\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_sampling_writes_no_non_finite_videos_and_a_readable_folder(tmp_path, monkeypatch):
    run = train.main(Config().override([*TINY, "steps=2", f"out_dir={tmp_path}", "name=ok"]))
    old = os.umask(0o022)
    try:
        out = sample.main(run)
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert stat.S_IMODE((out / "sampling.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    real = sample.generate

    def diverged(*args, **kw):
        gen = real(*args, **kw)
        gen.videos[1] = float("nan")
        return gen

    monkeypatch.setattr(sample, "generate", diverged)
    with pytest.raises(FloatingPointError, match="1 of 2 videos sampled from .* hold NaN"):
        sample.main(run, out=tmp_path / "nan-samples")
    assert not (tmp_path / "nan-samples").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        sample.main(run, out=tmp_path / "afile" / "samples")


def test_a_captions_csv_that_is_not_utf8_is_named(tmp_path, capsys):
    import harness.pipeline.prepare as prepare

    root = tmp_path / "videos"
    root.mkdir()
    (root / "captions.csv").write_bytes(b"path,caption\na.mp4,un caf\xe9\n")
    args = ["dataset=video-folder", f"data_root={root}", f"out_dir={tmp_path / 'out'}"]
    _one_line(capsys, lambda: prepare.cli(args), f"{root / 'captions.csv'} is not UTF-8 text",
              "save it as UTF-8")  # fmt: skip
