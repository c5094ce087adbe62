"""Datasets: moving digits (known motion, determinism), video folders (skips, stride, a cache
keyed by content) and file fingerprints (whole-file hash, the stat fast path)."""

from __future__ import annotations

import csv
import hashlib
import os
import time
import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image
from video_files import replace_keeping_stat, write_clip, write_folder, write_rows

import harness.data.fingerprint as fingerprint_mod
import harness.data.video_folder as video_folder
from harness.data import DATASETS, DIRECTIONS, MovingDigits, build_dataset, collate
from harness.data.fingerprint import content_hash, fingerprint, same_content
from harness.data.video_folder import folder_fingerprint

# ----------------------------------------------------------------------------- moving digits


def test_registry_names():
    assert set(DATASETS) == {"moving-digits", "video-folder"}


@pytest.mark.parametrize("channels", [1, 3])
def test_moving_digits_shape_and_range(channels):
    ds = build_dataset("moving-digits", num_videos=8, frames=6, size=24, channels=channels)
    assert len(ds) == 8 and (ds.channels, ds.frames, ds.size) == (channels, 6, 24)
    for item in ds:
        video = item["video"]
        assert video.dtype == torch.float32 and video.shape == (channels, 6, 24, 24)
        assert video.min() == -1 and 0 < video.max() <= 1  # black canvas, a visible digit
        if channels == 3:
            assert torch.equal(video[0], video[1]) and torch.equal(video[0], video[2])


def test_moving_digits_deterministic_per_seed_and_index():
    a, b = MovingDigits(num_videos=16, seed=3), MovingDigits(num_videos=16, seed=3)
    other = MovingDigits(num_videos=16, seed=4)
    for i in (0, 5, 15):
        assert torch.equal(a[i]["video"], b[i]["video"]) and a[i]["caption"] == b[i]["caption"]
        assert torch.equal(a[i]["video"], a[i]["video"])
    assert torch.equal(a[-1]["video"], a[15]["video"])
    same = sum(torch.equal(a[i]["video"], other[i]["video"]) for i in range(16))
    assert same == 0
    assert not torch.equal(a[0]["video"], a[1]["video"])
    with pytest.raises(IndexError):
        a[16]


def test_moving_digits_caption_matches_labels():
    ds = MovingDigits(num_videos=64, frames=2, max_digits=3)
    counts = set()
    for item in ds:
        labels, parts = item["labels"], item["caption"].split(" and ")
        assert len(parts) == labels["num_digits"]
        words = parts[0].split()  # "a 3 moving up-left"
        assert words[0] == "a" and words[2] == "moving"
        assert int(words[1]) == labels["digit"]
        assert words[3] == DIRECTIONS[labels["direction"]]
        counts.add(labels["num_digits"])
    assert counts == {1, 2, 3}


def _centre_of_mass(frame: torch.Tensor) -> np.ndarray:
    """(H, W) in [-1, 1] -> (row, col) centre of mass of the ink."""
    ink = (frame + 1) / 2
    rows, cols = torch.meshgrid(
        torch.arange(ink.shape[0]), torch.arange(ink.shape[1]), indexing="ij"
    )
    return np.array([(ink * rows).sum() / ink.sum(), (ink * cols).sum() / ink.sum()])


def test_single_digit_moves_in_labelled_direction():
    # Large canvas and 3 frames: a wall bounce is rare, so nearly every digit moves as labelled.
    ds = MovingDigits(num_videos=200, frames=3, size=96, max_digits=1)
    steps = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
    agree = 0
    for item in ds:
        video = item["video"][0]  # (F, H, W)
        mass = ((video + 1) / 2).sum(dim=(1, 2))
        assert torch.allclose(mass, mass[0].expand(3), rtol=1e-5)  # one digit, never clipped
        shift = _centre_of_mass(video[-1]) - _centre_of_mass(video[0])
        name = DIRECTIONS[item["labels"]["direction"]]
        expected = np.add.reduce([steps[p] for p in name.split("-")])  # (dy, dx)
        assert np.all(np.abs(shift[expected == 0]) < 1e-4)  # still axis stays still
        moving = np.abs(shift[expected != 0])
        assert np.all(moving < 4.5)  # 1-2 px/frame over 2 steps (0 after a wall bounce)
        agree += bool(np.all(np.sign(shift[expected != 0]) == expected[expected != 0]))
    assert agree >= 0.9 * len(ds)


def test_moving_digits_validates_arguments():
    with pytest.raises(ValueError, match="frames"):
        MovingDigits(frames=0)
    with pytest.raises(ValueError, match="digit_size"):
        MovingDigits(size=8, digit_size=12)
    with pytest.raises(ValueError, match="channels"):
        MovingDigits(channels=2)


def test_collate_shapes():
    ds = MovingDigits(num_videos=4, frames=4, size=16, digit_size=8)
    batch = collate([ds[i] for i in range(4)])
    assert batch["video"].shape == (4, 1, 4, 16, 16)
    assert len(batch["caption"]) == 4 and all(isinstance(c, str) for c in batch["caption"])
    assert set(batch["labels"]) == {"digit", "direction", "num_digits"}
    assert batch["labels"]["digit"].dtype == torch.long
    assert batch["labels"]["digit"].tolist() == [ds[i]["labels"]["digit"] for i in range(4)]
    mixed = collate([ds[0], {**ds[1], "labels": {"digit": 1}}])
    assert set(mixed["labels"]) == {"digit"}


# ----------------------------------------------------------------------------- registry errors


def test_unknown_dataset_and_kwarg():
    with pytest.raises(ValueError, match="moving-digits"):
        build_dataset("kinetics")
    with pytest.raises(ValueError, match="accepted.*num_videos"):
        build_dataset("moving-digits", resolution=32)
    with pytest.raises(ValueError, match="root"):
        build_dataset("video-folder")


# ----------------------------------------------------------------------------- video folder

H, W = 40, 48


def _square_frames(n: int) -> list[np.ndarray]:
    """n RGB frames (H, W, 3): a white square moving 2 px/frame to the right."""
    frames = []
    for i in range(n):
        a = np.zeros((H, W, 3), np.uint8)
        a[12:26, 2 + 2 * i : 16 + 2 * i] = (255, 200, 100)
        frames.append(a)
    return frames


def _write_video(path, n: int) -> None:
    codec = "mpeg4" if "mpeg4" in av.codecs_available else "libx264"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for a in _square_frames(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    _write_video(root / "a.mp4", 20)
    _write_video(root / "b.mp4", 20)
    _write_video(root / "short.mp4", 5)
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    gif = [Image.fromarray(a) for a in _square_frames(12)]
    gif[0].save(root / "c.gif", save_all=True, append_images=gif[1:], duration=100, loop=0)
    rows = [
        ("a.mp4", "a square moving right"),
        ("b.mp4", "another square"),
        ("c.gif", "a gif square"),
        ("short.mp4", "too short"),
        ("broken.mp4", "corrupt"),
    ]
    with open(root / "captions.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "caption"), *rows])
    return root


def _build(root, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = build_dataset("video-folder", root=root, size=16, **kwargs)
    return ds, [str(w.message) for w in caught]


def test_video_folder_skips_bad_files_with_warnings(folder):
    ds, caught = _build(folder, frames=8)
    assert len(ds) == 3 and (ds.channels, ds.frames, ds.size) == (3, 8, 16)
    assert set(ds.skipped) == {"short.mp4", "broken.mp4"}
    assert "too short: 5 frames, need 8" in ds.skipped["short.mp4"]
    assert ds.skipped["broken.mp4"]  # a reason from the decoder
    for name in ("short.mp4", "broken.mp4"):
        assert any(name in message for message in caught)
    captions = set()
    for item in ds:
        video = item["video"]
        assert video.shape == (3, 8, 16, 16) and video.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1 and video.max() > 0.5
        assert item["labels"] == {}
        captions.add(item["caption"])
        # the square moves right: its ink's column centre grows from the first to the last frame
        first, last = (_centre_of_mass(video[0, f]) for f in (0, -1))
        assert last[1] > first[1] + 1
    assert captions == {"a square moving right", "another square", "a gif square"}
    assert collate([ds[0], ds[1]])["video"].shape == (2, 3, 8, 16, 16)


def test_video_folder_stride_and_gray(folder):
    ds1, _ = _build(folder, frames=8, stride=1)
    ds2, _ = _build(folder, frames=4, stride=2)
    ds2_long, _ = _build(folder, frames=8, stride=2)  # needs 15 frames: the 12-frame gif fails
    assert "c.gif" in ds2_long.skipped and "need 15" in ds2_long.skipped["c.gif"]
    assert len(ds2_long) == 2
    assert ds2_long[0]["video"].shape[1] == 8
    a1, a2 = ds1[0]["video"], ds2[0]["video"]  # a.mp4 both times
    assert torch.allclose(a2, a1[:, ::2], atol=1e-6)  # frames 0, 2, 4, 6
    assert not torch.allclose(a2, a1[:, :4])
    gray, _ = _build(folder, frames=4, channels=1)
    assert gray[0]["video"].shape == (1, 4, 16, 16)


def test_video_folder_cache_is_written_and_reused(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first, _ = _build(folder, frames=8, cache_dir=cache)
    files = sorted(cache.glob("*.pt"))
    # one per usable content (a.mp4 and b.mp4 are the same bytes: one entry), written atomically
    assert len(files) == 2 and not list(cache.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoder called although the clip is cached")

    monkeypatch.setattr(video_folder, "decode_clip", no_decoding)
    second, _ = _build(folder, frames=8, cache_dir=cache)
    assert len(second) == 3  # good clips from the cache; bad ones still skipped
    for i in range(3):
        assert torch.equal(first[i]["video"], second[i]["video"])
    assert sorted(cache.glob("*.pt")) == files
    with pytest.raises(ValueError, match="no usable clip"):  # new key: decoding needed
        _build(folder, frames=4, cache_dir=cache)


def test_video_folder_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions.csv"):
        build_dataset("video-folder", root=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "captions.csv")):
        build_dataset("video-folder", root=tmp_path)
    (tmp_path / "captions.csv").write_text("path,caption\nmissing.mp4,nothing\n")
    with pytest.raises(ValueError, match="no usable clip"), pytest.warns(UserWarning):
        build_dataset("video-folder", root=tmp_path)


def test_video_folder_cache_decodes_a_clip_changed_with_its_size_and_mtime_kept(tmp_path):
    root = write_folder(tmp_path / "clips", 3)
    cache = tmp_path / "cache"
    first, _ = _build(root, frames=4, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 3 and (cache / "fingerprints.json").is_file()
    old = first[1]["video"]
    replace_keeping_stat(root / "clip1.y4m", 5)
    second, _ = _build(root, frames=4, cache_dir=cache)
    want = video_folder.decode_clip(root / "clip1.y4m", 4, 16, 1, 3)
    assert torch.equal(second[1]["video"], want) and not torch.allclose(old, want, atol=0.1)
    assert torch.equal(first[1]["video"], want)  # an item is what its file holds now
    assert torch.equal(first[0]["video"], second[0]["video"])
    assert second.identities[1] == content_hash(root / "clip1.y4m") != first.identities[1]
    assert second.identities[0] == first.identities[0]
    assert len(list(cache.glob("*.pt"))) == 4  # the old clip's entry stays, unused


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprint_hashes_the_whole_file_and_skips_only_an_unchanged_stat(tmp_path, monkeypatch):
    path = tmp_path / "clip.bin"
    data = bytearray(np.random.default_rng(0).bytes(3 * fingerprint_mod.CHUNK + 17))
    path.write_bytes(data)
    fp = fingerprint(path)
    assert fp["hash"] == hashlib.blake2b(bytes(data), digest_size=20).hexdigest()
    assert (fp["size"], fp["mtime_ns"]) == (len(data), path.stat().st_mtime_ns)
    assert fp["racy"]  # changed just now: a change within the same clock tick would not show
    calls = []
    real = fingerprint_mod.content_hash
    monkeypatch.setattr(fingerprint_mod, "content_hash", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(fingerprint_mod, "_memo", {})
    assert fingerprint(path, fp)["hash"] == fp["hash"] and len(calls) == 1  # racy: read again
    monkeypatch.setattr(fingerprint_mod, "RACY_NS", 0)
    fp = fingerprint(path)
    assert "racy" not in fp and len(calls) == 2
    assert fingerprint(path, fp) == fp and len(calls) == 2  # the stat fast path: not read
    time.sleep(0.05)  # past the clock tick of the last change
    stat = path.stat()
    with open(path, "r+b") as handle:  # one byte in the last chunk; size and mtime put back
        handle.seek(len(data) - 5)
        handle.write(bytes([data[-5] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = fingerprint(path, fp)
    assert (new["size"], new["mtime_ns"]) == (fp["size"], fp["mtime_ns"])
    assert new["hash"] != fp["hash"] and len(calls) == 3 and not same_content(new, fp)
    os.utime(path)  # touched: read again, same content
    assert same_content(fingerprint(path, new), new) and len(calls) == 4
    assert fingerprint(tmp_path / "none") is None and fingerprint(tmp_path) is None
    assert same_content(None, None) and not same_content(None, new)


def test_folder_fingerprint_changes_with_the_csv_and_any_listed_file(tmp_path):
    root = write_folder(tmp_path / "clips", 2)
    first = folder_fingerprint(root)
    assert sorted(first["files"]) == ["clip0.y4m", "clip1.y4m"]
    assert folder_fingerprint(root, known=first)["digest"] == first["digest"]
    replace_keeping_stat(root / "clip0.y4m", 4)
    changed = folder_fingerprint(root, known=first)
    assert changed["digest"] != first["digest"]
    write_rows(root, [("clip0.y4m", "clip 0"), ("clip1.y4m", "another caption")])
    assert folder_fingerprint(root, known=changed)["digest"] != changed["digest"]
    write_rows(root, [("clip0.y4m", "clip 0"), ("missing.y4m", "gone")])
    missing = folder_fingerprint(root)
    assert missing["files"]["missing.y4m"] is None
    write_clip(root / "missing.y4m", 1)
    assert folder_fingerprint(root, known=missing)["digest"] != missing["digest"]
