"""Traffic-split statistics: how many requests to send, and whether a split is right.

A weighted route (reviews v1 90 %, v2 10 %) can only be judged statistically, and a
conformance gate has two ways to be wrong: it can fail a correct implementation (a
flaky CI gate nobody trusts) or pass a broken one (the bug the suite exists to
catch).  Picking the number of requests by feel buys one of these at the price of
the other, so here both are explicit budgets and the request count follows from them:

* ``alpha``: the probability that a correct implementation, whose observed counts
  are ``Multinomial(n, weights)``, FAILS the check;
* ``beta``: the probability that an implementation whose split is off by ``shift``
  (5 percentage points) or more on some backend PASSES it.

Two backends are judged by the exact two-sided binomial test on the first backend's
share (:func:`scipy.stats.binomtest`), and both error probabilities of a sample size
are computed exactly from the binomial distribution.  Three or more are judged by
Pearson's chi-squared goodness of fit (:func:`scipy.stats.chisquare`); its error
probabilities are the usual large-sample approximations (see :func:`sample_size`).

Backends whose weight is zero, and backends the route does not name at all, are not
statistics: any request they receive is a hard failure, reported as ``unexpected``.

Everything here is pure: counts in, numbers and verdicts out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real
from typing import Literal

from scipy import special, stats

__all__ = [
    "SplitResult",
    "binomial_acceptance_region",
    "check_split",
    "sample_size",
    "split_power",
]

TestName = Literal["binomial", "chi-squared", "exact"]

_RERR = 1 + 1e-7
"""scipy's binomtest counts outcomes "as unlikely as" the observed one with this slack."""
_EPS = 1e-9
"""Alternatives p +/- shift are clipped into [_EPS, 1 - _EPS], i.e. into (0, 1)."""
_TOL = 1e-9
"""Relative slack when comparing computed error probabilities with their budgets."""
_MIN_EXPECTED = 5
"""Cochran's rule: the chi-squared approximation needs every expected count >= 5."""


# -- inputs ------------------------------------------------------------------------------


def _check_budgets(alpha: float, beta: float, shift: float) -> None:
    for label, value in (("alpha", alpha), ("beta", beta), ("shift", shift)):
        if not (isinstance(value, Real) and 0 < value < 1):
            raise ValueError(f"{label} must be a number strictly between 0 and 1, got {value!r}")


def _normalise(weights: Mapping[str, float]) -> dict[str, float]:
    """Every named backend with its share of the total; zero-weight backends stay at 0.0."""
    if not weights:
        raise ValueError("weights is empty: name at least one backend")
    for name, weight in weights.items():
        if (
            isinstance(weight, bool)
            or not isinstance(weight, Real)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight!r}")
    total = math.fsum(float(w) for w in weights.values())
    if total <= 0:
        raise ValueError("every weight is 0: at least one backend must be meant to get traffic")
    return {name: float(w) / total for name, w in weights.items()}


def _positive(weights: Mapping[str, float]) -> dict[str, float]:
    """The backends the statistics are about: positive weight, normalised over themselves."""
    return {name: share for name, share in _normalise(weights).items() if share > 0}


# -- the binomial distribution, fast scalars ------------------------------------------------
#
# The sample-size search evaluates thousands of p-values.  scipy.stats.binomtest costs
# ~0.3 ms a call, so the search replicates its two-sided p-value with scalar math
# (lgamma for the pmf, the public bdtr/bdtrc ufuncs for the tails) and checks the
# result against binomtest itself once the answer is found.


def _pmf(k: int, n: int, p: float) -> float:
    if k < 0 or k > n:
        return 0.0
    return math.exp(
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _cdf(k: int, n: int, p: float) -> float:
    """P(X <= k)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(special.bdtr(k, n, p))


def _sf(k: int, n: int, p: float) -> float:
    """P(X > k)."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return float(special.bdtrc(k, n, p))


def _mass(lo: int, hi: int, n: int, p: float) -> float:
    """P(lo <= X <= hi), from whichever tail keeps the precision."""
    if n * p < lo:
        return max(0.0, _sf(lo - 1, n, p) - _sf(hi, n, p))
    if n * p > hi:
        return max(0.0, _cdf(hi, n, p) - _cdf(lo - 1, n, p))
    return max(0.0, 1.0 - _cdf(lo - 1, n, p) - _sf(hi, n, p))


def _first_true(pred: Callable[[int], bool], lo: int, hi: int, guess: int) -> int:
    """Smallest i in [lo, hi] with ``pred(i)`` (pred monotone false..true); hi + 1 if none.

    Gallops out from ``guess``, so a good guess costs a handful of calls, not log2(n).
    """
    g = min(max(guess, lo), hi)
    if pred(g):
        true_at, step = g, 1
        false_at = true_at - step
        while false_at >= lo and pred(false_at):
            true_at, step = false_at, step * 2
            false_at = true_at - step
        false_at = max(false_at, lo - 1)
    else:
        false_at, step = g, 1
        true_at = false_at + step
        while true_at <= hi and not pred(true_at):
            false_at, step = true_at, step * 2
            true_at = false_at + step
        true_at = min(true_at, hi + 1)
    while true_at - false_at > 1:
        mid = (true_at + false_at) // 2
        if pred(mid):
            true_at = mid
        else:
            false_at = mid
    return true_at


def _binom_pvalue(k: int, n: int, p: float) -> float:
    """scipy.stats.binomtest(k, n, p).pvalue (two-sided, "minlike"), with fast scalars."""
    mean = n * p
    if k == mean:
        return 1.0
    d = _pmf(k, n, p) * _RERR
    mirror = round(2 * mean - k)
    if k < mean:
        # Upper tail: every outcome above the mean at most as likely as k.
        first_small = _first_true(lambda i: _pmf(i, n, p) <= d, math.ceil(mean), n, mirror)
        pval = _cdf(k, n, p) + _sf(first_small - 1, n, p)
    else:
        last_small = _first_true(lambda i: _pmf(i, n, p) > d, 0, math.floor(mean), mirror) - 1
        pval = _cdf(last_small, n, p) + _sf(k - 1, n, p)
    return min(1.0, pval)


def _fast_region(
    n: int, p: float, alpha: float, guess: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The acceptance region {k : pvalue(k) >= alpha}, an interval around the mean.

    The p-value rises towards the mean on both sides, so each end is a monotone search.
    """
    mean = n * p
    below, above = math.floor(mean), math.ceil(mean)
    if guess is None:
        z = -float(special.ndtri(alpha / 2))
        half = z * math.sqrt(n * p * (1 - p))
        guess = (round(mean - half), round(mean + half))

    def accepted(k: int) -> bool:
        return _binom_pvalue(k, n, p) >= alpha

    lo = _first_true(accepted, 0, below, guess[0])
    if lo > below:  # nothing at or below the mean is accepted
        lo = above
    hi = _first_true(lambda k: not accepted(k), above, n, guess[1]) - 1
    if hi < above:  # nothing above the mean is accepted
        hi = below
    return lo, hi


def binomial_acceptance_region(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The counts ``k`` for which ``binomtest(k, n, p)`` (two-sided) has p-value >= alpha.

    Returned as the closed interval ``(lo, hi)``: the first backend's count passes the
    exact test iff ``lo <= k <= hi``.  Exposed so tests and reports can name the exact
    boundary counts; the ends are confirmed with :func:`scipy.stats.binomtest` itself.
    """
    if not (isinstance(n, Integral) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 0 < p < 1:
        raise ValueError(f"p must be strictly between 0 and 1, got {p!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    n = int(n)
    lo, hi = _fast_region(n, p, alpha)

    def accepted(k: int) -> bool:
        return bool(stats.binomtest(k, n, p).pvalue >= alpha)

    # The fast p-values agree with binomtest to ~1e-12; a tie closer than that is
    # settled by binomtest, walking the boundary until it agrees.
    while lo > 0 and accepted(lo - 1):
        lo -= 1
    while lo < hi and not accepted(lo):
        lo += 1
    while hi < n and accepted(hi + 1):
        hi += 1
    while hi > lo and not accepted(hi):
        hi -= 1
    return lo, hi


def _binomial_errors(
    n: int, p: float, shift: float, region: tuple[int, int]
) -> tuple[float, float]:
    """(size, beta) of the exact test with acceptance ``region``: beta is the worse side."""
    lo, hi = region
    size = _cdf(lo - 1, n, p) + _sf(hi, n, p)
    beta = max(_mass(lo, hi, n, min(max(alt, _EPS), 1 - _EPS)) for alt in (p - shift, p + shift))
    return size, beta


def _np_beta(n: int, p: float, alt: float, alpha: float) -> float:
    """beta of the most powerful (randomised) level-alpha test of p against alt < p.

    Neyman-Pearson: no level-alpha test of n observations, ours included, does better.
    It only improves with n, so it gives a rigorous lower bound for the search.
    """
    cut = _first_true(lambda k: _cdf(k, n, p) >= alpha, 0, n, round(n * alt))
    below = _cdf(cut - 1, n, p)
    at = _pmf(cut, n, p)
    gamma = (alpha - below) / at if at > 0 else 0.0
    power = _cdf(cut - 1, n, alt) + gamma * _pmf(cut, n, alt)
    return max(0.0, 1.0 - power)


def _binomial_sample_size(p: float, alpha: float, beta: float, shift: float, max_n: int) -> int:
    budget = beta * (1 + _TOL)
    # Lower bound: each direction's Neyman-Pearson bound (monotone in n, so bisect).
    start = 1
    for alt in (p - shift, p + shift):
        alt = min(max(alt, _EPS), 1 - _EPS)
        # Mirror the upper alternative so the NP test always rejects small counts.
        null, other = (p, alt) if alt < p else (1 - p, 1 - alt)
        if _np_beta(max_n, null, other, alpha) > budget:
            raise ValueError(_too_many(max_n, alpha, beta, shift))
        start = max(
            start,
            _first_true(
                lambda m, null=null, other=other: _np_beta(m, null, other, alpha) <= budget,
                1,
                max_n,
                start,
            ),
        )
    # The exact test's error probabilities saw-tooth with n, so scan upwards from the
    # bound; each region is found by galloping from the previous one.
    region: tuple[int, int] | None = None
    for n in range(start, max_n + 1):
        guess = None if region is None else (round(region[0] + p), round(region[1] + p))
        region = _fast_region(n, p, alpha, guess)
        size, worst = _binomial_errors(n, p, shift, region)
        if size <= alpha * (1 + _TOL) and worst <= budget:
            exact = binomial_acceptance_region(n, p, alpha)
            if exact == region:
                return n
            size, worst = _binomial_errors(n, p, shift, exact)
            if size <= alpha * (1 + _TOL) and worst <= budget:
                return n
    raise ValueError(_too_many(max_n, alpha, beta, shift))


# -- chi-squared -----------------------------------------------------------------------------


def _chi2_coefficient(shares: list[float], shift: float) -> float:
    """The smallest noncentrality per request over the alternatives the suite must catch.

    Noncentrality of Pearson's statistic under alternative shares p + d is
    ``n * sum(d_i**2 / p_i)``.  With backend j off by s, the remaining -s spread over
    the others in proportion to their shares minimises it, at ``s**2 / (p_j (1 - p_j))``;
    moving s from one backend straight to another (every ordered pair, also checked)
    is never lower.  s is clipped so the alternative stays a distribution.
    """
    best = math.inf
    for j, pj in enumerate(shares):
        for s in (min(shift, 1 - pj), min(shift, pj)):  # j gains s / j loses s
            best = min(best, s * s / (pj * (1 - pj)))
        for i, pi in enumerate(shares):
            if i != j:
                s = min(shift, pi)  # move s from i to j
                best = min(best, s * s * (1 / pi + 1 / pj))
    return best


def _chi2_beta(n: int, df: int, coefficient: float, alpha: float) -> float:
    critical = float(stats.chi2.isf(alpha, df))
    return float(stats.ncx2.cdf(critical, df, n * coefficient))


def _chi2_sample_size(
    shares: list[float], alpha: float, beta: float, shift: float, max_n: int
) -> int:
    df = len(shares) - 1
    coefficient = _chi2_coefficient(shares, shift)
    smallest = max(1, math.ceil(_MIN_EXPECTED / min(shares)))
    if smallest > max_n or _chi2_beta(max_n, df, coefficient, alpha) > beta:
        raise ValueError(_too_many(max_n, alpha, beta, shift))
    # beta falls monotonically as the noncentrality n * coefficient grows.
    return _first_true(
        lambda n: _chi2_beta(n, df, coefficient, alpha) <= beta, smallest, max_n, smallest
    )


# -- one backend -----------------------------------------------------------------------------


def _single_sample_size(beta: float, shift: float, max_n: int) -> int:
    # A correct implementation never fails; a wrong one sending `shift` elsewhere passes
    # only if none of n requests went astray: (1 - shift)**n <= beta.
    n = max(1, math.ceil(math.log(beta) / math.log1p(-shift)))
    while n > 1 and (1 - shift) ** (n - 1) <= beta:
        n -= 1
    while (1 - shift) ** n > beta:
        n += 1
    if n > max_n:
        raise ValueError(_too_many(max_n, 0.0, beta, shift))
    return n


def _too_many(max_n: int, alpha: float, beta: float, shift: float) -> str:
    return (
        f"no sample size up to max_n={max_n} keeps alpha={alpha:g} and beta={beta:g} "
        f"for a shift of {shift:g}: loosen a budget, widen the shift or raise max_n"
    )


def sample_size(
    weights: dict[str, float],
    *,
    alpha: float = 1e-4,
    beta: float = 1e-4,
    shift: float = 0.05,
    max_n: int = 20000,
) -> int:
    """The smallest request count that keeps both error budgets for this split.

    Smallest ``n`` such that a correct implementation fails :func:`check_split` with
    probability <= ``alpha`` and one whose split is off by ``shift`` or more on some
    backend passes it with probability <= ``beta``.  Zero-weight backends are left out:
    they get the separate must-be-zero check.

    * Two backends: exact.  The acceptance region of the exact binomial test at level
      alpha is computed for each candidate n, and its probability under ``p - shift``
      and ``p + shift`` (clipped into (0, 1)) taken, the worse of the two.  Because the
      test is discrete these probabilities saw-tooth with n; the search scans upwards
      from a Neyman-Pearson lower bound, so the answer is the smallest n that works,
      though n + 1 need not: for 90/10 the answer is 2488, and some n up to 2524 let
      a 5-point shift through with probability up to 1.2e-4 instead of 1e-4.
    * Three or more: approximate.  The chi-squared test's size is alpha only in the
      large-sample limit, and its power is the noncentral chi-squared approximation
      (local alternatives) at the alternative hardest to detect: one backend off by
      ``shift``, the difference spread over the rest.  That is harder to see than moving
      ``shift`` between two backends, so n is larger than a pairwise worst case gives
      (50/30/20: 6283, not 4712).  A backend with a share below ``shift`` can only lose
      all of it, and that stands in for its shift.  n is also at least enough for every
      expected count to be >= 5.  Simulated at 50/30/20 and n = 6283 (400,000 runs),
      the false-failure rate came out at 1.2e-4 and the worst miss rate at 1.0e-4.
    * One backend: any request elsewhere fails, so alpha is 0 and
      ``n = ceil(log(beta) / log(1 - shift))``.

    Raises ValueError when no n <= ``max_n`` suffices.
    """
    _check_budgets(alpha, beta, shift)
    if not (isinstance(max_n, Integral) and max_n >= 1):
        raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}")
    shares = tuple(_positive(weights).values())
    return _sample_size(shares, float(alpha), float(beta), float(shift), int(max_n))


@lru_cache(maxsize=256)
def _sample_size(
    shares: tuple[float, ...], alpha: float, beta: float, shift: float, max_n: int
) -> int:
    if len(shares) == 1:
        return _single_sample_size(beta, shift, max_n)
    if len(shares) == 2:
        return _binomial_sample_size(shares[0], alpha, beta, shift, max_n)
    return _chi2_sample_size(list(shares), alpha, beta, shift, max_n)


def split_power(
    weights: dict[str, float], n: int, *, alpha: float = 1e-4, shift: float = 0.05
) -> float:
    """Probability that ``n`` requests catch a split off by ``shift``: 1 - beta at this n.

    Reported with every result, so a pass on too few requests is visible as such
    rather than read as evidence of correctness.
    """
    _check_budgets(alpha, 0.5, shift)
    if not (isinstance(n, Integral) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    shares = tuple(_positive(weights).values())
    return _power(shares, int(n), float(alpha), float(shift))


@lru_cache(maxsize=256)
def _power(shares: tuple[float, ...], n: int, alpha: float, shift: float) -> float:
    if n == 0:
        return 0.0
    if len(shares) == 1:
        return 1.0 - (1.0 - shift) ** n
    if len(shares) == 2:
        p = shares[0]
        region = binomial_acceptance_region(n, p, alpha)
        return 1.0 - _binomial_errors(n, p, shift, region)[1]
    return 1.0 - _chi2_beta(n, len(shares) - 1, _chi2_coefficient(list(shares), shift), alpha)


# -- the check --------------------------------------------------------------------------------


@dataclass
class SplitResult:
    """The verdict on one observed split, with everything needed to audit it."""

    n: int
    """Every request counted, unexpected ones included."""
    counts: dict[str, int]
    """Requests per backend: every weighted backend (0 if none) and every unexpected one."""
    expected: dict[str, float]
    """Each weighted backend's normalised share (zero-weight ones at 0.0)."""
    test: TestName
    statistic: float | None
    """binomial: the first backend's observed share; chi-squared: Pearson's X^2."""
    p_value: float
    """nan when no request reached a weighted backend (nothing to test)."""
    alpha: float
    beta: float
    shift: float
    unexpected: dict[str, int]
    """Backends that got traffic with weight 0 or no weight at all."""
    passed: bool
    power: float = math.nan
    """1 - beta at this n: the chance this many requests catch a ``shift`` error."""

    def properties(self) -> dict[str, str]:
        """Flat string key/values for JUnit ``<property>`` elements (``split.*``)."""
        props = {
            "split.passed": "true" if self.passed else "false",
            "split.test": self.test,
            "split.n": str(self.n),
            "split.statistic": "" if self.statistic is None else _fmt(self.statistic),
            "split.p_value": _fmt(self.p_value),
            "split.alpha": _fmt(self.alpha),
            "split.beta": _fmt(self.beta),
            "split.shift": _fmt(self.shift),
            "split.power": _fmt(self.power),
        }
        props.update(tally_properties(self.counts, self.expected, self.unexpected))
        return props

    def explain(self) -> str:
        """One paragraph for a person reading a failed assertion: counts, expectation, verdict."""
        verdict = "traffic split ok" if self.passed else "traffic split FAILED"
        tested = sum(c for name, c in self.counts.items() if self.expected.get(name, 0) > 0)
        parts = []
        for name, count in self.counts.items():
            share = f"{count / self.n:.1%}" if self.n else "-"
            want = self.expected.get(name)
            parts.append(
                f"{name} {count} ({share}, expected "
                + ("no traffic" if not want else f"{want:.1%}")
                + ")"
            )
        text = f"{verdict}: {self.n} requests: " + ", ".join(parts) + "."
        if self.unexpected:
            stray = ", ".join(
                f"{name} got {count}"
                + (" with weight 0" if name in self.expected else " but is not in the route")
                for name, count in self.unexpected.items()
            )
            text += f" Unexpected traffic: {stray}."
        if tested == 0:
            text += " No request reached a weighted backend, so there is nothing to test."
        elif self.test == "exact":
            text += " One weighted backend: every request must reach it."
        else:
            first = next(name for name, share in self.expected.items() if share > 0)
            how = (
                f"exact two-sided binomial test on {first}'s share"
                if self.test == "binomial"
                else f"chi-squared goodness of fit (X^2 = {self.statistic:.4g})"
            )
            within = self.p_value >= self.alpha
            text += (
                f" {how[0].upper()}{how[1:]}: p-value {self.p_value:.3g} "
                + (">=" if within else "<")
                + f" alpha {self.alpha:g}"
                + (
                    ", consistent with the configured weights."
                    if within
                    else ": the observed split is not the configured one."
                )
            )
        if tested:
            miss = 1 - self.power
            text += (
                f" A split off by {self.shift * 100:g} points would pass {tested} requests"
                f" with probability {miss:.2g} (budget {self.beta:g})"
                + ("; too few requests for a pass to mean much." if miss > self.beta else ".")
            )
        return text


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def tally_properties(counts: Mapping[str, int], expected: Mapping[str, float],
                     unexpected: Mapping[str, int]) -> dict[str, str]:
    """A split's counts, configured shares and unexpected answers as report properties,
    named alike by every split test so that reports compare."""
    props = {f"split.counts.{name}": str(count) for name, count in counts.items()}
    props.update({f"split.expected.{name}": _fmt(share) for name, share in expected.items()})
    props.update({f"split.unexpected.{name}": str(n) for name, n in unexpected.items()})
    return props


def check_split(
    counts: dict[str, int],
    weights: dict[str, float],
    *,
    alpha: float = 1e-4,
    beta: float = 1e-4,
    shift: float = 0.05,
) -> SplitResult:
    """Judge observed per-backend ``counts`` against the route's ``weights``.

    Passed iff the test's p-value >= ``alpha`` and no backend outside the positive
    weights received a request.  Weights need not sum to 1.  With one positive-weight
    backend the test is ``exact``: p-value 1.0 if every request reached it, else 0.0.
    ``beta`` and ``shift`` do not change the verdict; they give the power reported
    with it (see :func:`sample_size` for how many requests make a pass meaningful).
    """
    _check_budgets(alpha, beta, shift)
    expected = _normalise(weights)
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, Integral) or count < 0:
            raise ValueError(f"count of {name!r} must be an integer >= 0, got {count!r}")
    shares = {name: share for name, share in expected.items() if share > 0}
    unexpected = {
        name: int(count) for name, count in counts.items() if count > 0 and name not in shares
    }
    observed = {name: int(counts.get(name, 0)) for name in expected}
    observed.update(unexpected)
    tested = [observed[name] for name in shares]
    n_tested = sum(tested)

    statistic: float | None = None
    test: TestName
    if len(shares) == 1:
        test = "exact"
        p_value = 0.0 if unexpected or n_tested == 0 else 1.0
    elif len(shares) == 2:
        test = "binomial"
        p_value = math.nan
        if n_tested:
            first = next(iter(shares.values()))
            result = stats.binomtest(tested[0], n_tested, first)
            statistic, p_value = float(result.statistic), float(result.pvalue)
    else:
        test = "chi-squared"
        p_value = math.nan
        if n_tested:
            result = stats.chisquare(tested, [n_tested * s for s in shares.values()])
            statistic, p_value = float(result.statistic), float(result.pvalue)

    return SplitResult(
        n=sum(observed.values()),
        counts=observed,
        expected=expected,
        test=test,
        statistic=statistic,
        p_value=p_value,
        alpha=alpha,
        beta=beta,
        shift=shift,
        unexpected=unexpected,
        passed=bool(n_tested and p_value >= alpha and not unexpected),
        power=split_power(dict(shares), n_tested, alpha=alpha, shift=shift),
    )
