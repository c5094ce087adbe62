"""Verdicts: which claims of the paper a results folder shows, by fixed rules.

The rules were written down before the runs they decide (docs/paper-suite.md,
"Pre-registered design") and are not loosened after a run. Every verdict is `reproduced`,
`not reproduced` or `inconclusive`, with the numbers, the seeds and the rule that decided
it; a quality-based verdict of a job with fewer than MIN_SEEDS (3) training seeds is marked
`provisional`. The intervals carry training-seed noise (`harness.studies.core.seeds`: the
Student-t interval of the paired per-seed estimates, 90 %).

- **Noise level.** A run whose final FVD-md is above NOISE_SHARE of the noise reference
  (uniform noise vs real, same n), or whose PA-md-digit is within CHANCE_MARGIN of chance,
  has learned nothing measurable; every verdict that rests on it is `inconclusive`. "Within"
  is read at the n scored: the lower end of PA-md-digit's 90 % Wilson interval (a share of n
  videos) must clear chance + CHANCE_MARGIN.
- **One rule for every claim** (`_decide`): `reproduced` when the interval clears the
  claim, `not reproduced` when it excludes it, else `inconclusive`, stating the smallest
  effect the design could have detected (90 % two-sided, 80 % power).
- **Inference** (>= 1.5x at 30 steps): decided at the smallest compute-bound batch of a
  batch sweep (`inference_regime`: time per video changes by less than 10 % from half the
  batch), on the speedup's interval over timing repeats (`inconclusive` when no batch of
  the sweep is compute-bound); the batch-1 speedup and its share of the FLOP bound are
  given beside. Not quality-based: never provisional.
- **Training cost** (about 50 % of vanilla's cost to equal quality, claim <= RATIO_CLAIM),
  AlgoPerf style (`time_to_target`): the target is the worst vanilla seed's end level; each
  seed's cost to reach it, a miss counting as infinite; the paired per-seed log ratios give
  the ratio and its interval. Whether vanilla converged is stated.
- **Alignment lowers FVD** and **renoising removes stage-boundary artifacts**: the paired
  per-seed gap (final FVD-md without - with alignment; motion gap without - with
  renoising) must clear 0 (`paired_gap`; with one seed, the bootstrap intervals and the
  main arm's seed spread give a provisional interval).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from harness.studies.core.seeds import MIN_SEEDS, SeedEstimate, paired, spread

NOISE_SHARE = 0.25  # above this share of the noise reference's FVD-md: noise level
CHANCE_MARGIN = 0.05  # PA-md-digit within this of chance: noise level
QUALITY_BAR_FVD = 4.0  # a model that learns: final FVD-md <= this x real vs real (same n)
QUALITY_BAR_PA = 0.4  # and PA-md-digit >= this
SPEEDUP_CLAIM = 1.5
RATIO_CLAIM = 0.65  # "about 50 %": TPDiff's cost to target at most this share of vanilla's
LAST_THIRD = 2 / 3  # vanilla's convergence is judged over the last third of its budget
COMPUTE_BOUND = 0.10  # a batch whose time per video is within this of half the batch's
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
    seeds: tuple[int, ...] = ()  # the training seeds it rests on (none for timing)
    provisional: bool = False  # quality-based, on fewer than MIN_SEEDS seeds

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


def _noisy(claim: str, backbone: str, numbers: dict, reasons: list[str | None],
           est: SeedEstimate | None = None) -> Verdict | None:  # fmt: skip
    """`inconclusive` when a run the claim rests on is at noise level (else None); with
    the seeds of `est`, and its interval in the numbers."""
    found = [r for r in reasons if r]
    if not found:
        return None
    rule = "a run at noise level shows nothing: " + "; ".join(found)
    if est is None:
        return Verdict(claim, backbone, "inconclusive", numbers, rule)
    return Verdict(claim, backbone, "inconclusive", numbers | dict(estimate=est.row()), rule,
                   est.seeds, est.provisional)  # fmt: skip


def _decide(claim: str, backbone: str, est: SeedEstimate, numbers: dict, shown: str,
            clears: bool, excludes: bool, quality: bool = True) -> Verdict:  # fmt: skip
    """The rule every claim shares: `reproduced` when the interval clears the claim,
    `not reproduced` when it excludes it, else `inconclusive` with the smallest effect the
    design could have detected; provisional (quality-based, fewer than MIN_SEEDS seeds)."""
    provisional = quality and est.provisional
    numbers = numbers | dict(estimate=est.row())
    seeds = f"seeds {list(est.seeds)}" if quality else "timing repeats"
    tail = f" ({seeds}" + (f"; provisional: fewer than {MIN_SEEDS} seeds)" if provisional
                           else ")")  # fmt: skip
    if clears:
        return Verdict(claim, backbone, "reproduced", numbers, f"{shown}: clears the claim{tail}",
                       est.seeds, provisional)  # fmt: skip
    if excludes:
        return Verdict(claim, backbone, "not reproduced", numbers,
                       f"{shown}: excludes the claim{tail}", est.seeds, provisional)  # fmt: skip
    if not quality:
        mde = "the timing repeats' spread sets the interval"
    elif math.isnan(est.mde):
        mde = "the smallest effect this design detects is unbounded (one seed)"
    else:
        unit = " (in log ratio)" if claim == "training" else ""
        mde = f"the smallest effect this design detects is {est.mde:.3g}{unit}"
    return Verdict(claim, backbone, "inconclusive", numbers,
                   f"{shown}: the interval holds the claim's edge; {mde}{tail}", est.seeds,
                   provisional)  # fmt: skip


def inference(backbone: str, regime: dict, noise: str | None) -> Verdict:
    """Decided at the smallest compute-bound batch (`regime`, see `inference_regime`): the
    speedup's interval over timing repeats against SPEEDUP_CLAIM."""
    est = SeedEstimate((), (regime["speedup"],), regime["speedup"], regime["speedup"],
                       regime["speedup_lo"], regime["speedup_hi"], math.nan)  # fmt: skip
    numbers = dict(regime, claim=SPEEDUP_CLAIM)
    bound = ("compute-bound" if regime["compute_bound"]
             else "the largest measured; no batch was compute-bound")  # fmt: skip
    where = f"batch {regime['batch']} ({bound})"
    shown = (f"speedup {regime['speedup']:.3g} [{regime['speedup_lo']:.3g}, "
             f"{regime['speedup_hi']:.3g}] at {where}; batch 1: "
             f"{regime['batch1_speedup']:.3g} ({regime['batch1_over_bound']:.2f} of the FLOP "
             f"bound {regime['bound']:.3g})")  # fmt: skip
    if not regime["compute_bound"]:
        return Verdict("inference", backbone, "inconclusive", numbers,
                       f"{shown}: the claim is decided at a compute-bound batch and none was "
                       "measured; extend the batch sweep")  # fmt: skip
    if regime["speedup_lo"] >= SPEEDUP_CLAIM and noise:
        return Verdict("inference", backbone, "inconclusive", numbers,
                       f"{shown}; but a run at noise level shows nothing: {noise}")  # fmt: skip
    return _decide("inference", backbone, est, numbers, shown,
                   regime["speedup_lo"] >= SPEEDUP_CLAIM, regime["speedup_hi"] < SPEEDUP_CLAIM,
                   quality=False)  # fmt: skip


def inference_regime(times: list[dict], bound: float) -> dict:
    """The batch the inference verdict is taken at, from a batch sweep: rows of `batch`,
    `vanilla_s` / `tpdiff_s` (seconds per batch: median, `_min`, `_max` over repeats).
    A batch is compute-bound when both arms' time per video changes by less than
    COMPUTE_BOUND from half that batch to it; the verdict's batch is the smallest such
    (else the largest measured, said so). Its speedup interval spans the repeats' extremes
    (vanilla's fastest over TPDiff's slowest, and the reverse)."""
    rows = sorted(times, key=lambda r: r["batch"])
    per = {r["batch"]: r for r in rows}
    bound_batches = []
    for r in rows:
        half = per.get(r["batch"] // 2)
        if half is None or r["batch"] == 1:
            continue
        change = max(abs(1 - (r[f"{a}_s"] / r["batch"]) / (half[f"{a}_s"] / half["batch"]))
                     for a in ("vanilla", "tpdiff"))  # fmt: skip
        r["change_from_half"] = change
        if change < COMPUTE_BOUND:
            bound_batches.append(r["batch"])
    chosen = per[bound_batches[0]] if bound_batches else rows[-1]
    first = per.get(1, rows[0])
    speed = lambda r: r["vanilla_s"] / r["tpdiff_s"]  # noqa: E731
    return dict(
        batch=chosen["batch"],
        compute_bound=bool(bound_batches),
        speedup=speed(chosen),
        speedup_lo=chosen["vanilla_s_min"] / chosen["tpdiff_s_max"],
        speedup_hi=chosen["vanilla_s_max"] / chosen["tpdiff_s_min"],
        bound=bound,
        over_bound=speed(chosen) / bound,
        batch1_speedup=speed(first),
        batch1_over_bound=speed(first) / bound,
        batch1_regime="compute-bound" if 2 in bound_batches else
        "overhead-bound: time per video still falls as the batch grows, so per-call "
        "overhead, not arithmetic, sets the batch-1 time",
    )  # fmt: skip


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


def end_level(curve: Curve) -> float:
    """The level a run reaches and holds: the median of its last 3 curve points."""
    return float(np.median(curve.q[-3:]))


def time_to_target(vanilla: dict[int, Curve],
                   tpdiff: dict[int, Curve]) -> tuple[dict, SeedEstimate]:  # fmt: skip
    """AlgoPerf-style time to target over paired seeds: the figures (a JSON-able dict) and
    the ratio's seed-aware estimate.

    The target is the worst vanilla seed's end level (`end_level`): every vanilla seed
    reaches it within its budget, so vanilla never misses by construction (a target at the
    median of vanilla's seeds would make one seed miss). Each seed's cost to reach it is
    interpolated on its curve; a TPDiff seed that never reaches it misses (+inf). Per seed,
    log(TPDiff's cost / vanilla's) (paired: the two share the seed's random numbers); the
    ratio is exp of their mean with the seed-aware interval (`seeds.paired`, a miss
    censored at TPDiff's budget for the lower end); the ratio of the medians is given
    beside. Convergence: each vanilla seed's improvement over the last third of its
    budget (its curve at 2/3 of the budget minus its last point), against the seed-to-seed
    spread of vanilla's end levels (None: one seed)."""
    seeds = sorted(set(vanilla) & set(tpdiff))
    if not seeds:
        raise ValueError("no seed has both a vanilla and a TPDiff curve")
    target = max(end_level(vanilla[s]) for s in seeds)
    van = {s: reach(vanilla[s].x, vanilla[s].q, target) for s in seeds}
    tp = {s: reach(tpdiff[s].x, tpdiff[s].q, target) for s in seeds}
    logs = [math.log(tp[s] / van[s]) if tp[s] is not None else math.inf for s in seeds]
    # a miss: TPDiff's whole budget was not enough, its ratio is above budget / vanilla's
    censor = [math.log(tpdiff[s].x[-1] / van[s]) if tp[s] is None else None for s in seeds]
    est = paired(logs, seeds, censor=censor).exp()
    t_costs = [tp[s] if tp[s] is not None else math.inf for s in seeds]
    ends = [end_level(vanilla[s]) for s in seeds]
    # the last third's improvement: from the curve at 2/3 of the budget to its last point
    gains = [float(np.interp(LAST_THIRD * vanilla[s].x[-1], vanilla[s].x, vanilla[s].q))
             - float(vanilla[s].q[-1]) for s in seeds]  # fmt: skip
    seed_sd = spread(ends)
    return dict(
        target=target, seeds=seeds, vanilla_to_target=[van[s] for s in seeds],
        tpdiff_to_target=t_costs, ratio=est.estimate, ratio_lo=est.lo, ratio_hi=est.hi,
        ratio_median=est.median, log_mde=est.mde, per_seed_ratio=list(est.values),
        ratio_of_medians=float(np.median(t_costs) / np.median([van[s] for s in seeds])),
        vanilla_end_levels=ends, vanilla_last_third_gain=gains, vanilla_seed_spread=seed_sd,
        converged=bool(float(np.median(gains)) < seed_sd) if seed_sd is not None else None,
    ), est  # fmt: skip


def training(backbone: str, vanilla: dict[int, Curve], tpdiff: dict[int, Curve],
             noise: list[str | None]) -> Verdict:  # fmt: skip
    t, est = time_to_target(vanilla, tpdiff)
    noisy = _noisy("training", backbone, t, noise, est)
    if noisy is not None:
        return noisy
    baseline = {
        True: "vanilla has converged (its last third improves by less than its seed spread)",
        False: "against vanilla's budget, not a converged baseline (its last third improves "
        "by more than its seed spread)",
        None: "against vanilla's budget (convergence is not judged on one seed)",
    }[t["converged"]]
    missed = [s for s, c in zip(t["seeds"], t["tpdiff_to_target"]) if c == math.inf]
    misses = (f"; TPDiff never reached the target {t['target']:.4g} at seeds {missed} (not "
              "reached: a miss counts as infinite)" if missed else "")  # fmt: skip
    shown = (f"cost-to-target ratio {est.estimate:.3g} [{est.lo:.3g}, {est.hi:.3g}] "
             f"(per seed {', '.join(f'{v:.3g}' for v in est.values)}; median "
             f"{est.median:.3g}) vs the claim <= {RATIO_CLAIM}{misses}; {baseline}")  # fmt: skip
    return _decide("training", backbone, est, t, shown, est.hi <= RATIO_CLAIM,
                   est.lo > RATIO_CLAIM)  # fmt: skip


def paired_gap(better: dict[int, Estimate], worse: dict[int, Estimate],
               seed_sd: float | None = None) -> SeedEstimate:  # fmt: skip
    """How much lower `better` is than `worse` (per seed: worse - better, paired). Two or
    more common seeds: the seed-aware interval. One: that seed's gap with a normal interval
    from both scores' bootstrap widths and, when known, the arm's seed-to-seed spread
    `seed_sd` (twice, for a difference): a provisional figure."""
    seeds = sorted(set(better) & set(worse))
    if not seeds:
        raise ValueError("no seed has both scores")
    gaps = [worse[s].value - better[s].value for s in seeds]
    if len(seeds) > 1:
        return paired(gaps, seeds)
    (s,) = seeds
    se2 = sum(((e.hi - e.lo) / (2 * Z90)) ** 2 for e in (better[s], worse[s]))
    if seed_sd is not None and math.isfinite(seed_sd):
        # the arm's seed spread holds video noise too: counted twice over, conservatively
        se2 += 2 * seed_sd**2
    half = Z90 * math.sqrt(se2)
    return SeedEstimate((s,), (gaps[0],), gaps[0], gaps[0], gaps[0] - half, gaps[0] + half,
                        (Z90 + 0.8416) * math.sqrt(se2))  # fmt: skip


def alignment(backbone: str, aligned: dict[int, Estimate], unaligned: dict[int, Estimate],
              seed_sd: float | None, noise: list[str | None]) -> Verdict:  # fmt: skip
    """Alignment lowers final FVD-md: the paired gap (without - with) must clear 0."""
    if not aligned or not unaligned:
        return Verdict("alignment", backbone, "inconclusive", {},
                       "not measured at this scale (no run without alignment)")  # fmt: skip
    est = paired_gap(aligned, unaligned, seed_sd)
    numbers = dict(aligned={str(s): asdict(e) for s, e in aligned.items()},
                   unaligned={str(s): asdict(e) for s, e in unaligned.items()},
                   seed_spread=seed_sd)  # fmt: skip
    noisy = _noisy("alignment", backbone, numbers, noise, est)
    if noisy is not None:
        return noisy
    shown = f"FVD-md lower with alignment by {est.estimate:.4g} [{est.lo:.4g}, {est.hi:.4g}]"
    return _decide("alignment", backbone, est, numbers, shown, est.lo > 0, est.hi < 0)


def renoise(backbone: str, on: dict[int, Estimate], off: dict[int, Estimate],
            noise: list[str | None]) -> Verdict:  # fmt: skip
    """Renoising lowers the motion gap: the paired gap (off - on) must clear 0."""
    est = paired_gap(on, off)
    numbers = dict(renoise_on={str(s): asdict(e) for s, e in on.items()},
                   renoise_off={str(s): asdict(e) for s, e in off.items()})  # fmt: skip
    noisy = _noisy("renoise", backbone, numbers, noise, est)
    if noisy is not None:
        return noisy
    shown = f"motion gap lower with renoising by {est.estimate:.3g} [{est.lo:.3g}, {est.hi:.3g}]"
    return _decide("renoise", backbone, est, numbers, shown, est.lo > 0, est.hi < 0)


def wilson_interval(share: float, n: int, z: float = Z90) -> tuple[float, float]:
    """The Wilson score interval (90 % by default) of a share measured on n trials."""
    return wilson_low(share, n, z), 1.0 - wilson_low(1.0 - share, n, z)
