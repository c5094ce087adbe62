"""The embedded moving-digits evaluator: caching, determinism, FVD-md sanity, PA-md."""

import math

import pytest
import torch

from harness.data import MovingDigits, collate
from harness.metrics import MetricOptions, VideoSet, compute_metrics, default_metrics
from harness.metrics import evaluator as ev
from harness.metrics.agreement import caption_targets, parse_caption, prompt_agreement
from harness.metrics.fvd import fvd

# a fast recipe for tests (the default trains for minutes); shared through the disk cache
TINY = ev.EvaluatorRecipe(frames=8, size=32, steps=300, batch_size=32, width=8, heldout=256)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "evaluator-cache"


@pytest.fixture(scope="session")
def evaluator(cache_root):
    return ev.load_evaluator(TINY, root=cache_root, progress=False)


def _real(n, seed, frames=8):
    data = MovingDigits(num_videos=n, frames=frames, seed=seed)
    batch = collate([data[i] for i in range(n)])
    return batch["video"], batch["caption"]


def _blur(videos, sigma):
    """Separable Gaussian blur of every frame, (N, C, F, H, W)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    n, c, f, h, w = videos.shape
    frames = videos.reshape(n * c * f, 1, h, w)
    frames = torch.nn.functional.pad(frames + 1, (radius,) * 4) - 1  # pad with black (-1)
    frames = torch.nn.functional.conv2d(frames, k.view(1, 1, 1, -1))
    frames = torch.nn.functional.conv2d(frames, k.view(1, 1, -1, 1))
    return frames.reshape(n, c, f, h, w)


def _shuffle(videos, fraction, seed=0):
    """Permute a random `fraction` of each video's frames among themselves."""
    g = torch.Generator().manual_seed(seed)
    out = videos.clone()
    f = videos.shape[2]
    k = round(fraction * f)
    for i in range(len(videos)):
        picked = torch.randperm(f, generator=g)[:k]
        out[i, :, picked] = videos[i, :, picked[torch.roll(torch.arange(k), 1)]]
    return out


def test_parse_caption_and_targets():
    assert parse_caption("a 3 moving up-left") == [(3, 4)]
    assert parse_caption("a 3 moving up-left and a 5 moving down") == [(3, 4), (5, 1)]
    with pytest.raises(ValueError, match="not a moving-digits caption"):
        parse_caption("a cat on a mat")
    presence, direction = caption_targets(["a 3 moving up and a 3 moving left", "a 7 moving right"])
    assert presence.sum().item() == 2 and presence[0, 3] == 1 and presence[1, 7] == 1
    assert direction[0, 3].tolist() == [0.5, 0, 0.5, 0, 0, 0, 0, 0]  # a digit listed twice


def test_prompt_agreement_known_answers():
    captions = ["a 3 moving up-left and a 5 moving down", "a 7 moving right"]
    present = torch.zeros(2, 10, dtype=torch.bool)
    direction = torch.zeros(2, 10, dtype=torch.long)
    present[0, [3, 5]] = True
    direction[0, 3], direction[0, 5] = 4, 0  # second pair's direction wrong
    present[1, [7, 1]] = True  # an extra digit: the set is wrong
    direction[1, 7] = 3
    acc = prompt_agreement(present, direction, captions)
    assert (acc.digit, acc.direction, acc.both, acc.n) == (0.5, 0.75, 0.0, 2)
    direction[0, 5] = 1
    present[1, 1] = False
    acc = prompt_agreement(present, direction, captions)
    assert (acc.digit, acc.direction, acc.both) == (1.0, 1.0, 1.0)


def test_evaluator_is_cached_and_reloaded(evaluator, cache_root, monkeypatch):
    path = ev.cache_dir(cache_root) / f"{TINY.key()}.pt"
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    assert evaluator.info["train_time_s"] > 0 and 0 <= evaluator.info["heldout"]["digit"] <= 1

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded the cached evaluator")

    monkeypatch.setattr(ev, "train_evaluator", no_training)
    again = ev.load_evaluator(TINY, root=cache_root, progress=False)
    videos, _ = _real(4, 1)
    assert torch.equal(again(videos), evaluator(videos))
    monkeypatch.setenv(ev.CACHE_ENV, str(cache_root))
    assert ev.cache_dir() == path.parent
    assert ev.EvaluatorRecipe(frames=8, steps=201).key() != TINY.key()


def test_training_is_deterministic():
    recipe = ev.EvaluatorRecipe(frames=4, size=16, steps=3, batch_size=4, digit_size=8)
    torch.manual_seed(123)
    before = torch.rand(1)
    a, _ = ev.train_evaluator(recipe)
    b, _ = ev.train_evaluator(recipe)
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the global RNG stream is not disturbed


def test_fvd_md_separates_real_from_corrupted(evaluator):
    real, _ = _real(192, 101)
    other, _ = _real(192, 202)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(real.shape, generator=g) * 2 - 1

    def score(fake):
        return fvd(evaluator, real, fake).value

    same = score(other)
    blur = [score(_blur(other, s)) for s in (0.5, 1.0, 2.0)]
    shuffle = [score(_shuffle(other, p)) for p in (0.25, 0.5, 1.0)]
    print(f"FVD-md real-vs-real {same:.2f} noise {score(noise):.1f} blur {blur} shuffle {shuffle}")
    assert same < 0.1 * score(noise)
    assert same < blur[0] < blur[1] < blur[2]
    assert same < shuffle[0] < shuffle[1] < shuffle[2]


def test_prompt_agreement_of_real_videos_beats_mismatched_captions(evaluator):
    videos, captions = _real(192, 303)
    right = evaluator.agreement(videos, captions)
    wrong = evaluator.agreement(videos, captions[1:] + captions[:1])
    assert right.digit > wrong.digit + 0.1 and right.direction > wrong.direction + 0.1


def test_registry_columns_name_the_embedded_feature_space(evaluator, cache_root):
    fake, real = (VideoSet(v, tuple(c)) for v, c in (_real(48, 404), _real(48, 505)))
    options = MetricOptions(cache=str(cache_root), evaluator=TINY)
    assert default_metrics(options) == ["fvd-md", "kvd-md", "pa-md", "flicker", "motion"]
    with pytest.warns(UserWarning, match="rank-deficient"):  # 48 videos, 96-d features
        row = compute_metrics(fake, real, options=options)
    assert list(row) == [
        "FVD-md", "FVD-md-lo", "FVD-md-hi", "evaluator",
        "KVD-md", "KVD-md-lo", "KVD-md-hi",
        "PA-md", "PA-md-digit", "PA-md-dir", "PA-md-real",
        "flicker", "flicker-real",
        "motion-gap", "motion-gap-lo", "motion-gap-hi", "stutter", "stutter-real",
    ]  # fmt: skip
    for name in ("FVD-md", "KVD-md", "motion-gap"):
        assert row[f"{name}-lo"] <= row[name] <= row[f"{name}-hi"], name
    assert abs(row["KVD-md"]) < row["KVD-md-hi"] - row["KVD-md-lo"]  # real vs real: about 0
    assert row["evaluator"] == TINY.key() and row["FVD-md"] > 0 and row["PA-md-real"] > 0
    with pytest.raises(ValueError, match="unknown metrics"):
        compute_metrics(fake, real, ["fid"], options)
    with pytest.raises(ValueError, match=r"takes \(N, C, 8, 32, 32\)"):
        evaluator(torch.zeros(2, 1, 16, 32, 32))
