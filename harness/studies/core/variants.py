"""Variants against the paper setting: `better`, `worse` or `within noise`, and how much a
`within noise` could have seen.

Every variant is trained at seeds the paper setting also has (same init, data order and
sampling noise), so each shared seed s gives a paired gap on a metric,

    d_s = variant_s - paper_s        (negated for a metric where higher is better),

so that d > 0 is always worse. The gap's standard error:

- two or more shared seeds: sd(d) / sqrt(S), Student t with S - 1 degrees of freedom
  (`seeds.paired`: the d_s carry every source of noise that moves with the seed); where the
  seeds' gaps agree exactly (shares of n can), the videos' noise instead: both scores'
  bootstrap widths, averaged over the seeds, still read on S - 1 degrees of freedom (on
  purpose the wider choice: exact agreement of a few seeds can be the discreteness of a
  share, not certainty);
- one shared seed: normal, from both scores' bootstrap widths plus twice the paper
  setting's seed variance (its seed-to-seed spread holds video noise too, so this errs wide).

Each tested row has a two-sided p-value. A table of m variants on one metric is m tests:
at 90 % each, about 0.1 m of them would be called by chance. So the p-values of one
metric are Holm-adjusted (step-down: the i-th smallest p is multiplied by m - i + 1, then
made non-decreasing), and a row is `better` / `worse` when its adjusted p is below
1 - LEVEL, else `within noise`. The smallest effect a row could have been called at (its
`mde`) is taken at Holm's strictest threshold, a = (1 - LEVEL) / m, two-sided, at POWER:
(q(1 - a / 2) + q(POWER)) x se, in the metric's units and as a share of the paper
setting's mean score. That threshold does not depend on where the row's observed p ranks:
a gap of the mde would be called whatever the other rows show (a row with a real effect
of that size would rank first, and be compared with a = (1 - LEVEL) / m). A row whose
variant is at noise level is not tested: `within noise`, with the reason and its mde at
the unadjusted level, and it does not count in m.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from harness.studies.core.seeds import LEVEL, MIN_SEEDS, POWER

Z90 = float(stats.norm.ppf((1 + LEVEL) / 2))

RULE = (
    "per seed shared with the paper setting, d = variant - paper (d > 0 worse; negated where "
    "higher is better); the mean gap's standard error is Student t over the seeds' d (2 or "
    "more seeds) or, at one seed, normal from both bootstrap intervals and twice the paper "
    "setting's seed variance; the two-sided p-values of one metric are Holm-adjusted over "
    f"its rows; `better` / `worse` when the adjusted p < {1 - LEVEL:.2f}, else `within "
    "noise` with the smallest effect the row could have been called at (Holm's strictest "
    f"threshold {1 - LEVEL:.2f} / m, two-sided, {POWER:.0%} power), in the metric's units and "
    "as a share of the paper setting's score; a variant at noise level is `within noise` "
    "and not tested"
)


@dataclass(frozen=True)
class Gap:
    """A variant's paired gap to the paper setting on one metric (d > 0: worse)."""

    metric: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]  # the per-seed gaps d_s
    gap: float  # their mean
    se: float  # its standard error
    df: int | None  # Student t degrees of freedom; None: normal (one seed)
    paper: float  # the paper setting's mean score over all its seeds

    @property
    def p(self) -> float:
        """Two-sided p-value of no gap."""
        if self.se == 0:
            return 0.0 if self.gap != 0 else 1.0
        z = abs(self.gap) / self.se
        tail = stats.norm.sf(z) if self.df is None else stats.t.sf(z, self.df)
        return float(min(1.0, 2 * tail))

    def quantile(self, q: float) -> float:
        return float(stats.norm.ppf(q) if self.df is None else stats.t.ppf(q, self.df))

    def interval(self, alpha: float = 1 - LEVEL) -> tuple[float, float]:
        half = self.quantile(1 - alpha / 2) * self.se
        return self.gap - half, self.gap + half

    def mde(self, alpha: float = 1 - LEVEL) -> float:
        """The smallest |gap| called at two-sided `alpha` with POWER."""
        return (self.quantile(1 - alpha / 2) + self.quantile(POWER)) * self.se


def gap(metric: str, variant: dict[int, tuple[float, float, float]],
        paper: dict[int, tuple[float, float, float]], paper_sd: float | None,
        higher_is_better: bool = False) -> Gap:  # fmt: skip
    """The paired gap of `variant` to `paper` (per seed: (value, lo, hi) at 90 %) on
    `metric`. `paper_sd`: the paper setting's seed-to-seed spread (used at one seed)."""
    seeds = sorted(set(variant) & set(paper))
    if not seeds:
        raise ValueError(f"{metric}: the variant shares no seed with the paper setting "
                         f"(variant {sorted(variant)}, paper {sorted(paper)})")  # fmt: skip
    sign = -1.0 if higher_is_better else 1.0
    d = [sign * (variant[s][0] - paper[s][0]) for s in seeds]
    if any(math.isnan(v) for v in d):
        raise ValueError(f"{metric}: a per-seed score is NaN ({dict(zip(seeds, d))})")
    mean_paper = float(np.mean([v[0] for v in paper.values()]))
    # each seed's video noise: both scores' bootstrap widths
    video = [sum(((hi - lo) / (2 * Z90)) ** 2 for _, lo, hi in (variant[s], paper[s]))
             for s in seeds]  # fmt: skip
    if len(seeds) > 1:
        se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
        if se == 0:  # the seeds agree exactly (e.g. shares of n): no less than the videos' noise
            se = math.sqrt(sum(video)) / len(d)
        return Gap(metric, tuple(seeds), tuple(d), float(np.mean(d)), se, len(d) - 1, mean_paper)
    (s,) = seeds
    var = video[0]
    if paper_sd is not None and math.isfinite(paper_sd):
        var += 2 * paper_sd**2
    return Gap(metric, (s,), tuple(d), d[0], math.sqrt(var), None, mean_paper)


def holm(pvalues: list[float]) -> tuple[list[float], list[float]]:
    """Holm's step-down adjustment of `pvalues` at family level 1 - LEVEL: (adjusted
    p-values, the level each p was compared with), both in the input's order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, levels = [0.0] * m, [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
        levels[i] = (1 - LEVEL) / (m - rank)
    return adjusted, levels


@dataclass(frozen=True)
class Call:
    """One row's verdict on one metric."""

    metric: str
    verdict: str  # better | worse | within noise
    why: str
    gap: float | None = None  # mean paired gap, d > 0 worse
    lo: float | None = None  # its 90 % interval
    hi: float | None = None
    p: float | None = None
    p_holm: float | None = None
    mde: float | None = None  # the smallest |gap| this row could have been called at
    mde_share: float | None = None  # mde / the paper setting's mean score
    seeds: tuple[int, ...] = ()
    provisional: bool = True  # fewer than MIN_SEEDS shared seeds

    def row(self) -> dict:
        return asdict(self)


def decide(metric: str, rows: list[tuple[Gap, str | None]]) -> list[Call]:
    """The verdicts of one metric's rows, each (its Gap, why its variant is at noise level
    or None). Holm runs over the tested rows; each tested row's mde is at Holm's strictest
    threshold (1 - LEVEL) / m, whatever its rank. A row at noise level is `within noise`
    and not tested (its mde is then at the unadjusted level)."""
    tested = [i for i, (_, noise) in enumerate(rows) if noise is None]
    adjusted, _ = holm([rows[i][0].p for i in tested])
    found = dict(zip(tested, adjusted))
    strictest = (1 - LEVEL) / max(len(tested), 1)
    calls = []
    for i, (g, noise) in enumerate(rows):
        p_holm = found.get(i)
        lo, hi = g.interval()
        mde = g.mde(1 - LEVEL if p_holm is None else strictest)
        share = mde / abs(g.paper) if g.paper else None
        called = p_holm is not None and p_holm < 1 - LEVEL
        verdict = ("worse" if g.gap > 0 else "better") if called else "within noise"
        per = ", ".join(f"{v:.4g}" for v in g.values)
        why = f"{metric} gap {g.gap:+.4g} [{lo:+.4g}, {hi:+.4g}] (per seed {per})"
        if noise is not None:
            why += f": not tested, {noise}"
        else:
            why += f", p {g.p:.3g}, Holm-adjusted {p_holm:.3g} over {len(tested)} rows"
        if not called:
            why += f"; smallest effect this row could have seen {mde:.4g}" + (
                f" ({share:.0%} of the paper setting's {g.paper:.4g})" if share else ""
            )
        calls.append(Call(metric, verdict, why, g.gap, lo, hi, g.p, p_holm, mde, share,
                          g.seeds, len(g.seeds) < MIN_SEEDS))  # fmt: skip
    return calls


def expected_false_calls(m: int) -> float:
    """How many of m unadjusted 90 % tests of true nulls would be called by chance."""
    return m * (1 - LEVEL)
