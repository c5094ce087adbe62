"""Preparing a video folder: sharded arrays equal to the decoded clips, corrupt files listed,
resumable without loss or duplication, found by training, no decoding at construction."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import write_video_folder

import harness.data.prepared as prepared
import harness.data.video_folder as video_folder
from harness.common.config import Config
from harness.data import VideoFolder
from harness.data.prepared import PreparedVideos, Source, prepare
from harness.pipeline import prepare as prepare_cmd
from harness.pipeline.build import build_data, prepared_base, video_source

ROOT = Path(__file__).resolve().parent.parent
SHAPE = dict(frames=4, size=16, channels=3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_video_folder(tmp_path_factory.mktemp("clips"), good=5, frames=6)


def test_shards_hold_the_decoded_clips_and_list_the_corrupt_one(clips, tmp_path):
    source = Source(str(clips), **SHAPE)
    index = prepare(source, tmp_path, workers=2, shard_size=2)
    assert [s["count"] for s in index["shards"]] == [2, 2, 1]  # rows 5 and 6: 1 good, 1 broken
    assert list(index["skipped"]) == ["broken.mp4"] and index["count"] == 5
    data = PreparedVideos(tmp_path)
    with pytest.warns(UserWarning, match="broken.mp4"):
        decoded = VideoFolder(clips, **SHAPE)
    assert len(data) == len(decoded) == 5 and data.skipped.keys() == decoded.skipped.keys()
    for i in range(5):
        got, want = data[i], decoded[i]
        assert got["caption"] == want["caption"]
        torch.testing.assert_close(got["video"], want["video"], atol=1e-3, rtol=0)  # float16


def test_a_rerun_resumes_without_loss_or_duplication(clips, tmp_path):
    source = Source(str(clips), **SHAPE)
    prepare(source, tmp_path, shard_size=2)
    kept = (tmp_path / "shard_00000.npy").stat().st_mtime_ns
    # a kill after shard 0 and before shard 1's record and the index
    (tmp_path / "shard_00001.json").unlink()
    (tmp_path / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete prepared folder"):
        PreparedVideos(tmp_path)
    calls = []
    real = prepared.prepare_shard

    def counted(source, folder, k, rows, first):
        calls.append(k)
        return real(source, folder, k, rows, first)

    prepared.prepare_shard, saved = counted, prepared.prepare_shard
    try:
        prepare(source, tmp_path, shard_size=2)
    finally:
        prepared.prepare_shard = saved
    assert calls == [1]  # only the missing shard is decoded again
    assert (tmp_path / "shard_00000.npy").stat().st_mtime_ns == kept
    data = PreparedVideos(tmp_path)
    assert [data[i]["caption"] for i in range(len(data))] == [
        f"a square moving right {k}" for k in range(5)
    ]
    with pytest.raises(ValueError, match="made with other settings"):
        prepare(source, tmp_path, shard_size=3)


def test_training_finds_the_prepared_folder_and_constructs_without_decoding(
    clips, tmp_path, monkeypatch
):
    cfg = Config(dataset="video-folder", data_root=str(clips), out_dir=str(tmp_path),
                 channels=3, frames=4, resolution=16)  # fmt: skip
    folder = prepare_cmd.main(cfg, workers=1, shard_size=4, progress=False)
    assert folder.parent == prepared_base(cfg) == tmp_path / "prepared"
    assert folder.name == f"videos-{video_source(cfg).key()}"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a clip")

    monkeypatch.setattr(video_folder, "decode_clip", no_decoding)
    monkeypatch.setattr(prepared, "decode_clip", no_decoding)
    data = build_data(cfg)
    assert isinstance(data, PreparedVideos) and len(data) == 5
    assert data[4]["video"].shape == (3, 4, 16, 16)
    # another frame count is another source: not prepared, so it is decoded as before
    with pytest.warns(UserWarning, match="decoded a clip"):
        with pytest.raises(ValueError, match="no usable clip"):
            build_data(cfg.replace(frames=2))


def test_prepared_data_survives_dataloader_workers(clips, tmp_path):
    prepare(Source(str(clips), **SHAPE), tmp_path, shard_size=2)
    data = PreparedVideos(tmp_path)
    data[0]  # opens a memory map in this process; workers open their own
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    videos = torch.cat([batch["video"] for batch in loader])
    assert videos.shape == (5, 3, 4, 16, 16)
    torch.testing.assert_close(videos[3], data[3]["video"])


def test_the_command_line_prepares_a_folder_with_a_corrupt_clip(clips, tmp_path):
    cmd = [sys.executable, "-m", "harness.prepare", "--config", "baselines/dit-tpdiff.toml",
           "dataset=video-folder", f"data_root={clips}", "channels=3", "size=tiny",
           f"out_dir={tmp_path}", "frames=4", "--workers", "2"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "skipped broken.mp4" in done.stdout
    (index,) = (tmp_path / "prepared").glob("videos-*/index.json")
    assert "broken.mp4" in json.loads(index.read_text())["skipped"]
    bad = subprocess.run([*cmd[:3], f"data_root={tmp_path / 'none'}", "dataset=video-folder"],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_worker_processes_and_a_resume_train_bit_identically(clips, tmp_path):
    from harness.pipeline import train

    def run(name, workers, stop_at=None):
        cfg = Config().override([
            "size=tiny", "dataset=video-folder", f"data_root={clips}", "channels=3",
            "frames=4", "resolution=16", "batch_size=4", "steps=4", "ckpt_every=2",
            "cond_dropout=0.3", f"data_workers={workers}", f"out_dir={tmp_path}", f"name={name}",
        ])  # fmt: skip
        prepare_cmd.main(cfg, progress=False)
        return train.main(cfg, stop_at=stop_at)

    def weights(run_dir):
        return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]

    straight = weights(run("straight", 0))
    run("workers", 2, stop_at=2)
    resumed = weights(run("workers", 2))  # a resume may change data_workers: execution only
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
