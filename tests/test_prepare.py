"""Preparing a video folder: sharded arrays equal to the decoded clips, corrupt files listed,
resumable without loss or duplication, found by training, no decoding at construction; a
changed, added, removed or fixed clip redoes its shards only (at prepare and at a training
start), and one job prepares a folder at a time."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tiny_models import write_video_folder
from video_files import replace_keeping_stat, stamps, write_clip, write_folder, write_rows

import harness.data.prepared as prepared
import harness.data.video_folder as video_folder
from harness.common.config import Config
from harness.common.lock import holder
from harness.data import VideoFolder
from harness.data.fingerprint import content_hash
from harness.data.prepared import PreparedVideos, Source, prepare, prepared_folder
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

    def counted(source, folder, k, *args):
        calls.append(k)
        return real(source, folder, k, *args)

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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- what made it
SMALL = dict(frames=4, size=16, channels=3)


def decoded(file: Path) -> torch.Tensor:
    return video_folder.decode_clip(file, 4, 16, 1, 3)


def test_a_clip_changed_with_its_size_and_mtime_kept_is_prepared_again(tmp_path, capsys):
    root = write_folder(tmp_path / "clips", 5)
    source, out = Source(str(root), **SMALL), tmp_path / "prepared"
    prepare(source, out, shard_size=2)
    before, old = stamps(out, "shard_*.npy"), PreparedVideos(out)[2]["video"]
    replace_keeping_stat(root / "clip2.y4m", 7)  # rows 2-3 are shard 1
    index = prepare(source, out, shard_size=2)
    after = stamps(out, "shard_*.npy")
    assert after["shard_00000.npy"] == before["shard_00000.npy"]  # not rewritten
    assert after["shard_00002.npy"] == before["shard_00002.npy"]
    assert after["shard_00001.npy"] != before["shard_00001.npy"]
    assert "preparing again shard_00001 (clip2.y4m changed)" in capsys.readouterr().out
    data = PreparedVideos(out)
    torch.testing.assert_close(data[2]["video"], decoded(root / "clip2.y4m"), atol=1e-3, rtol=0)
    assert not torch.allclose(data[2]["video"], old, atol=0.1)
    new_hash = content_hash(root / "clip2.y4m")
    assert data.identities[2] == index["files"]["clip2.y4m"]["hash"] == new_hash
    assert index["files"]["clip2.y4m"]["mtime_ns"] == (root / "clip2.y4m").stat().st_mtime_ns
    # nothing changed: nothing rewritten, the index included
    again = stamps(out, "*.*")
    prepare(source, out, shard_size=2)
    assert stamps(out, "*.*") == again


def test_added_and_removed_clips_redo_only_the_affected_shards(tmp_path, capsys):
    root = write_folder(tmp_path / "clips", 5)
    source, out = Source(str(root), **SMALL), tmp_path / "prepared"
    prepare(source, out, shard_size=2)
    names = [f"clip{k}.y4m" for k in range(6)]

    def redone(change) -> set[str]:
        before = stamps(out, "shard_*.npy")
        change()
        prepare(source, out, shard_size=2)
        after = stamps(out, "shard_*.npy")
        return {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}

    def add():  # a sixth row: the last shard's rows change
        write_clip(root / "clip5.y4m", 5)
        write_rows(root, [(n, f"clip {k}") for k, n in enumerate(names)])

    assert redone(add) == {"shard_00002.npy"}
    assert PreparedVideos(out).paths == names
    assert "shard_00002 (its CSV rows changed)" in capsys.readouterr().out
    opened = PreparedVideos(out)  # before: shard 0 holds 2 clips
    assert redone(lambda: (root / "clip1.y4m").unlink()) == {"shard_00000.npy"}
    with pytest.raises(RuntimeError, match="written again meanwhile"):
        opened[0]  # never read shifted
    data = PreparedVideos(out)
    assert data.paths == [n for n in names if n != "clip1.y4m"]
    assert "does not exist" in data.skipped["clip1.y4m"]
    assert "shard_00000 (clip1.y4m disappeared)" in capsys.readouterr().out
    # the first two rows leave the CSV: every later row moves, so every shard is redone
    gone = redone(lambda: write_rows(root, [(n, f"clip {k}") for k, n in enumerate(names)][2:]))
    assert gone == {"shard_00000.npy", "shard_00001.npy", "shard_00002.npy"}
    assert sorted(p.name for p in out.glob("shard_*")) == [
        "shard_00000.json", "shard_00000.npy", "shard_00001.json", "shard_00001.npy"
    ]  # fmt: skip
    data = PreparedVideos(out)
    assert data.paths == names[2:] and not data.skipped
    for i, name in enumerate(names[2:]):
        torch.testing.assert_close(data[i]["video"], decoded(root / name), atol=1e-3, rtol=0)


def test_a_skipped_clip_that_is_fixed_or_appears_is_picked_up(tmp_path):
    root = write_folder(tmp_path / "clips", 3)
    (root / "clip1.y4m").write_bytes(b"\x00\x01not a video" * 50)
    write_rows(root, [("clip0.y4m", "a"), ("clip1.y4m", "b"), ("clip2.y4m", "c"),
                      ("late.y4m", "d")])  # fmt: skip
    source, out = Source(str(root), **SMALL), tmp_path / "prepared"
    index = prepare(source, out, shard_size=2)
    assert sorted(index["skipped"]) == ["clip1.y4m", "late.y4m"] and index["count"] == 2
    assert index["files"]["late.y4m"] is None and index["files"]["clip1.y4m"]["size"] == 650
    write_clip(root / "clip1.y4m", 1)  # fixed
    write_clip(root / "late.y4m", 3)  # added
    index = prepare(source, out, shard_size=2)
    assert index["skipped"] == {} and index["count"] == 4
    data = PreparedVideos(out)
    assert data.captions == ["a", "b", "c", "d"]
    for i, name in ((1, "clip1.y4m"), (3, "late.y4m")):
        torch.testing.assert_close(data[i]["video"], decoded(root / name), atol=1e-3, rtol=0)


def test_a_training_start_sees_a_changed_clip_without_preparing_by_hand(tmp_path, capsys):
    root = write_folder(tmp_path / "clips", 5)
    cfg = Config(dataset="video-folder", data_root=str(root), out_dir=str(tmp_path),
                 channels=3, frames=4, resolution=16)  # fmt: skip
    folder = prepare_cmd.main(cfg, workers=1, shard_size=2, progress=False)
    kept = stamps(folder, "shard_0000[02].npy")
    replace_keeping_stat(root / "clip3.y4m", 9)
    capsys.readouterr()
    data = build_data(cfg)
    assert isinstance(data, PreparedVideos) and len(data) == 5
    torch.testing.assert_close(data[3]["video"], decoded(root / "clip3.y4m"), atol=1e-3, rtol=0)
    assert stamps(folder, "shard_0000[02].npy") == kept
    assert "preparing again shard_00001 (clip3.y4m changed)" in capsys.readouterr().out
    (folder / "index.json").unlink()  # a killed preparation: training finishes it
    assert len(build_data(cfg)) == 5 and (folder / "index.json").is_file()


BLOCKED_PREPARE = """
import sys, time
from pathlib import Path
import harness.data.prepared as prepared
from harness.pipeline.prepare import cli

real, go = prepared.decode_clip, Path(sys.argv[1])

def blocked(*args):  # the first clip waits for the test's go-ahead
    while not go.exists():
        time.sleep(0.05)
    return real(*args)

prepared.decode_clip = blocked
cli(sys.argv[2:])
"""


@pytest.mark.slow
def test_a_second_prepare_of_the_same_folder_is_refused_and_a_training_start_waits(
    tmp_path, capsys
):
    root = write_folder(tmp_path / "clips", 3)
    args = ["--config", "baselines/dit-tpdiff.toml", "dataset=video-folder", f"data_root={root}",
            "channels=3", "size=tiny", f"out_dir={tmp_path}", "frames=4", "resolution=16",
            "--workers", "1"]  # fmt: skip
    cfg = Config.from_file(ROOT / "baselines/dit-tpdiff.toml").override(args[2:-2])
    folder = prepared_folder(video_source(cfg), prepared_base(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    go = tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_PREPARE, str(go), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while holder(folder).get("pid") != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "harness.prepare", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True)  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert f"in use by pid {first.pid} on host" in second.stderr
        threading.Timer(1.0, go.touch).start()  # the first finishes a second from now
        data = build_data(cfg)  # the folder is incomplete: training waits for the holder
        assert len(data) == 3 and f"waiting for {folder}" in capsys.readouterr().err
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert "3 clips in 1 shards" in out
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
