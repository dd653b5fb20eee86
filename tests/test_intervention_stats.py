"""Statistics of interventions against textbook reference values; every result is strict JSON."""

import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.stats

from vptlens.interventions import stats
from vptlens.interventions.metrics import TimeToEvent

Z95 = scipy.stats.norm.ppf(0.975)


def strict(result) -> dict:
    d = dataclasses.asdict(result)
    json.dumps(d, allow_nan=False)  # raises on NaN or infinity
    return d


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_rates_match_newcombe_1998_table_i(x, n, low, high):
    r = stats.rate(x, n)
    assert r.estimate == pytest.approx(x / n)
    assert (round(r.low, 4), round(r.high, 4)) == (low, high)
    strict(r)


def test_a_rate_of_nothing_is_null_with_a_reason():
    r = stats.rate(0, 0)
    assert r.estimate is None and r.low is None and r.high is None and "0/0" in r.reason
    strict(r)
    with pytest.raises(ValueError, match="successes <= n"):
        stats.rate(3, 2)


def test_newcombe_paired_interval_matches_the_papers_worked_example():
    # Newcombe (1998) Stat Med 17:2635, paired example (a, b, c, d) = (12, 9, 2, 21): difference 7/44 = 0.1591,
    # method 10: 0.0112 to 0.2954 (recomputed here from the formula, and the value published for method 10).
    low, high = stats.newcombe_paired_interval(12, 9, 2, 21)
    assert (round(low, 4), round(high, 4)) == (0.0112, 0.2954)
    # no discordant pairs: the interval brackets 0; a one-sided table stays within [-1, 1]
    low, high = stats.newcombe_paired_interval(50, 0, 0, 0)
    assert low < 0 < high
    low, high = stats.newcombe_paired_interval(0, 10, 0, 0)
    assert -1 <= low <= high <= 1 and high == 1.0


def test_paired_binary_builds_the_table_from_seeds_and_runs_exact_mcnemar():
    # b = 1 seed where only the treatment succeeded, c = 9 where only the control did
    treatment = [True] * 5 + [True] + [False] * 9 + [False] * 5
    control = [True] * 5 + [False] + [True] * 9 + [False] * 5
    r = stats.paired_binary(treatment, control)
    assert (r.n_pairs, r.both, r.treatment_only, r.control_only, r.neither) == (20, 5, 1, 9, 5)
    assert r.p_value == pytest.approx(2 * scipy.stats.binom.cdf(1, 10, 0.5)) and r.p_value == pytest.approx(0.021484375)
    assert r.difference == pytest.approx((1 - 9) / 20)
    assert (r.low, r.high) == pytest.approx(stats.newcombe_paired_interval(5, 1, 9, 5))
    assert r.treatment.estimate == pytest.approx(6 / 20) and r.control.estimate == pytest.approx(14 / 20)
    strict(r)
    # the paper's table, read as treatment = first measurement
    t = [True] * 21 + [False] * 23
    c = [True] * 12 + [False] * 9 + [True] * 2 + [False] * 21
    r = stats.paired_binary(t, c)
    assert round(r.difference, 4) == 0.1591 and (round(r.low, 4), round(r.high, 4)) == (0.0112, 0.2954)
    assert r.p_value == pytest.approx(2 * scipy.stats.binom.cdf(2, 11, 0.5))


def test_paired_binary_without_discordant_pairs_or_pairs_is_null():
    r = stats.paired_binary([True, False, True], [True, False, True])
    assert r.p_value is None and "discordant" in r.p_value_reason and r.difference == 0.0
    strict(r)
    r = stats.paired_binary([], [])
    assert r.difference is None and r.p_value is None and r.reason == "no pairs"
    strict(r)
    with pytest.raises(ValueError, match="paired"):
        stats.paired_binary([True], [True, False])


def test_kaplan_meier_matches_a_hand_computation():
    # times 1, 2, 2+, 3, 4+ (+: censored). At risk 5, 4, 2 at the events 1, 2, 3:
    # S = 4/5 = 0.8, 0.8 * 3/4 = 0.6, 0.6 * 1/2 = 0.3, and 0.3 after the censoring at 4
    outcomes = [TimeToEvent(1, True), TimeToEvent(2, True), TimeToEvent(2, False), TimeToEvent(3, True),
                TimeToEvent(4, False)]  # fmt: skip
    km = stats.kaplan_meier(outcomes)
    assert (km.n, km.n_events) == (5, 3)
    assert km.times == (1.0, 2.0, 3.0, 4.0)
    assert km.survival == pytest.approx((0.8, 0.6, 0.3, 0.3))
    assert km.median == 3.0
    # log-log interval by hand: Greenwood sum g = sum d / (n (n - d)); S ** exp(+-z sqrt(g) / |log S|)
    for i, g in enumerate([1 / 20, 1 / 20 + 1 / 12, 1 / 20 + 1 / 12 + 1 / 2]):
        s = km.survival[i]
        theta = math.exp(Z95 * math.sqrt(g) / abs(math.log(s)))
        assert km.low[i] == pytest.approx(s**theta) and km.high[i] == pytest.approx(s ** (1 / theta))
    strict(km)


def test_kaplan_meier_edges_are_null_not_nan():
    km = stats.kaplan_meier([TimeToEvent(127, False)] * 4)  # no hit in any episode
    assert km.survival == (1.0,) and km.median is None and "not reached" in km.median_reason
    strict(km)
    km = stats.kaplan_meier([TimeToEvent(1, True), TimeToEvent(2, True)])  # S reaches 0: log-log undefined there
    assert km.survival == pytest.approx((0.5, 0.0)) and km.low[1] is None and km.median == 1.0
    strict(km)
    assert stats.kaplan_meier([]).reason == "no episodes"


def test_log_rank_matches_a_hand_computation():
    # treatment: events at 1, 3, censored at 4; control: events at 2, 5, 6. Per event time (at risk n, treatment
    # at risk n1, deaths d, treatment deaths d1): E1 = d n1 / n, V = d (n1/n)(1 - n1/n)(n - d)/(n - 1)
    #   t=1: n 6, n1 3, d1 1 -> E 0.5, V 0.25;  t=2: n 5, n1 2, d1 0 -> E 0.4, V 0.24
    #   t=3: n 4, n1 2, d1 1 -> E 0.5, V 0.25;  t=5, 6: n1 0 -> E 0, V 0
    # O1 - E1 = 2 - 1.4 = 0.6, V = 0.74: Z = 0.6 / sqrt(0.74), chi-square(1) = 0.36 / 0.74
    treatment = [TimeToEvent(1, True), TimeToEvent(3, True), TimeToEvent(4, False)]
    control = [TimeToEvent(t, True) for t in (2, 5, 6)]
    r = stats.log_rank(treatment, control)
    assert r.statistic == pytest.approx(0.6 / math.sqrt(0.74))
    assert r.p_value == pytest.approx(scipy.stats.chi2.sf(0.36 / 0.74, 1))
    assert (r.n_treatment, r.n_control, r.events_treatment, r.events_control) == (3, 3, 2, 3)
    strict(r)
    r = stats.log_rank([TimeToEvent(9, False)] * 3, [TimeToEvent(9, False)] * 3)
    assert r.p_value is None and "censored" in r.reason
    strict(r)


def test_bootstrap_mean_covers_the_truth_and_is_reproducible():
    x = np.random.default_rng(0).normal(3.0, 1.0, size=2000)
    a = stats.bootstrap_mean(list(x) + [None], n_resamples=2000, seed=7)
    assert a.low < 3.0 < a.high and a.mean == pytest.approx(x.mean())
    assert a.high - a.low == pytest.approx(2 * Z95 / math.sqrt(2000), rel=0.15)
    assert (a.n, a.n_missing) == (2000, 1)
    assert stats.bootstrap_mean(list(x), n_resamples=2000, seed=7) == dataclasses.replace(a, n_missing=0)
    assert stats.bootstrap_mean(list(x), n_resamples=2000, seed=8).low != a.low
    strict(a)
    for values, reason in (([], "no values"), ([2.0], "one value"), ([1.0, 1.0, 1.0], "degenerate")):
        r = stats.bootstrap_mean(values)
        assert r.low is None and reason in r.reason
        strict(r)
    with pytest.raises(ValueError, match="finite"):
        stats.bootstrap_mean([1.0, math.inf])


def test_bootstrap_paired_difference_uses_the_pairs():
    rng = np.random.default_rng(1)
    control = rng.normal(0.0, 5.0, size=200)  # large seed-to-seed spread, shared by both conditions
    treatment = control + 0.5 + rng.normal(0.0, 0.1, size=200)
    r = stats.bootstrap_paired_difference(list(treatment) + [1.0], list(control) + [None], n_resamples=2000)
    assert (r.n, r.n_missing) == (200, 1)
    assert r.mean == pytest.approx(np.mean(treatment - control)) and r.low < 0.5 < r.high and r.high - r.low < 0.1
    strict(r)
    with pytest.raises(ValueError, match="treatment vs"):
        stats.bootstrap_paired_difference([1.0], [])


def test_holm_matches_hand_adjusted_values():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    h = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert h.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert h.reject == (True, False, False, True)
    strict(h)
    h = stats.holm([0.01, None, 0.04])  # the untested one counts as p = 1 in a family of 3
    assert h.adjusted[0] == pytest.approx(0.03) and h.adjusted[1] is None and h.reject == (True, False, False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([1.5])


def test_fraction_significant_counts_and_intervals():
    f = stats.fraction_significant([0.001, 0.2, 0.03, None], alpha=0.05)
    assert (f.n_significant, f.n, f.n_untested) == (2, 4, 1)
    assert f.rate == stats.rate(2, 4)
    strict(f)


def test_dose_response_trend_and_levels():
    strengths = [s for s in (0.0, 1.0, 2.0, 4.0) for _ in range(10)]
    hit = [i < k for k in (1, 4, 7, 10) for i in range(10)]  # 10%, 40%, 70%, 100% of episodes
    d = stats.dose_response(strengths, hit, kind="binary")
    assert [lv.strength for lv in d.levels] == [0.0, 1.0, 2.0, 4.0]
    assert [lv.rate.estimate for lv in d.levels] == pytest.approx([0.1, 0.4, 0.7, 1.0])
    assert d.spearman_rho == pytest.approx(scipy.stats.spearmanr(strengths, hit).statistic)
    assert d.spearman_rho > 0 and d.p_value < 0.001
    strict(d)
    flat = stats.dose_response(strengths, [1.0] * 40, kind="continuous")
    assert flat.p_value is None and "constant" in flat.reason and flat.levels[0].mean.mean == 1.0
    strict(flat)
    distances = [s + 0.1 * i if i else None for s in (0.0, 1.0) for i in range(5)]
    d = stats.dose_response([0.0] * 5 + [1.0] * 5, distances, kind="continuous")
    assert d.n == 8 and d.levels[0].mean.n_missing == 1 and d.spearman_rho > 0
    with pytest.raises(ValueError, match="Kaplan-Meier"):
        stats.dose_response([], [], kind="time_to_event")
