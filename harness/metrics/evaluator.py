"""The embedded evaluator: a small video classifier trained once on moving-digits labels.

Its penultimate features give FVD-md (a Fréchet distance in *this* feature space, never
comparable with I3D FVD) and its predictions give PA-md (see `agreement`). Training is
deterministic (fixed seed, deterministic algorithms, fresh MovingDigits videos each step
drawn with a seed no training run uses); the default recipe takes about 8 minutes on 2 CPU
cores and reaches 0.90 digit-set and 0.89 direction accuracy on held-out videos. The same
recipe trained with another thread count gives other weights, and FVD-md's scale moves
with them, so the CPU recipe's evaluator is committed (`weights/`, see
`harness.models.cached`) and every machine scores with those bytes; other recipes are
trained once and cached under `$TPDIFF_CACHE/evaluator/`, keyed by a hash of the recipe.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.data import DIRECTIONS, MovingDigits
from harness.metrics.agreement import NUM_DIGITS, caption_targets, prompt_agreement
from harness.models import cached
from harness.models.cached import CACHE_ENV as CACHE_ENV  # re-exported: the variable the tests set
from harness.models.cached import digits, recipe_key

VERSION = 3  # bump when the network, training or cached info changes: old caches are ignored


@dataclass(frozen=True)
class EvaluatorRecipe:
    """Everything the trained weights depend on; its hash names the cache file."""

    frames: int = 16
    size: int = 32
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16
    embed_dim: int = 64
    seed: int = 9_001  # training videos: MovingDigits(seed); held-out videos: seed + 1
    heldout: int = 1024
    max_digits: int = 2
    digit_size: int = 12

    def key(self) -> str:
        return recipe_key(self, VERSION, f"md-f{self.frames}-s{self.size}")

    def dataset(self, num_videos: int, seed: int) -> MovingDigits:
        return digits(self, num_videos, seed)


@dataclass(frozen=True)
class Outputs:
    """features (B, 4w + E): the penultimate features (pooled identity and motion context);
    digits (B, 10): logits of which digits are present; count (B, max_digits): logits of how
    many distinct digits (1..max_digits); direction (B, 10, 8): each digit's motion logits."""

    features: Tensor
    digits: Tensor
    count: Tensor
    direction: Tensor


def _conv(c_in: int, c_out: int, kernel: tuple[int, int, int], stride=1) -> list[nn.Module]:
    padding = tuple(k // 2 for k in kernel)
    return [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding), nn.ReLU()]


class DigitMotionNet(nn.Module):
    """Videos (B, C, F, H, W) in [-1, 1] (channels averaged to gray) -> Outputs.

    Convs give h (B, 4w, F, H/4, W/4) (a per-frame conv for shape, then two 3-D convs).
    - identity: a 1x1x1 conv scores every digit class at every (frame, location); a digit
      is present if it scores high anywhere (max over frames and locations);
    - binding: per digit class and frame, a softmax over locations of that score attends to
      where the digit is; the attended centroid (y, x) and features over all frames form the
      digit's track, so its direction is read from *its own* motion, not the other digit's;
    - motion context z: an MLP over h pooled to 4 x 4 cells and flattened over frames.
    direction[d] = MLP(track_d, z), shared over digit classes."""

    def __init__(self, frames: int, width: int = 16, embed_dim: int = 64, max_digits: int = 2):
        super().__init__()
        c = 4 * width
        self.frames = frames
        self.conv = nn.Sequential(
            *_conv(1, width, (1, 3, 3), (1, 2, 2)),  # (B, w, F, H/2, W/2)
            *_conv(width, 2 * width, (3, 3, 3), (1, 2, 2)),  # (B, 2w, F, H/4, W/4)
            *_conv(2 * width, c, (3, 3, 3)),  # (B, 4w, F, H/4, W/4)
        )
        self.where = nn.Conv3d(c, NUM_DIGITS, 1)
        self.count = nn.Linear(c, max_digits)
        self.context = nn.Sequential(
            nn.Linear(c * frames * 16, 256), nn.ReLU(), nn.Linear(256, embed_dim)
        )
        self.track = nn.Sequential(
            nn.Linear(frames * (2 + c) + embed_dim, 128), nn.ReLU(), nn.Linear(128, len(DIRECTIONS))
        )

    def forward(self, videos: Tensor) -> Outputs:
        if videos.ndim != 5 or videos.shape[2] != self.frames:
            raise ValueError(
                f"evaluator expects (B, C, {self.frames}, H, W) videos, got {tuple(videos.shape)}"
            )
        h = self.conv(videos.mean(1, keepdim=True))  # (B, c, F, h, w)
        _, _, f, hh, ww = h.shape
        identity = h.amax((2, 3, 4))  # (B, c)
        where = self.where(h)  # (B, 10, F, h, w)
        attend = where.flatten(3).softmax(-1).view_as(where)  # over locations, per digit, frame
        ys = torch.linspace(-1, 1, hh, device=h.device)
        xs = torch.linspace(-1, 1, ww, device=h.device)
        centre = torch.stack([(attend.sum(4) * ys).sum(3), (attend.sum(3) * xs).sum(3)], -1)
        attended = torch.einsum("bdfyx,bcfyx->bdfc", attend, h)  # (B, 10, F, c)
        cells = F.adaptive_avg_pool3d(h, (f, 4, 4)).flatten(1)  # (B, c F 16)
        z = self.context(cells)  # (B, E)
        track = torch.cat([centre, attended], -1).flatten(2)  # (B, 10, F (2 + c))
        context = F.relu(z)[:, None].expand(-1, NUM_DIGITS, -1)
        return Outputs(
            features=torch.cat([identity, z], 1),
            digits=where.amax((2, 3, 4)),
            count=self.count(identity),
            direction=self.track(torch.cat([track, context], -1)),  # (B, 10, 8)
        )


def _loss(out: Outputs, captions: list[str]) -> Tensor:
    """Cross-entropies: digit set (soft target spread over the present digits), number of
    distinct digits, and each present digit's direction."""
    presence, direction = caption_targets(captions)  # (B, 10), (B, 10, 8)
    count = presence.sum(1).long() - 1  # (B,)
    digits = -(presence / presence.sum(1, keepdim=True) * out.digits.log_softmax(1)).sum(1)
    mask = presence.bool()
    motion = -(direction[mask] * out.direction.log_softmax(-1)[mask]).sum(-1)  # present only
    return digits.mean() + F.cross_entropy(out.count, count) + motion.mean()


def predict(out: Outputs) -> tuple[Tensor, Tensor]:
    """Predicted presence (B, 10) bool (the top-k digits, k = predicted count) and each
    digit's direction index (B, 10)."""
    k = out.count.argmax(1) + 1  # (B,)
    rank = out.digits.argsort(1, descending=True).argsort(1)  # rank of every digit class
    return rank < k[:, None], out.direction.argmax(-1)


def _batch(data: MovingDigits, start: int, size: int) -> tuple[Tensor, list[str]]:
    items = [data[i] for i in range(start, start + size)]
    return torch.stack([it["video"] for it in items]), [it["caption"] for it in items]


def _network(recipe: EvaluatorRecipe) -> DigitMotionNet:
    return DigitMotionNet(recipe.frames, recipe.width, recipe.embed_dim, recipe.max_digits)


def train_evaluator(recipe: EvaluatorRecipe, progress: bool = False) -> tuple[dict, dict]:
    """Train from scratch on fresh videos each step -> (state_dict, info with train time).

    Global RNG state and the deterministic-algorithms flag are restored afterwards."""
    from tqdm.auto import tqdm

    data = recipe.dataset(recipe.steps * recipe.batch_size, recipe.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        torch.use_deterministic_algorithms(True)
        try:
            net = _network(recipe)
            opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, recipe.lr, total_steps=recipe.steps, pct_start=0.1
            )
            net.train()
            bar = tqdm(range(recipe.steps), desc="evaluator", disable=not progress)
            for step in bar:
                videos, captions = _batch(data, step * recipe.batch_size, recipe.batch_size)
                loss = _loss(net(videos), captions)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
    info = {"train_time_s": time.perf_counter() - start, "final_loss": loss.item(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip
    return net.eval().state_dict(), info


class Evaluator:
    """A trained DigitMotionNet: __call__ gives FVD-md features, `agreement` gives PA-md."""

    name = "FVD-md"

    def __init__(
        self,
        recipe: EvaluatorRecipe,
        trained: cached.Trained,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ):
        self.recipe, self.info = recipe, trained.info
        self.device, self.batch_size = torch.device(device), batch_size
        self.net = _network(recipe)
        self.net.load_state_dict(trained.state_dict)
        self.net.to(self.device).eval()
        self.sha = trained.sha  # the weights' identity in every score
        self.dim = 4 * recipe.width + recipe.embed_dim
        self.progress = False  # a bar over feature batches (set by MetricContext)

    @torch.no_grad()
    def outputs(self, videos: Tensor) -> Outputs:
        """Outputs of the network for videos (N, C, F, H, W) in [-1, 1], batched, on CPU."""
        r = self.recipe
        if videos.ndim != 5 or tuple(videos.shape[2:]) != (r.frames, r.size, r.size):
            raise ValueError(
                f"evaluator {r.key()} takes (N, C, {r.frames}, {r.size}, {r.size}) videos, "
                f"got {tuple(videos.shape)}"
            )
        from tqdm.auto import tqdm

        batches = videos.split(self.batch_size)
        bar = tqdm(batches, desc="features", leave=False, disable=not self.progress)
        parts = [self.net(v.float().to(self.device)) for v in bar]
        fields = [f.name for f in dataclasses.fields(Outputs)]
        return Outputs(*(torch.cat([getattr(p, k).cpu() for p in parts]) for k in fields))

    def __call__(self, videos: Tensor) -> Tensor:
        """FVD-md features (N, dim), float64."""
        return self.outputs(videos).features.double()

    def standardize(self, features: Tensor) -> Tensor:
        """Features (N, dim) in z-scores of the held-out real videos' features (fixed per
        evaluator), the scale KVD-md is computed in. A feature that barely varies over real
        videos (a unit dead on real data) is scaled by a floor, a tenth of the median
        feature's spread, not by its own near-zero spread: else any video that wakes it sits
        thousands of units out and the cubic kernel overflows to 1e30 and beyond."""
        mean = torch.tensor(self.info["feature_mean"], dtype=torch.float64)
        std = torch.tensor(self.info["feature_std"], dtype=torch.float64)
        floor = max(0.1 * float(std.median()), 1e-8)
        return (features.double() - mean) / std.clamp_min(floor)

    def predict(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted presence (N, 10) bool and direction index (N, 10) per digit class."""
        return predict(self.outputs(videos))

    def agreement(self, videos: Tensor, captions: list[str]):
        """PA-md of videos against their captions (an `agreement.Agreement`)."""
        return prompt_agreement(*self.predict(videos), captions)


def cache_dir(root: str | Path | None = None) -> Path:
    """`root`, else $TPDIFF_CACHE, else ~/.cache/tpdiff-harness; the evaluator subfolder."""
    return cached.cache_dir("evaluator", root)


def train_and_describe(recipe: EvaluatorRecipe, progress: bool = False) -> tuple[dict, dict]:
    """Train (`train_evaluator`), then describe the weights on held-out videos: prompt
    agreement, and the feature mean and spread KVD-md standardises with -> (state, info)."""
    state_dict, info = train_evaluator(recipe, progress=progress)
    fresh = cached.Trained(state_dict, info, cached.state_hash(state_dict), Path(),
                           committed=False)  # fmt: skip
    evaluator = Evaluator(recipe, fresh)  # info is completed below
    held = recipe.dataset(recipe.heldout, recipe.seed + 1)
    videos, captions = _batch(held, 0, recipe.heldout)
    acc = evaluator.agreement(videos, captions)
    info["heldout"] = {"n": acc.n, "both": acc.both, "digit": acc.digit, "direction": acc.direction}
    features = evaluator(videos)  # (heldout, dim) float64: the standardisation of KVD-md
    info["feature_mean"] = features.mean(0).tolist()
    info["feature_std"] = features.std(0).tolist()
    if progress:
        print(f"evaluator held-out agreement: {info['heldout']} ({info['train_time_s']:.0f} s)")
    return state_dict, info


def evaluator_weights(
    recipe: EvaluatorRecipe, root: str | Path | None = None, progress: bool = True
) -> cached.Trained:
    """The weights of `recipe`: committed (weights/evaluator/), cached, or trained now."""
    return cached.obtain("evaluator", recipe, VERSION, recipe.key(),
                         lambda: train_and_describe(recipe, progress), root, progress)  # fmt: skip


def load_evaluator(
    recipe: EvaluatorRecipe | None = None,
    root: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Evaluator:
    """The evaluator of `recipe` (default recipe if None): the committed weights when
    weights/manifest.json lists it, else the cached ones, training them once first."""
    recipe = recipe or EvaluatorRecipe()
    trained = evaluator_weights(recipe, root, progress)
    return Evaluator(recipe, trained, device)
