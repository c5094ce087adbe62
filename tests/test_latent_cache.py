"""The latent cache: shards equal to the encoded videos, resumable after a kill without
re-encoding whole shards, dealt out to DDP ranks with every shard encoded once, opened
without reading any array, and encoded again from the first shard a changed, added or
removed source clip affects."""

import json
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from video_files import replace_keeping_stat, stamps, write_clip, write_folder, write_rows

import harness.data.shards as shards
import harness.models.latents as latents
from harness.data import MovingDigits
from harness.data.prepared import PreparedVideos, Source, prepare, refresh
from harness.models.latents import LatentDataset, encode_to_cache

PROVENANCE = {"format": 2, "vae": "pool2"}


class PoolCodec:
    """A stand-in VAE with a known answer: 2x2 average pooling of each frame."""

    def __init__(self, channels: int = 1):
        self.channels = channels
        self.calls: list[int] = []  # videos per encode call
        self.lock = threading.Lock()

    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        return (self.channels, frames, size // 2, size // 2)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls.append(len(video))
        return F.avg_pool3d(video, (1, 2, 2))


def videos():
    return MovingDigits(num_videos=7, frames=4, size=16, channels=1, seed=3)


def pooled(data, i):
    return F.avg_pool3d(data[i]["video"][None], (1, 2, 2))[0]


def test_shards_hold_the_encoded_videos_with_captions_and_labels(tmp_path):
    data = videos()
    cache = encode_to_cache(tmp_path, videos, PoolCodec(), 2, PROVENANCE, shard_size=3)
    assert sorted(p.name for p in tmp_path.glob("latents_*.npy")) == [
        "latents_00000.npy", "latents_00001.npy", "latents_00002.npy"
    ]  # fmt: skip
    assert [s["count"] for s in cache.meta["shards"]] == [3, 3, 1]
    assert (len(cache), cache.channels, cache.frames, cache.size) == (7, 1, 4, 8)
    for i in range(7):
        item = cache[i]
        torch.testing.assert_close(item["video"], pooled(data, i), atol=2e-3, rtol=0)
        assert item["caption"] == data[i]["caption"] and item["labels"] == data[i]["labels"]


def test_a_killed_encoding_resumes_at_the_missing_shard(tmp_path):
    first = encode_to_cache(tmp_path, videos, PoolCodec(), 2, PROVENANCE, shard_size=3)
    want = [first[i]["video"] for i in range(7)]
    kept = (tmp_path / "latents_00000.npy").stat().st_mtime_ns
    # a kill after shard 0 and 2 were written, before shard 1's record and the index
    (tmp_path / "latents_00001.json").unlink()
    (tmp_path / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete latent cache"):
        LatentDataset(tmp_path)
    codec = PoolCodec()
    again = encode_to_cache(tmp_path, videos, codec, 2, PROVENANCE, shard_size=3)
    assert codec.calls == [2, 1]  # shard 1's three videos only, in calls of at most 2
    assert (tmp_path / "latents_00000.npy").stat().st_mtime_ns == kept
    assert all(torch.equal(again[i]["video"], want[i]) for i in range(7))
    (tmp_path / "index.json").unlink()
    with pytest.raises(ValueError, match="made with other settings"):
        encode_to_cache(tmp_path, videos, PoolCodec(), 2, PROVENANCE, shard_size=4)


def test_ranks_share_the_shards_and_encode_each_once(tmp_path, monkeypatch):
    codec, barrier = PoolCodec(), threading.Barrier(2, timeout=600)
    real = latents.shard_done

    def late_rank_1(folder, name):  # rank 1 looks at the folder after rank 0 began writing
        if threading.current_thread().name == "rank 1":
            time.sleep(0.2)
        return real(folder, name)

    monkeypatch.setattr(latents, "shard_done", late_rank_1)
    done: dict[int, LatentDataset] = {}
    errors: list[BaseException] = []

    def rank(r: int) -> None:
        try:
            done[r] = encode_to_cache(tmp_path / "ddp", videos, codec, 3, PROVENANCE, r, 2,
                                      barrier.wait, shard_size=2)  # fmt: skip
        except BaseException as error:  # a failing rank releases the other, as torchrun does
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=rank, args=(r,), name=f"rank {r}", daemon=True) for r in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert sorted(done) == [0, 1] and sum(codec.calls) == 7  # 4 shards, each encoded once
    single = encode_to_cache(tmp_path / "one", videos, PoolCodec(), 3, PROVENANCE, shard_size=2)
    for cache in done.values():
        assert [cache[i]["caption"] for i in range(7)] == single.captions
        assert all(torch.equal(cache[i]["video"], single[i]["video"]) for i in range(7))


def test_opening_a_cache_reads_no_array_and_survives_pickling(tmp_path, monkeypatch):
    encode_to_cache(tmp_path, videos, PoolCodec(), 4, PROVENANCE, shard_size=3)

    def no_arrays(*args, **kwargs):
        raise AssertionError("an array was read while opening the cache")

    with monkeypatch.context() as patch:
        patch.setattr(np, "load", no_arrays)
        cache = LatentDataset(tmp_path)
    loader = torch.utils.data.DataLoader(cache, batch_size=7, num_workers=2)
    (batch,) = list(loader)
    assert torch.equal(batch["video"], torch.stack([cache[i]["video"] for i in range(7)]))
    assert shards.INDEX == "index.json" and (tmp_path / shards.INDEX).is_file()


# ----------------------------------------------------------------------------- changed sources


@pytest.fixture
def clips(tmp_path):
    """Seven real clips, prepared (shards of 4 rows); `make()` brings the shards up to date
    with the folder and opens them, as a training start does."""
    root = write_folder(tmp_path / "clips", 7)
    source, folder = Source(str(root), frames=4, size=16, channels=3), tmp_path / "prepared"
    prepare(source, folder, shard_size=4)

    def make() -> PreparedVideos:
        refresh(source, folder)
        return PreparedVideos(folder)

    return root, make


def encode(folder, make, codec):
    return encode_to_cache(folder, make, codec, 2, PROVENANCE, shard_size=3)


def test_a_changed_clip_encodes_again_from_its_shard_on_and_says_so(clips, tmp_path, capsys):
    root, make = clips
    cache = tmp_path / "latents"
    encode(cache, make, PoolCodec(3))
    record = json.loads((cache / "latents_00001.json").read_text())
    assert record["ids"] == make().identities[3:6] and len(set(record["ids"])) == 3
    kept = stamps(cache, "latents_00000.*")
    replace_keeping_stat(root / "clip4.y4m", 9)  # video 4: latent shard 1 (videos 3-5)
    capsys.readouterr()
    codec = PoolCodec(3)
    again = encode(cache, make, codec)
    assert sum(codec.calls) == 4  # videos 3-6: shards 1 and 2, not shard 0
    assert stamps(cache, "latents_00000.*") == kept
    out = capsys.readouterr().out
    line = f"latent cache {cache}: latents_00001: video 4 is another video"
    assert line in out and "encoding again from it on" in out
    videos = make()
    for i in range(7):
        torch.testing.assert_close(again[i]["video"], pooled(videos, i), atol=2e-3, rtol=0)
    unchanged = PoolCodec(3)
    encode(cache, make, unchanged)
    assert unchanged.calls == []


def test_an_added_clip_encodes_the_last_shard_and_a_removed_one_from_its_shard_on(clips, tmp_path):
    root, make = clips
    cache = tmp_path / "latents"
    encode(cache, make, PoolCodec(3))
    names = [f"clip{k}.y4m" for k in range(8)]
    write_clip(root / "clip7.y4m", 7)
    write_rows(root, [(n, f"clip {k}") for k, n in enumerate(names)])
    kept, codec = stamps(cache, "latents_0000[01].*"), PoolCodec(3)
    added = encode(cache, make, codec)
    assert sum(codec.calls) == 2 and stamps(cache, "latents_0000[01].*") == kept  # videos 6, 7
    assert len(added) == 8 and added.captions[7] == "clip 7"
    write_rows(root, [(n, f"clip {k}") for k, n in enumerate(names) if k != 1])
    codec = PoolCodec(3)
    removed = encode(cache, make, codec)
    assert sum(codec.calls) == 7  # video 1 left: every later item moved, shard 0 on again
    assert sorted(p.name for p in cache.glob("latents_*.npy")) == [
        "latents_00000.npy", "latents_00001.npy", "latents_00002.npy"
    ]  # fmt: skip
    videos = make()
    assert removed.captions == [f"clip {k}" for k in range(8) if k != 1] == videos.captions
    for i in range(7):
        torch.testing.assert_close(removed[i]["video"], pooled(videos, i), atol=2e-3, rtol=0)
