"""Traffic-split statistics: sample sizes are re-derived independently, verdicts pinned.

The recomputations here use scipy.stats' own distributions over whole arrays (slow
but obviously right), not the module's fast scalars, so a mistake in the fast path
cannot hide behind itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from conformance.stats import (
    SplitResult,
    binomial_acceptance_region,
    check_split,
    sample_size,
    split_power,
)

ALPHA = BETA = 1e-4
SHIFT = 0.05
V1, V2, V3 = "reviews-v1", "reviews-v2", "reviews-v3"
NINETY_TEN = {V1: 90, V2: 10}
THREE_WAY = {V1: 50, V2: 30, V3: 20}


# -- independent recomputation -----------------------------------------------------------


def region_by_definition(n: int, p: float, alpha: float) -> tuple[int, int]:
    """binomtest's two-sided p-value is the mass of outcomes no likelier than k (1e-7 slack)."""
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    ordered = np.sort(pmf)
    cumulative = np.cumsum(ordered)
    at_most = np.searchsorted(ordered, pmf * (1 + 1e-7), side="right")
    pvalues = np.where(at_most > 0, cumulative[np.maximum(at_most - 1, 0)], 0.0)
    accepted = np.flatnonzero(pvalues >= alpha)
    lo, hi = int(accepted[0]), int(accepted[-1])
    assert list(accepted) == list(range(lo, hi + 1)), "acceptance region is an interval"
    return lo, hi


def binomial_errors(n: int, p: float, alpha: float, shift: float) -> tuple[float, float]:
    lo, hi = region_by_definition(n, p, alpha)
    size = 1 - (stats.binom.cdf(hi, n, p) - stats.binom.cdf(lo - 1, n, p))
    beta = max(
        stats.binom.cdf(hi, n, q) - stats.binom.cdf(lo - 1, n, q)
        for q in (min(max(p - shift, 1e-9), 1 - 1e-9), min(max(p + shift, 1e-9), 1 - 1e-9))
    )
    return float(size), float(beta)


def chi2_beta(n: int, shares: list[float], alpha: float, shift: float) -> float:
    """Noncentral chi-squared at the hardest alternative: one share off, rest rescaled."""
    df = len(shares) - 1
    critical = stats.chi2.isf(alpha, df)
    noncentrality = n * min(shift**2 / (p * (1 - p)) for p in shares)
    return float(stats.ncx2.cdf(critical, df, noncentrality))


# -- sample sizes ----------------------------------------------------------------------------


def test_ninety_ten_sample_size_meets_both_budgets_and_is_the_smallest() -> None:
    n = sample_size(NINETY_TEN)
    assert 2000 <= n <= 3000
    size, beta = binomial_errors(n, 0.9, ALPHA, SHIFT)
    assert size <= ALPHA
    assert beta <= BETA
    # The smallest: one request fewer misses the beta budget.
    assert binomial_errors(n - 1, 0.9, ALPHA, SHIFT)[1] > BETA


def test_sample_size_normalises_and_ignores_zero_weights() -> None:
    assert sample_size({V1: 0.9, V2: 0.1}) == sample_size(NINETY_TEN)
    assert sample_size({V1: 90, V2: 10, V3: 0}) == sample_size(NINETY_TEN)


def test_sample_size_is_symmetric_in_the_two_backends() -> None:
    assert sample_size({V2: 10, V1: 90}) == sample_size(NINETY_TEN)


def test_three_way_sample_size_from_noncentral_chi_squared() -> None:
    n = sample_size(THREE_WAY)
    shares = [0.5, 0.3, 0.2]
    assert chi2_beta(n, shares, ALPHA, SHIFT) <= BETA < chi2_beta(n - 1, shares, ALPHA, SHIFT)
    # Moving 5 points between the two largest backends is easier to see than one backend
    # off by 5 points with the difference spread; n covers the harder one.
    critical = stats.chi2.isf(ALPHA, 2)
    pairwise = n * SHIFT**2 * (1 / 0.5 + 1 / 0.3)
    assert stats.ncx2.cdf(critical, 2, pairwise) < BETA
    assert 5000 < n < 8000


def test_single_backend_needs_enough_requests_for_a_stray_one() -> None:
    n = sample_size({V1: 1, V2: 0})
    assert n == math.ceil(math.log(BETA) / math.log(1 - SHIFT)) == 180
    assert (1 - SHIFT) ** n <= BETA < (1 - SHIFT) ** (n - 1)


def test_unreachable_budget_raises() -> None:
    with pytest.raises(ValueError, match="max_n=500"):
        sample_size(NINETY_TEN, max_n=500)
    with pytest.raises(ValueError, match="max_n=500"):
        sample_size(THREE_WAY, max_n=500)


@pytest.mark.parametrize(
    "weights",
    [{}, {V1: 0, V2: 0}, {V1: -1, V2: 2}, {V1: math.nan}, {V1: "90"}],
)
def test_bad_weights_raise(weights: dict) -> None:
    with pytest.raises(ValueError, match="weight"):
        sample_size(weights)


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"beta": 1}, {"shift": -0.1}])
def test_bad_budgets_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        sample_size(NINETY_TEN, **kwargs)


# -- the exact test's acceptance region ------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "p", "alpha"),
    [(1, 0.9, 0.2), (7, 0.5, 0.05), (40, 0.99, 1e-4), (120, 0.3, 0.01), (1000, 0.9, 1e-4)],
)
def test_acceptance_region_matches_binomtest(n: int, p: float, alpha: float) -> None:
    lo, hi = binomial_acceptance_region(n, p, alpha)
    assert (lo, hi) == region_by_definition(n, p, alpha)
    assert stats.binomtest(lo, n, p).pvalue >= alpha
    assert stats.binomtest(hi, n, p).pvalue >= alpha
    if lo > 0:
        assert stats.binomtest(lo - 1, n, p).pvalue < alpha
    if hi < n:
        assert stats.binomtest(hi + 1, n, p).pvalue < alpha


def test_counts_at_the_boundary_of_the_acceptance_region() -> None:
    n = sample_size(NINETY_TEN)
    lo, hi = binomial_acceptance_region(n, 0.9, ALPHA)
    for v1, passed in ((lo - 1, False), (lo, True), (hi, True), (hi + 1, False)):
        result = check_split({V1: v1, V2: n - v1}, NINETY_TEN)
        assert result.passed is passed, (v1, result.explain())
        assert result.test == "binomial"
        assert result.p_value == stats.binomtest(v1, n, 0.9).pvalue


# -- verdicts ----------------------------------------------------------------------------------


def test_ninety_ten_sample_passes() -> None:
    result = check_split({V1: 900, V2: 100}, NINETY_TEN)
    assert result.passed
    assert result.p_value == pytest.approx(1.0)
    assert result.statistic == pytest.approx(0.9)
    assert result.n == 1000
    assert "ok" in result.explain()


def test_eighty_five_fifteen_fails_at_a_thousand() -> None:
    result = check_split({V1: 850, V2: 150}, NINETY_TEN)
    assert not result.passed
    assert result.p_value < ALPHA
    message = result.explain()
    assert "FAILED" in message
    assert "reviews-v1 850 (85.0%, expected 90.0%)" in message
    assert "< alpha 0.0001" in message
    # 1000 requests is below what the budgets ask for, and the message says so.
    assert result.power < 1 - BETA
    assert "too few requests" in message


def test_chi_squared_three_way() -> None:
    n = sample_size(THREE_WAY)
    good = check_split({V1: n // 2, V2: round(n * 0.3), V3: n - n // 2 - round(n * 0.3)}, THREE_WAY)
    assert good.test == "chi-squared"
    assert good.passed
    assert good.statistic is not None
    assert good.power >= 1 - BETA
    # v1 five points high, the others scaled down: the hardest case, still caught here.
    v1 = round(n * 0.55)
    v2 = round(n * 0.27)
    bad = check_split({V1: v1, V2: v2, V3: n - v1 - v2}, THREE_WAY)
    assert not bad.passed
    assert bad.p_value < ALPHA
    expected = stats.chisquare([v1, v2, n - v1 - v2], [n * 0.5, n * 0.3, n * 0.2])
    assert bad.p_value == pytest.approx(expected.pvalue)
    assert "Chi-squared goodness of fit (X^2 = " in bad.explain()


def test_unexpected_backend_fails_a_perfect_split() -> None:
    result = check_split({V1: 900, V2: 100, "ratings-v1": 3}, NINETY_TEN)
    assert not result.passed
    assert result.p_value >= ALPHA  # the statistics alone would pass
    assert result.unexpected == {"ratings-v1": 3}
    assert result.counts == {V1: 900, V2: 100, "ratings-v1": 3}
    assert result.n == 1003
    assert "ratings-v1 got 3 but is not in the route" in result.explain()


def test_zero_weight_backend_receiving_one_request_fails() -> None:
    result = check_split({V1: 900, V2: 100, V3: 1}, {V1: 90, V2: 10, V3: 0})
    assert not result.passed
    assert result.unexpected == {V3: 1}
    assert result.expected[V3] == 0.0
    assert "reviews-v3 got 1 with weight 0" in result.explain()
    # ... and receiving none is fine.
    assert check_split({V1: 900, V2: 100, V3: 0}, {V1: 90, V2: 10, V3: 0}).passed


def test_single_backend_is_exact() -> None:
    ok = check_split({V1: 200}, {V1: 100, V2: 0})
    assert (ok.test, ok.p_value, ok.passed, ok.statistic) == ("exact", 1.0, True, None)
    stray = check_split({V1: 199, V2: 1}, {V1: 100, V2: 0})
    assert (stray.test, stray.p_value, stray.passed) == ("exact", 0.0, False)


def test_weights_need_not_sum_to_one() -> None:
    assert check_split({V1: 900, V2: 100}, {V1: 9, V2: 1}).expected == {V1: 0.9, V2: 0.1}


def test_missing_backend_counts_as_zero_and_no_traffic_fails() -> None:
    result = check_split({V1: 50}, NINETY_TEN)
    assert result.counts == {V1: 50, V2: 0}
    # 50 of 50 on v1 is not evidence against 90/10 (p = 0.9**50), but nor is a pass
    # with 50 requests evidence for it: the result says how little it means.
    assert result.passed
    assert result.power < 0.01
    assert "too few requests for a pass to mean much" in result.explain()
    nothing = check_split({}, NINETY_TEN)
    assert not nothing.passed
    assert math.isnan(nothing.p_value)
    assert "nothing to test" in nothing.explain()


@pytest.mark.parametrize("counts", [{V1: -1, V2: 3}, {V1: 1.5, V2: 3}])
def test_bad_counts_raise(counts: dict) -> None:
    with pytest.raises(ValueError, match="count of"):
        check_split(counts, NINETY_TEN)


def test_properties_are_flat_strings() -> None:
    result = check_split({V1: 900, V2: 100, "ratings-v1": 2}, {V1: 90, V2: 10, V3: 0})
    props = result.properties()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert set(props) == {
        "split.passed",
        "split.test",
        "split.n",
        "split.statistic",
        "split.p_value",
        "split.alpha",
        "split.beta",
        "split.shift",
        "split.power",
        "split.counts.reviews-v1",
        "split.counts.reviews-v2",
        "split.counts.reviews-v3",
        "split.counts.ratings-v1",
        "split.expected.reviews-v1",
        "split.expected.reviews-v2",
        "split.expected.reviews-v3",
        "split.unexpected.ratings-v1",
    }
    assert props["split.n"] == "1002"
    assert props["split.counts.reviews-v1"] == "900"
    assert props["split.expected.reviews-v1"] == "0.9"
    assert props["split.expected.reviews-v3"] == "0"
    assert props["split.alpha"] == "0.0001"
    assert props["split.test"] == "binomial"
    assert props["split.passed"] == "false"
    assert float(props["split.p_value"]) == pytest.approx(result.p_value, rel=1e-5)


def test_power_at_the_chosen_n_meets_the_budget() -> None:
    n = sample_size(NINETY_TEN)
    assert split_power(NINETY_TEN, n) >= 1 - BETA
    assert split_power(NINETY_TEN, n - 1) < 1 - BETA
    assert split_power(NINETY_TEN, 0) == 0.0
    assert isinstance(check_split({V1: 9, V2: 1}, NINETY_TEN), SplitResult)


# -- simulation: the budgets hold on random data ----------------------------------------------


def test_simulated_runs_at_the_chosen_n() -> None:
    """Seeded, so deterministic; the expected outcome would hold for ~97% of seeds."""
    rng = np.random.default_rng(20240611)
    runs = 300
    n = sample_size(NINETY_TEN)

    def failures(p: float) -> int:
        return sum(
            not check_split({V1: int(k), V2: n - int(k)}, NINETY_TEN).passed
            for k in rng.binomial(n, p, size=runs)
        )

    assert failures(0.90) == 0  # a correct implementation never fails
    assert failures(0.85) == runs  # five points off is caught every time
    assert failures(0.95) == runs

    n3 = sample_size(THREE_WAY)
    shares = np.array([0.5, 0.3, 0.2])
    off = np.array([0.55, 0.3 * 0.9, 0.2 * 0.9])  # the hardest alternative
    for probabilities, want in ((shares, 0), (off, runs)):
        draws = rng.multinomial(n3, probabilities, size=runs)
        failed = sum(
            not check_split(dict(zip((V1, V2, V3), map(int, row), strict=True)), THREE_WAY).passed
            for row in draws
        )
        assert failed == want
