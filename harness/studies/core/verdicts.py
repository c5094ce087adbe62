"""Verdicts: which claims of the paper a results folder shows, by fixed rules.

Every verdict is `reproduced`, `not reproduced` or `inconclusive`, with the numbers and the
rule that decided it. The rules, in the order they are applied:

- **Noise level.** A run whose final FVD-md is above NOISE_SHARE of the noise reference
  (uniform noise vs real, same n), or whose PA-md-digit is within CHANCE_MARGIN of chance,
  has learned nothing measurable; every verdict that rests on it is `inconclusive`. "Within"
  is read at the n scored: the lower end of PA-md-digit's 90 % Wilson interval (a share of n
  videos) must clear chance + CHANCE_MARGIN, so one lucky hit in 12 videos (0.083) does not
  count as a model that follows its prompts.
- **Inference** (>= 1.5x at 30 steps): `reproduced` if the measured speedup is >= 1.5,
  else `not reproduced`.
- **Training cost** (about 50 % of vanilla's cost to equal quality), AlgoPerf style: the
  target is the median of vanilla's last 3 curve points (a level it reaches and holds).
  Each run's cost to reach it is interpolated on its curve. TPDiff's interval comes from
  the bootstrap bands, like against like: both runs' low band edges reaching the target
  made from vanilla's low edge, and the same for the high edges; it spans those two ratios
  and the central one. ratio = TPDiff's cost to target / vanilla's. `not reproduced`
  (not reached) if TPDiff's curve never reaches the target; `inconclusive` if the two
  bands overlap everywhere over the last third of the cumulative-FLOPs range both runs
  cover (at equal cost the runs cannot be told apart); then `reproduced` if the ratio's
  interval lies at or below RATIO_CLAIM, `not reproduced` if it lies above, else
  `inconclusive`.
- **Alignment lowers FVD**: `reproduced` if the aligned run's final FVD-md interval lies
  below the unaligned one's and the gap exceeds the measured training-seed spread;
  `not reproduced` if it lies above by more than that spread; else `inconclusive`.
- **Renoising removes stage-boundary artifacts**: on the motion gap (lower is better),
  `reproduced` if renoising's interval lies below no-renoising's, `not reproduced` if it
  lies above, else `inconclusive`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

NOISE_SHARE = 0.25  # above this share of the noise reference's FVD-md: noise level
CHANCE_MARGIN = 0.05  # PA-md-digit within this of chance: noise level
QUALITY_BAR_FVD = 4.0  # a model that learns: final FVD-md <= this x real vs real (same n)
QUALITY_BAR_PA = 0.4  # and PA-md-digit >= this
SPEEDUP_CLAIM = 1.5
RATIO_CLAIM = 0.65  # "about 50 %": TPDiff's cost to target at most this share of vanilla's
LAST_THIRD = 2 / 3
Z90 = 1.6449  # standard normal quantile of a two-sided 90 % interval

CLAIMS = {
    "inference": "inference >= 1.5x faster at 30 steps",
    "training": "about 50 % of vanilla's training cost to equal quality",
    "alignment": "data-noise alignment lowers FVD",
    "renoise": "renoising removes stage-boundary artifacts",
}


@dataclass(frozen=True)
class Estimate:
    """A score with its 90 % interval."""

    value: float
    lo: float
    hi: float

    def below(self, other: Estimate, margin: float = 0.0) -> bool:
        """Clearly lower: this interval ends below the other's, by more than `margin`."""
        return self.hi < other.lo and other.value - self.value > margin


@dataclass(frozen=True)
class Curve:
    """A quality curve (lower is better) over cumulative cost, with its band; sorted by x."""

    x: np.ndarray
    q: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self):
        if len(self.x) < 3:
            raise ValueError(f"a curve needs at least 3 points, got {len(self.x)}")
        if np.any(np.diff(self.x) <= 0):
            raise ValueError("curve costs must increase")


@dataclass(frozen=True)
class Verdict:
    claim: str
    backbone: str
    verdict: str  # reproduced | not reproduced | inconclusive
    numbers: dict
    rule: str

    def row(self) -> dict:
        return asdict(self)


def wilson_low(share: float, n: int, z: float = Z90) -> float:
    """Lower end of the Wilson score interval of a share measured on n trials (z = 1.645:
    the 90 % two-sided interval)."""
    if n < 1:
        raise ValueError(f"a share needs n >= 1, got {n}")
    centre = share + z * z / (2 * n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n))


def bar_misses(fvd: float, pa_digit: float, real_fvd: float) -> list[str]:
    """How a final score misses the bar of a model that learns (FVD-md at most
    QUALITY_BAR_FVD x real vs real at the same n, PA-md-digit at least QUALITY_BAR_PA);
    empty when it clears it."""
    misses = []
    if fvd > QUALITY_BAR_FVD * real_fvd:
        misses.append(f"FVD-md {fvd / real_fvd:.2f} x real > {QUALITY_BAR_FVD:g}")
    if pa_digit < QUALITY_BAR_PA:
        misses.append(f"PA-md-digit {pa_digit:.3f} < {QUALITY_BAR_PA}")
    return misses


def noise_level(
    fvd: float, noise_fvd: float, pa_digit: float, chance: float, run: str, n: int | None = None
) -> str | None:
    """Why `run` is at noise level, or None. `n`: the videos PA-md-digit was measured on
    (None: take the share as exact)."""
    reasons = []
    if fvd > NOISE_SHARE * noise_fvd:
        reasons.append(f"FVD-md {fvd:.4g} > {NOISE_SHARE:g} x noise reference {noise_fvd:.4g}")
    low = pa_digit if n is None else wilson_low(pa_digit, n)
    if low <= chance + CHANCE_MARGIN:
        at = "" if n is None else f" (90 % interval from {low:.3f} at n = {n})"
        reasons.append(
            f"PA-md-digit {pa_digit:.3f}{at} within {CHANCE_MARGIN} of chance {chance:.3f}"
        )
    return f"{run} is at noise level ({'; '.join(reasons)})" if reasons else None


def _noisy(claim: str, backbone: str, numbers: dict, reasons: list[str | None]) -> Verdict | None:
    found = [r for r in reasons if r]
    if not found:
        return None
    rule = "a run at noise level shows nothing: " + "; ".join(found)
    return Verdict(claim, backbone, "inconclusive", numbers, rule)


def inference(backbone: str, speedup: float, noise: str | None) -> Verdict:
    numbers = {"inference_speedup": speedup, "claim": SPEEDUP_CLAIM}
    if speedup < SPEEDUP_CLAIM:
        return Verdict("inference", backbone, "not reproduced", numbers,
                       f"measured speedup {speedup:.2f} < {SPEEDUP_CLAIM}")  # fmt: skip
    noisy = _noisy("inference", backbone, numbers, [noise])
    if noisy is not None:
        return noisy
    return Verdict("inference", backbone, "reproduced", numbers,
                   f"measured speedup {speedup:.2f} >= {SPEEDUP_CLAIM}")  # fmt: skip


def reach(x: np.ndarray, q: np.ndarray, target: float) -> float | None:
    """First cost at which q <= target, linearly interpolated between points; None if never."""
    hits = np.flatnonzero(q <= target)
    if not len(hits):
        return None
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    frac = (q[i - 1] - target) / (q[i - 1] - q[i])
    return float(x[i - 1] + frac * (x[i] - x[i - 1]))


def bands_overlap(a: Curve, b: Curve, points: int = 25) -> bool:
    """True when the two bands overlap at every cost of the last third of the range both
    curves cover (interpolated linearly)."""
    end = min(a.x[-1], b.x[-1])
    start = max(LAST_THIRD * end, a.x[0], b.x[0])
    xs = np.linspace(start, end, points)
    a_lo, a_hi = np.interp(xs, a.x, a.lo), np.interp(xs, a.x, a.hi)
    b_lo, b_hi = np.interp(xs, b.x, b.lo), np.interp(xs, b.x, b.hi)
    return bool(np.all((a_lo <= b_hi) & (b_lo <= a_hi)))


def time_to_target(vanilla: Curve, tpdiff: Curve) -> dict:
    """Target (median of vanilla's last 3 points), each run's cost to reach it, the ratio
    with its interval, and whether the bands overlap over the last third.

    The interval compares like with like: both runs at the optimistic edge of their bands
    (each run's cost to reach the target made from vanilla's low band), then both at the
    pessimistic edge; it spans those two ratios and the central one. A TPDiff edge that
    never reaches its target makes the upper end infinite."""
    target = float(np.median(vanilla.q[-3:]))
    van = reach(vanilla.x, vanilla.q, target)
    tp = reach(tpdiff.x, tpdiff.q, target)
    edges = []
    for v_band, t_band in ((vanilla.lo, tpdiff.lo), (vanilla.hi, tpdiff.hi)):
        edge_target = float(np.median(v_band[-3:]))
        edges.append((reach(vanilla.x, v_band, edge_target), reach(tpdiff.x, t_band, edge_target)))
    reached = [t for _, t in edges if t is not None]
    out = dict(target=target, vanilla_to_target=van, tpdiff_to_target=tp,
               tpdiff_to_target_lo=min(reached) if reached else None,
               tpdiff_to_target_hi=max(reached) if len(reached) == 2 else None,
               overlap=bands_overlap(vanilla, tpdiff))  # fmt: skip
    ratio = None if tp is None or van is None else tp / van
    ratios = [t / v for v, t in edges if t is not None and v]
    if ratio is not None:
        ratios.append(ratio)
    missed = any(t is None for _, t in edges) or ratio is None
    out |= dict(ratio=ratio, ratio_lo=min(ratios) if ratios else None,
                ratio_hi=float("inf") if missed else max(ratios))  # fmt: skip
    return out


def training(backbone: str, vanilla: Curve, tpdiff: Curve, noise: list[str | None]) -> Verdict:
    t = time_to_target(vanilla, tpdiff)
    noisy = _noisy("training", backbone, t, noise)
    if noisy is not None:
        return noisy
    if t["tpdiff_to_target"] is None:
        return Verdict("training", backbone, "not reproduced", t,
                       f"not reached: TPDiff's curve never reaches vanilla's target "
                       f"{t['target']:.4g}")  # fmt: skip
    if t["overlap"]:
        return Verdict("training", backbone, "inconclusive", t,
                       "the two curves' 90 % bands overlap over the last third of the "
                       "shared training budget: at equal cost the runs cannot be told "
                       "apart")  # fmt: skip
    lo, hi = t["ratio_lo"], t["ratio_hi"]
    span = f"ratio {t['ratio']:.3f} [{lo:.3f}, {hi:.3g}]"
    if hi <= RATIO_CLAIM:
        return Verdict("training", backbone, "reproduced", t, f"{span} <= {RATIO_CLAIM}")
    if lo > RATIO_CLAIM:
        return Verdict("training", backbone, "not reproduced", t, f"{span} > {RATIO_CLAIM}")
    return Verdict("training", backbone, "inconclusive", t,
                   f"{span} straddles {RATIO_CLAIM}")  # fmt: skip


def alignment(
    backbone: str,
    aligned: Estimate | None,
    unaligned: Estimate | None,
    seed_spread: float | None,
    noise: list[str | None],
) -> Verdict:
    if aligned is None or unaligned is None:
        return Verdict("alignment", backbone, "inconclusive", {},
                       "not measured at this scale (no run without alignment)")  # fmt: skip
    spread = seed_spread or 0.0
    numbers = dict(aligned=asdict(aligned), unaligned=asdict(unaligned),
                   seed_spread=seed_spread)  # fmt: skip
    noisy = _noisy("alignment", backbone, numbers, noise)
    if noisy is not None:
        return noisy
    seeds = f" and the training-seed spread {spread:.4g}" if seed_spread else ""
    shown = (f"FVD-md {aligned.value:.4g} [{aligned.lo:.4g}, {aligned.hi:.4g}] with vs "
             f"{unaligned.value:.4g} [{unaligned.lo:.4g}, {unaligned.hi:.4g}] without")  # fmt: skip
    if aligned.below(unaligned, spread):
        return Verdict("alignment", backbone, "reproduced", numbers,
                       f"{shown}: lower beyond both intervals{seeds}")  # fmt: skip
    if unaligned.below(aligned, spread):
        return Verdict("alignment", backbone, "not reproduced", numbers,
                       f"{shown}: higher beyond both intervals{seeds}")  # fmt: skip
    return Verdict("alignment", backbone, "inconclusive", numbers,
                   f"{shown}: the gap is within the intervals{seeds}")  # fmt: skip


def renoise(backbone: str, on: Estimate, off: Estimate, noise: list[str | None]) -> Verdict:
    numbers = dict(renoise_on=asdict(on), renoise_off=asdict(off))
    noisy = _noisy("renoise", backbone, numbers, noise)
    if noisy is not None:
        return noisy
    shown = (f"motion gap {on.value:.3f} [{on.lo:.3f}, {on.hi:.3f}] with vs "
             f"{off.value:.3f} [{off.lo:.3f}, {off.hi:.3f}] without renoising")  # fmt: skip
    if on.below(off):
        return Verdict("renoise", backbone, "reproduced", numbers, f"{shown}: lower")
    if off.below(on):
        return Verdict("renoise", backbone, "not reproduced", numbers, f"{shown}: higher")
    return Verdict("renoise", backbone, "inconclusive", numbers, f"{shown}: intervals overlap")


ABLATION_VERDICTS = ("better", "worse", "within noise")
ABLATION_RULE = (
    "`better` when the variant's 90 % interval lies wholly on the better side of the paper "
    "setting's (lower FVD-md or motion gap, higher PA-md-digit) and the gap exceeds the "
    "seed spread (the `seed` ablation's |paper - seed 1|: training draws, data and sampling "
    "noise), `worse` when it lies "
    "wholly on the worse side by more than that spread, else `within noise`; a run at noise "
    "level is `within noise`"
)


def wilson_interval(share: float, n: int, z: float = Z90) -> tuple[float, float]:
    """The Wilson score interval (90 % by default) of a share measured on n trials."""
    return wilson_low(share, n, z), 1.0 - wilson_low(1.0 - share, n, z)


def ablation(
    metric: str,
    variant: Estimate,
    paper: Estimate,
    seed_spread: float | None,
    noise: list[str | None],
    higher_is_better: bool = False,
) -> tuple[str, str]:
    """(verdict, why) of a variant against the paper's setting on `metric` (lower is better
    unless `higher_is_better`), by ABLATION_RULE."""
    spread = seed_spread or 0.0
    shown = (f"{metric} {variant.value:.4g} [{variant.lo:.4g}, {variant.hi:.4g}] vs paper "
             f"{paper.value:.4g} [{paper.lo:.4g}, {paper.hi:.4g}]")  # fmt: skip
    seeds = f", seed spread {seed_spread:.4g}" if seed_spread is not None else ", no seed spread"
    found = [r for r in noise if r]
    if found:
        return "within noise", f"{shown}: " + "; ".join(found)
    if higher_is_better:  # compare the negated scores: lower is then better
        flip = lambda e: Estimate(-e.value, -e.hi, -e.lo)  # noqa: E731
        variant, paper = flip(variant), flip(paper)
    side = ("higher", "lower") if higher_is_better else ("lower", "higher")
    if variant.below(paper, spread):
        return "better", f"{shown}: {side[0]} beyond both intervals{seeds}"
    if paper.below(variant, spread):
        return "worse", f"{shown}: {side[1]} beyond both intervals{seeds}"
    return "within noise", f"{shown}: the gap is within the intervals{seeds}"
