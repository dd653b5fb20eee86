"""Statistics of intervention outcomes, from scipy.stats and statsmodels: each function returns a frozen result.

Results are strict-JSON-able (`dataclasses.asdict` then `json.dumps(..., allow_nan=False)`): a value that does not
exist (a rate of 0/0, McNemar without discordant pairs, an interval the formula leaves undefined) is None, with
the reason in a `*reason` field beside it. Intervals are two-sided at `confidence` (default 0.95).

Paired comparisons take the two conditions' outcomes aligned by seed: `treatment[i]` and `control[i]` are the
same seed (the runner gives every cell the same seeds), so each pair shares its world and sampling noise.
"""

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from vptlens.interventions.metrics import TimeToEvent


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------------ rates


@dataclasses.dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson score interval."""

    successes: int
    n: int
    estimate: float | None
    low: float | None
    high: float | None
    confidence: float = 0.95
    reason: str | None = None


def rate(successes: int, n: int, confidence: float = 0.95) -> Rate:
    """successes / n with a Wilson score interval (statsmodels `proportion_confint(method="wilson")`)."""
    if not 0 <= successes <= n:
        raise ValueError(f"rate: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return Rate(0, 0, None, None, None, confidence, "no episodes (0/0)")
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return Rate(int(successes), int(n), successes / n, float(low), float(high), confidence)


# ------------------------------------------------------------------------------------------------ paired binary


@dataclasses.dataclass(frozen=True)
class PairedBinary:
    """A binary outcome under treatment and control on the same seeds: the paired 2x2 table, both rates, the
    difference treatment - control with Newcombe's interval, and the exact McNemar test."""

    n_pairs: int
    both: int
    treatment_only: int
    control_only: int
    neither: int
    treatment: Rate
    control: Rate
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    """Exact McNemar (two-sided binomial test on the discordant pairs)."""
    confidence: float = 0.95
    reason: str | None = None
    p_value_reason: str | None = None


def newcombe_paired_interval(
    both: int, treatment_only: int, control_only: int, neither: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for the paired difference of proportions (b - c) / n, Newcombe (1998) method 10.

    Newcombe RG, "Improved confidence intervals for the difference between binomial proportions based on paired
    data", Stat Med 17:2635-2650 (1998), method 10: Wilson score intervals of both marginal proportions joined by
    square-and-add, with the correlation phi of the table (numerator AD - BC shrunk by N/2 towards 0, as in the
    paper; phi = 0 when a margin is empty). statsmodels has the unpaired version only. Worked example
    (12, 9, 2, 21): 0.1591, 95% CI 0.0112 to 0.2954.
    """
    a, b, c, d = both, treatment_only, control_only, neither
    n = a + b + c + d
    if n == 0:
        raise ValueError("newcombe_paired_interval: the table is empty")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = proportion_confint(a + b, n, alpha=1 - confidence, method="wilson")
    l2, u2 = proportion_confint(a + c, n, alpha=1 - confidence, method="wilson")
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    ad_bc = a * d - b * c
    numerator = ad_bc - n / 2 if ad_bc > n / 2 else min(ad_bc, 0)
    phi = numerator / math.sqrt(margins) if margins > 0 else 0.0
    diff = p1 - p2
    lower = diff - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    upper = diff + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return max(-1.0, lower), min(1.0, upper)


def paired_binary(
    treatment: Sequence[bool] | np.ndarray, control: Sequence[bool] | np.ndarray, confidence: float = 0.95
) -> PairedBinary:
    """Compare a binary outcome between treatment and control, paired by seed (see the module's docstring).

    Exact McNemar (statsmodels `mcnemar(table, exact=True)`) for the test, Newcombe's method 10 for the interval
    of the difference in rates. Without discordant pairs McNemar has no information: p_value is None.
    """
    t, c = np.asarray(treatment, bool), np.asarray(control, bool)
    if t.shape != c.shape or t.ndim != 1:
        raise ValueError(f"paired_binary: treatment and control must be paired 1-d sequences, got {t.shape}, {c.shape}")
    a, b, cc, d = (int(np.sum(x)) for x in (t & c, t & ~c, ~t & c, ~t & ~c))
    n = len(t)
    rates = rate(a + b, n, confidence), rate(a + cc, n, confidence)
    if n == 0:
        why = "no pairs"
        return PairedBinary(0, 0, 0, 0, 0, *rates, None, None, None, None, confidence, why, why)
    low, high = newcombe_paired_interval(a, b, cc, d, confidence)
    if b + cc == 0:
        p_value, p_reason = None, "no discordant pairs: every seed had the same outcome in both conditions"
    else:
        p_value, p_reason = float(mcnemar([[a, b], [cc, d]], exact=True).pvalue), None
    return PairedBinary(n, a, b, cc, d, *rates, (b - cc) / n, low, high, p_value, confidence, None, p_reason)


# ------------------------------------------------------------------------------------------------ time to event


@dataclasses.dataclass(frozen=True)
class KaplanMeier:
    """The Kaplan-Meier survival curve S(t) = P(no event by step t), a step function changing at `times`."""

    n: int
    n_events: int
    times: tuple[float, ...]
    """The distinct times observed (events and censorings), ascending."""
    survival: tuple[float, ...]
    """S just after each time."""
    low: tuple[float | None, ...]
    """Pointwise log-log (exponential Greenwood) interval; None where the formula is undefined (S = 0 or 1)."""
    high: tuple[float | None, ...]
    median: float | None
    """The first time with S <= 0.5, None when the curve stays above 0.5 (see median_reason)."""
    confidence: float = 0.95
    reason: str | None = None
    median_reason: str | None = None


def _censored(outcomes: Sequence[TimeToEvent]) -> scipy.stats.CensoredData:
    return scipy.stats.CensoredData(
        uncensored=[o.steps for o in outcomes if o.observed], right=[o.steps for o in outcomes if not o.observed]
    )


def kaplan_meier(outcomes: Sequence[TimeToEvent], confidence: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier estimate of the survival function of right-censored times to event, with pointwise intervals
    (scipy `ecdf` on `CensoredData`, its survival function's `confidence_interval(method="log-log")`)."""
    n, n_events = len(outcomes), sum(o.observed for o in outcomes)
    if n == 0:
        return KaplanMeier(0, 0, (), (), (), (), None, confidence, "no episodes", "no episodes")
    sf = scipy.stats.ecdf(_censored(outcomes)).sf
    with warnings.catch_warnings():  # "undefined at some observations": S = 0 or 1 there; reported as None
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = sf.confidence_interval(confidence, method="log-log")
    survival = tuple(float(s) for s in sf.probabilities)
    below = [float(t) for t, s in zip(sf.quantiles, survival) if s <= 0.5]
    return KaplanMeier(
        n=n,
        n_events=int(n_events),
        times=tuple(float(t) for t in sf.quantiles),
        survival=survival,
        low=tuple(_finite(x) for x in ci.low.probabilities),
        high=tuple(_finite(x) for x in ci.high.probabilities),
        median=below[0] if below else None,
        confidence=confidence,
        median_reason=None if below else "not reached: the survival stays above 0.5",
    )


@dataclasses.dataclass(frozen=True)
class LogRank:
    """The log-rank test of equal survival in two conditions (censoring allowed)."""

    n_treatment: int
    n_control: int
    events_treatment: int
    events_control: int
    statistic: float | None
    """(O - E) / sqrt(V) of the treatment's events: negative when treatment's events come later than control's."""
    p_value: float | None
    reason: str | None = None


def log_rank(treatment: Sequence[TimeToEvent], control: Sequence[TimeToEvent]) -> LogRank:
    """Two-sided log-rank test between two conditions' times to event (scipy `logrank`)."""
    counts = (len(treatment), len(control), sum(o.observed for o in treatment), sum(o.observed for o in control))
    if not (counts[0] and counts[1]):
        return LogRank(*counts, None, None, "a condition has no episodes")
    if counts[2] + counts[3] == 0:
        return LogRank(*counts, None, None, "no events in either condition: every time is censored")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy.stats.logrank(_censored(treatment), _censored(control))
    stat, p = _finite(res.statistic), _finite(res.pvalue)
    reason = None if stat is not None and p is not None else "zero variance: no time with both conditions at risk"
    return LogRank(*counts, stat, p, reason)


# ------------------------------------------------------------------------------------------------ means


@dataclasses.dataclass(frozen=True)
class MeanInterval:
    """A mean over episodes (or of paired differences) with an episode-level BCa bootstrap interval."""

    n: int
    n_missing: int
    """Values (or pairs) left out because they were None (a metric undefined for that episode)."""
    mean: float | None
    low: float | None
    high: float | None
    confidence: float = 0.95
    n_resamples: int = 9999
    seed: int = 0
    reason: str | None = None


def _bootstrap(values: Sequence[float | None], n_missing: int, confidence, n_resamples, seed) -> MeanInterval:
    x = np.asarray(values, float)
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap: values must be finite numbers or None (missing)")
    args = (len(x), n_missing)
    if len(x) == 0:
        return MeanInterval(*args, None, None, None, confidence, n_resamples, seed, "no values")
    mean = float(x.mean())
    if len(x) < 2 or np.all(x == x[0]):
        why = "one value" if len(x) < 2 else "every value is the same: the bootstrap distribution is degenerate"
        return MeanInterval(*args, mean, None, None, confidence, n_resamples, seed, why)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate BCa interval comes back NaN, reported below
        res = scipy.stats.bootstrap(
            (x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="BCa", rng=seed
        )
    low, high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
    why = None if low is not None and high is not None else "the BCa interval is undefined for these values"
    return MeanInterval(*args, mean, low, high, confidence, n_resamples, seed, why)


def bootstrap_mean(
    values: Sequence[float | None] | np.ndarray, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> MeanInterval:
    """Mean of a continuous (or count) metric over episodes with a BCa bootstrap interval (scipy `bootstrap`,
    resampling episodes, seeded: the same seed gives the same interval). None values are dropped and counted."""
    kept = [v for v in values if v is not None]
    return _bootstrap(kept, len(values) - len(kept), confidence, n_resamples, seed)


def bootstrap_paired_difference(
    treatment: Sequence[float | None] | np.ndarray,
    control: Sequence[float | None] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> MeanInterval:
    """Mean paired difference treatment - control (paired by seed) with a BCa bootstrap interval over pairs.

    A pair with a None on either side is dropped and counted in `n_missing`.
    """
    if len(treatment) != len(control):
        raise ValueError(f"bootstrap_paired_difference: {len(treatment)} treatment vs {len(control)} control values")
    diffs = [t - c for t, c in zip(treatment, control) if t is not None and c is not None]
    return _bootstrap(diffs, len(treatment) - len(diffs), confidence, n_resamples, seed)


# ------------------------------------------------------------------------------------------------ families


@dataclasses.dataclass(frozen=True)
class Holm:
    """Holm's step-down correction of a family of p-values (family-wise error rate <= alpha)."""

    p_values: tuple[float | None, ...]
    adjusted: tuple[float | None, ...]
    reject: tuple[bool, ...]
    alpha: float = 0.05


def holm(p_values: Sequence[float | None], alpha: float = 0.05) -> Holm:
    """Holm-adjusted p-values (statsmodels `multipletests(method="holm")`).

    A None p-value (a test that had no information, e.g. McNemar without discordant pairs) stays None, is not
    rejected, and counts in the family's size as p = 1: the family is every test planned, which is conservative.
    """
    p = [1.0 if x is None else float(x) for x in p_values]
    if any(not 0 <= x <= 1 for x in p):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {list(p_values)}")
    if not p:
        return Holm((), (), (), alpha)
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
    return Holm(
        p_values=tuple(None if x is None else float(x) for x in p_values),
        adjusted=tuple(None if x is None else float(a) for x, a in zip(p_values, adjusted)),
        reject=tuple(bool(r) and x is not None for x, r in zip(p_values, reject)),
        alpha=alpha,
    )


@dataclasses.dataclass(frozen=True)
class FractionSignificant:
    """How many interventions of a family moved behaviour: adjusted p < alpha, as a rate with its interval."""

    n_significant: int
    n: int
    n_untested: int
    """Interventions whose p-value is None (counted in n, as not significant)."""
    alpha: float
    rate: Rate


def fraction_significant(
    adjusted_p_values: Sequence[float | None], alpha: float = 0.05, confidence: float = 0.95
) -> FractionSignificant:
    """The fraction of interventions with an adjusted p-value (e.g. `holm(...).adjusted`) below alpha, with a
    Wilson interval; an untested one (None) counts as not moving behaviour."""
    n_sig = sum(p is not None and p < alpha for p in adjusted_p_values)
    n = len(adjusted_p_values)
    n_untested = sum(p is None for p in adjusted_p_values)
    return FractionSignificant(n_sig, n, n_untested, alpha, rate(n_sig, n, confidence))


# ------------------------------------------------------------------------------------------------ dose-response


@dataclasses.dataclass(frozen=True)
class DoseLevel:
    """One strength of a sweep: its episodes' rate (binary metrics) or mean (counts, continuous)."""

    strength: float
    n: int
    rate: Rate | None
    mean: MeanInterval | None


@dataclasses.dataclass(frozen=True)
class DoseResponse:
    """Per strength the outcome with its interval, and a monotone trend test over episodes: Spearman's rank
    correlation between strength and outcome (scipy `spearmanr`; ties allowed, so it fits binary outcomes too,
    and unlike a logistic slope it stays defined when high strengths always succeed)."""

    kind: str
    levels: tuple[DoseLevel, ...]
    n: int
    spearman_rho: float | None
    p_value: float | None
    reason: str | None = None


def dose_response(
    strengths: Sequence[float] | np.ndarray,
    outcomes: Sequence[bool | int | float | None] | np.ndarray,
    kind: str = "binary",
    confidence: float = 0.95,
    seed: int = 0,
) -> DoseResponse:
    """Dose-response of one metric over a strength sweep, one entry per episode in `strengths` and `outcomes`.

    `kind` is the metric's kind: "binary" gives Wilson rates per strength, "count" or "continuous" bootstrap
    means (None outcomes dropped). The trend test is Spearman's rho over the episodes, two-sided.
    """
    if kind not in ("binary", "count", "continuous"):
        raise ValueError(f"dose_response: kind {kind!r} unsupported; use binary, count or continuous (for times to "
                         "event, compare Kaplan-Meier curves per strength)")  # fmt: skip
    if len(strengths) != len(outcomes):
        raise ValueError(f"dose_response: {len(strengths)} strengths vs {len(outcomes)} outcomes")
    pairs = [(float(s), float(o)) for s, o in zip(strengths, outcomes) if o is not None]
    levels = []
    for s in sorted({float(s) for s in strengths}):
        ys = [y for x, y in pairs if x == s]
        n = sum(float(x) == s for x in strengths)
        if kind == "binary":
            levels.append(DoseLevel(s, n, rate(int(sum(ys)), len(ys), confidence), None))
        else:
            level_outcomes = [o for x, o in zip(strengths, outcomes) if float(x) == s]
            levels.append(DoseLevel(s, n, None, bootstrap_mean(level_outcomes, confidence, seed=seed)))
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rho = p = None
    if len(pairs) < 3:
        reason = "fewer than 3 episodes with an outcome"
    elif np.all(x == x[0]) or np.all(y == y[0]):
        reason = "constant strength or outcome: the rank correlation is undefined"
    else:
        res = scipy.stats.spearmanr(x, y)
        rho, p = _finite(res.statistic), _finite(res.pvalue)
        reason = None if rho is not None and p is not None else "the rank correlation is undefined"
    return DoseResponse(kind, tuple(levels), len(pairs), rho, p, reason)
