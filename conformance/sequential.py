"""Sequential traffic-split test: stop sampling as soon as the evidence is clear.

The contract is the one of :mod:`conformance.stats`, with the same two budgets:

* ``alpha``: a correct implementation (each request reaches backend ``j`` with
  probability ``p_j``, the configured share, independently) FAILS with probability
  at most ``alpha``;
* ``beta``: an implementation whose share of some backend is off by ``shift`` or
  more (``q_j >= p_j + shift`` or ``q_j <= p_j - shift``, clipped into (0, 1) as in
  stats.py) PASSES with probability at most ``beta``.

A fixed-size sample must be large enough for the hardest case, so a correct
implementation always pays for the worst.  Here requests are sent in batches of
``look_every`` and the evidence is judged after each batch (a *look*), with Wald's
sequential probability ratio test (SPRT) per backend and side:

* For every backend ``j`` and each side, a one-sided test of ``p_j`` against the
  nearest alternative ``p_j + shift`` ("above") or ``p_j - shift`` ("below") watches
  one count: the backend's own requests (above) or everyone else's (below), whose
  chance per request is ``p_j`` (or ``1 - p_j``) whatever the other backends do.
  At each look its log-likelihood ratio is a line in that count, so it *rejects*
  (the split is off) at or above an upper count, *accepts* (not off on this side)
  at or below a lower count, and otherwise goes on; at its last look ``max_n`` it
  must decide.  A decision is final: a test that accepted is not consulted again.
  With two backends, backend 2's tests are backend 1's mirrored, so there are two
  tests; with ``k >= 3`` backends there are ``2k``.
* The split passes when every one-sided test has accepted and fails as soon as one
  rejects (or any request reaches a backend of weight 0 or none).

Why the error rates hold (exactly, not asymptotically):

* alpha: the split fails only if some one-sided test rejects, so
  ``P(fail) <= sum of each test's P(reject | p_j)``.  Each test is given an equal
  part of alpha and its rejection probability is computed exactly by dynamic
  programming over the binomial path (the count's distribution at each look, among
  paths not yet stopped): each look is a convolution with ``Binomial(look_every,
  q)``, and the stopped mass is summed.
* beta: if backend ``j``'s share is ``q_j >= p_j + shift``, the split passes only
  if j's "above" test accepts, and that test's acceptance probability depends on
  ``q_j`` alone and never grows with ``q_j`` (couple the paths: a larger share
  gives a count at least as large at every look, and the test stops-and-accepts
  below a line and stops-and-rejects above one, so any path accepted at the larger
  share is accepted at the smaller).  Hence ``P(pass) <= P(accept | p_j + shift)``,
  again computed exactly; the same holds below.  With two backends the bound is
  the exact probability at the two boundary alternatives, also computed.
* The looks are part of the computation: the path is only judged at multiples of
  ``look_every``, which the dynamic programme follows step by step.

The boundaries are Wald's (lines of slope ``log-likelihood ratio = const``) with
intercepts tuned to the budgets: the smallest intercepts for which the exact error
probabilities fit (a monotone iteration: raising the upper intercept only lowers the
rejection probability and raising the lower one only lowers the acceptance
probability under the alternative).  Each test is truncated at ``max_n``, 1.3 times
the normal-approximation size of the fixed one-sided test with the same errors,
rounded up to a look (moved out by a quarter at a time where no test fits), where it
decides by the midpoint of its two lines; ``max_n`` of the split (the worst case) is
the largest of its tests'.

Expected request counts are exact for two backends (a dynamic programme over the
joint path of both tests); for three or more they are simulated (seeded, stated as
such in the properties).  Everything here is pure: counts in, numbers and verdicts
out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from numbers import Integral
from typing import Literal

import numpy as np
from scipy import special, stats

from .stats import _check_budgets, _normalise, tally_properties

__all__ = [
    "OneSidedTest",
    "SequentialResult",
    "SequentialSplit",
    "SplitDesign",
    "acceptance_probability",
    "expected_requests",
    "simulate",
    "split_design",
]

Side = Literal["above", "below"]

_EPS = 1e-9
"""Alternatives are clipped into [_EPS, 1 - _EPS], as in stats.py."""
_MARGIN = 1 - 1e-7
"""A computed error probability must be below budget * _MARGIN: the sums are exact to
~1e-13 absolute, so this keeps the comparison honest without costing anything."""
_TRUNCATION_FACTOR = 1.3
"""max_n of a one-sided test, as a multiple of the fixed one-sided test's size."""
_TOLERANCE = 1e-2
"""Resolution (in requests) of the intercept search; thresholds are whole counts."""
_ROUNDS = 40
_SIMULATED_RUNS = 4000
_SIMULATION_SEED = 20240611


# -- one one-sided test --------------------------------------------------------------------


@dataclass(frozen=True)
class OneSidedTest:
    """Wald's SPRT of one backend's share against the alternative ``shift`` away on one
    side, truncated, with integer thresholds on the count it watches.

    The watched count is the backend's own requests (``above``) or everyone else's
    (``below``); its chance per request is ``null`` under the configured weights and
    ``alternative`` at the boundary alternative, ``alternative > null`` either way.
    After the look at ``looks[k]`` requests the test rejects if the watched count is
    ``>= reject_from[k]``, accepts if it is ``<= accept_to[k]``, and goes on otherwise;
    at the last look ``accept_to[-1] == reject_from[-1] - 1``.
    """

    backend: str
    side: Side
    share: float
    """The backend's configured share p_j."""
    null: float
    alternative: float
    looks: tuple[int, ...]
    reject_from: tuple[int, ...]
    accept_to: tuple[int, ...]
    alpha: float
    """P(reject) under the configured weights, exact."""
    beta: float
    """P(accept) at the boundary alternative, exact (and the most it is further out)."""
    expected_n_null: float
    """Requests this test alone watches before deciding, under the configured weights."""
    expected_n_alternative: float

    @property
    def name(self) -> str:
        return f"{self.backend} {self.side}"

    def watched(self, backend_count: int, n: int) -> int:
        return backend_count if self.side == "above" else n - backend_count

    def llr(self, backend_count: int, n: int) -> float:
        """The log-likelihood ratio (alternative over null) of the watched count."""
        s = self.watched(backend_count, n)
        q0, q1 = self.null, self.alternative
        return s * math.log(q1 / q0) + (n - s) * math.log((1 - q1) / (1 - q0))

    def decide(self, look: int, backend_count: int) -> Literal["accept", "reject"] | None:
        s = self.watched(backend_count, self.looks[look])
        if s >= self.reject_from[look]:
            return "reject"
        if s <= self.accept_to[look]:
            return "accept"
        return None

    def bounds(self, look: int) -> tuple[str, str]:
        """The look's thresholds on the backend's own count, for people."""
        n, r, t = self.looks[look], self.reject_from[look], self.accept_to[look]
        if self.side == "above":
            return f"<= {t}", f">= {r}"
        return f">= {n - t}", f"<= {n - r}"


def _lines(q0: float, q1: float) -> tuple[float, float]:
    """(slope, scale) of the SPRT in count space: llr(s, n) = scale * (s - slope * n)."""
    scale = math.log(q1 / q0) - math.log((1 - q1) / (1 - q0))
    slope = -math.log((1 - q1) / (1 - q0)) / scale
    return slope, scale


def _thresholds(
    q0: float, q1: float, upper: float, lower: float, looks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds for intercepts ``upper`` / ``lower`` (in requests)."""
    slope, _ = _lines(q0, q1)
    centre = slope * looks
    reject_from = np.ceil(centre + upper).astype(np.int64)
    accept_to = np.floor(centre - lower).astype(np.int64)
    cut = math.ceil(centre[-1] + (upper - lower) / 2)
    reject_from[-1], accept_to[-1] = cut, cut - 1
    return reject_from, accept_to


def _run(
    q: float, step: int, reject_from: np.ndarray, accept_to: np.ndarray
) -> tuple[float, float, float]:
    """(P(reject), P(accept), E[requests]) of one test when each request adds 1 to the
    watched count with probability ``q``: the exact path distribution, look by look."""
    pmf = _pmf(q, step)
    lo, alive = 0, np.ones(1)
    rejected = accepted = expected = 0.0
    for r, t in zip(reject_from.tolist(), accept_to.tolist(), strict=True):
        alive = np.convolve(alive, pmf)
        expected += step * float(alive.sum())
        a = min(max(t - lo + 1, 0), len(alive))
        b = min(max(r - lo, 0), len(alive))
        accepted += float(alive[:a].sum())
        rejected += float(alive[b:].sum())
        if b <= a:
            break
        alive, lo = alive[a:b], lo + a
    return rejected, accepted, expected


@lru_cache(maxsize=64)
def _pmf(q: float, step: int) -> np.ndarray:
    """Binomial(step, q) probabilities: how the watched count grows over one look."""
    pmf = stats.binom.pmf(np.arange(step + 1), step, q)
    pmf.flags.writeable = False
    return pmf


def acceptance_probability(test: OneSidedTest, q: float) -> float:
    """P(the test accepts) when the watched count grows with probability ``q`` a request."""
    step = test.looks[0]
    return _run(q, step, np.array(test.reject_from), np.array(test.accept_to))[1]


def _least(pred, start: float) -> float:  # type: ignore[no-untyped-def]
    """The smallest h >= start (to _TOLERANCE) with pred(h); pred monotone false..true."""
    if pred(start):
        return start
    lo, width = start, 1.0
    hi = start + width
    while not pred(hi):
        lo, width = hi, width * 2
        hi = lo + width
        if width > 1e6:
            raise _Infeasible
    while hi - lo > _TOLERANCE:
        mid = (lo + hi) / 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


class _Infeasible(Exception):
    pass


def _fixed_size(q0: float, q1: float, alpha: float, beta: float) -> float:
    """Normal-approximation size of the fixed one-sided test (only sets the truncation)."""
    z_a, z_b = -float(special.ndtri(alpha)), -float(special.ndtri(beta))
    spread = z_a * math.sqrt(q0 * (1 - q0)) + z_b * math.sqrt(q1 * (1 - q1))
    return (spread / (q1 - q0)) ** 2


@lru_cache(maxsize=128)
def _one_sided(
    q0: float, q1: float, alpha: float, beta: float, step: int, max_n: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(looks, reject_from, accept_to) of the tuned, truncated SPRT; None if max_n does
    not allow one.  The normal approximation that sets the truncation is poor for
    skewed shares, so where it is too tight the truncation moves out by a quarter."""
    last = max(1, math.ceil(_TRUNCATION_FACTOR * _fixed_size(q0, q1, alpha, beta) / step))
    while last * step <= max_n:
        found = _tuned(q0, q1, alpha, beta, step, last)
        if found is not None:
            return found
        last = math.ceil(last * 1.25)
    return None


def _tuned(q0: float, q1: float, alpha: float, beta: float, step: int,
           last: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    looks = np.arange(1, last + 1) * step

    def size(upper: float, lower: float) -> float:
        return _run(q0, step, *_thresholds(q0, q1, upper, lower, looks))[0]

    def miss(upper: float, lower: float) -> float:
        return _run(q1, step, *_thresholds(q0, q1, upper, lower, looks))[1]

    upper = lower = 0.0
    try:
        for _ in range(_ROUNDS):
            lower = _least(lambda h, u=upper: miss(u, h) <= beta * _MARGIN, lower)
            upper = _least(lambda h, b=lower: size(h, b) <= alpha * _MARGIN, upper)
            if miss(upper, lower) <= beta * _MARGIN:
                break
        else:
            return None
    except _Infeasible:
        return None
    reject_from, accept_to = _thresholds(q0, q1, upper, lower, looks)
    return tuple(looks.tolist()), tuple(reject_from.tolist()), tuple(accept_to.tolist())


def _make_test(backend: str, side: Side, share: float, shift: float, alpha: float, beta: float,
               step: int, max_n: int) -> OneSidedTest:
    alt_share = min(max(share + shift if side == "above" else share - shift, _EPS), 1 - _EPS)
    q0, q1 = (share, alt_share) if side == "above" else (1 - share, 1 - alt_share)
    found = _one_sided(q0, q1, alpha, beta, step, max_n)
    if found is None:
        raise ValueError(
            f"no sequential test of {backend}'s share {share:g} ({side}) keeps alpha="
            f"{alpha:g} and beta={beta:g} for a shift of {shift:g} within max_n={max_n}: "
            "loosen a budget, widen the shift or raise max_n"
        )
    looks, reject_from, accept_to = found
    r, t = np.array(reject_from), np.array(accept_to)
    size, _, n_null = _run(q0, step, r, t)
    _, miss, n_alt = _run(q1, step, r, t)
    return OneSidedTest(backend, side, share, q0, q1, looks, reject_from, accept_to,
                        size, miss, n_null, n_alt)


# -- the whole split -----------------------------------------------------------------------


@dataclass(frozen=True)
class SplitDesign:
    """The sequential test of one configured split, with its exact error bounds."""

    expected: dict[str, float]
    """Each named backend's normalised share (zero-weight ones at 0.0)."""
    alpha: float
    beta: float
    shift: float
    look_every: int
    tests: tuple[OneSidedTest, ...]
    max_n: int
    """The worst case: no run sends more requests."""
    alpha_bound: float
    """P(a correct implementation fails) <= this: the sum of the tests' exact sizes
    (exact itself for two backends)."""
    beta_bound: float
    """P(a split off by ``shift`` passes) <= this: the largest test's exact miss."""
    expected_n: float
    """Expected requests under the configured weights."""
    expected_n_alternatives: dict[str, float] = field(default_factory=dict)
    """Expected requests at each boundary alternative (``"<backend> above"`` ...), exact;
    two backends only (see :func:`expected_requests` for more)."""
    expected_n_method: str = "exact"

    @property
    def shares(self) -> dict[str, float]:
        return {name: share for name, share in self.expected.items() if share > 0}

    def properties(self) -> dict[str, str]:
        props = {
            "split.design.look_every": str(self.look_every),
            "split.design.max_n": str(self.max_n),
            "split.design.alpha_bound": _fmt(self.alpha_bound),
            "split.design.beta_bound": _fmt(self.beta_bound),
            "split.design.expected_n": f"{self.expected_n:.0f}",
            "split.design.expected_n_method": self.expected_n_method,
        }
        return props


def split_design(
    weights: Mapping[str, float],
    *,
    alpha: float = 1e-4,
    beta: float = 1e-4,
    shift: float = 0.05,
    look_every: int = 100,
    max_n: int = 20000,
) -> SplitDesign:
    """The sequential test for ``weights`` (need not sum to 1; zero weights allowed)."""
    _check_budgets(alpha, beta, shift)
    for label, value in (("look_every", look_every), ("max_n", max_n)):
        if isinstance(value, bool) or not (isinstance(value, Integral) and value >= 1):
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
    expected = _normalise(dict(weights))
    return _design(tuple(expected.items()), float(alpha), float(beta), float(shift),
                   int(look_every), int(max_n))


@lru_cache(maxsize=64)
def _design(expected_items: tuple[tuple[str, float], ...], alpha: float, beta: float,
            shift: float, step: int, max_n: int) -> SplitDesign:
    expected = dict(expected_items)
    shares = {name: share for name, share in expected_items if share > 0}
    names = list(shares)
    if len(names) == 1:
        # Every request must reach the one backend: stop at the first stray one; a
        # split sending `shift` elsewhere passes m requests with (1 - shift)**m.
        looks = max(1, math.ceil(math.log(beta) / math.log1p(-shift) / step))
        n = looks * step
        if n > max_n:
            raise ValueError(f"a single backend needs {n} requests, above max_n={max_n}")
        return SplitDesign(expected, alpha, beta, shift, step, (), n, 0.0,
                           (1 - shift) ** n, float(n), {}, "exact")
    backends = names[:1] if len(names) == 2 else names
    per_test = alpha / (2 * len(backends))
    tests = tuple(
        _make_test(name, side, shares[name], shift, per_test, beta, step, max_n)
        for name in backends for side in ("above", "below")
    )
    worst = max(t.looks[-1] for t in tests)
    if len(names) == 2:
        plus, minus = tests
        size = _two_backend_run(plus, minus, plus.share)[0]
        expected_n = _two_backend_run(plus, minus, plus.share)[2]
        alternatives = {
            t.name: _two_backend_run(plus, minus, t.alternative if t.side == "above"
                                     else 1 - t.alternative)[2] for t in tests}
        method = "exact"
    else:
        size = sum(t.alpha for t in tests)
        expected_n, alternatives = _simulated_expectations(tests, shares, shift)
        method = f"simulated ({_SIMULATED_RUNS} runs, seed {_SIMULATION_SEED})"
    return SplitDesign(expected, alpha, beta, shift, step, tests, worst, size,
                       max(t.beta for t in tests), expected_n, alternatives, method)


def _two_backend_run(plus: OneSidedTest, minus: OneSidedTest,
                     p: float) -> tuple[float, float, float]:
    """(P(fail), P(pass), E[requests]) of the two-backend split when the first backend
    gets each request with probability ``p``: a dynamic programme over its count with
    the state of both tests (undecided / accepted)."""
    step = plus.looks[0]
    pmf = _pmf(p, step)
    # live[(plus accepted, minus accepted)] = distribution of the first backend's count
    live: dict[tuple[bool, bool], np.ndarray] = {(False, False): np.ones(1)}
    failed = passed = expected = 0.0
    look = 0
    while live:
        n = (look + 1) * step
        nxt: dict[tuple[bool, bool], np.ndarray] = {}
        for (plus_done, minus_done), dist in live.items():
            dist = np.convolve(dist, pmf)
            expected += step * float(dist.sum())
            counts = np.arange(len(dist))
            status = []
            for test, done in ((plus, plus_done), (minus, minus_done)):
                if done:
                    status.append(np.full(len(dist), 1))
                    continue
                watched = counts if test.side == "above" else n - counts
                k = min(look, len(test.looks) - 1)
                s = np.zeros(len(dist), dtype=np.int64)
                s[watched <= test.accept_to[k]] = 1
                s[watched >= test.reject_from[k]] = -1
                status.append(s)
            a, b = status
            rejected = (a == -1) | (b == -1)
            failed += float(dist[rejected].sum())
            both = (a == 1) & (b == 1) & ~rejected
            passed += float(dist[both].sum())
            for key, mask in (((True, False), (a == 1) & (b == 0)),
                              ((False, True), (a == 0) & (b == 1)),
                              ((False, False), (a == 0) & (b == 0))):
                if mask.any():
                    part = np.where(mask, dist, 0.0)
                    nxt[key] = nxt[key] + part if key in nxt else part
        live = nxt
        look += 1
    return failed, passed, expected


def _simulated_expectations(tests: tuple[OneSidedTest, ...], shares: dict[str, float],
                            shift: float) -> tuple[float, dict[str, float]]:
    """Expected requests under the configured weights, simulated; the boundary
    alternatives are left to :func:`expected_requests` (a suite run does not need them)."""
    names = list(shares)
    p = np.array([shares[name] for name in names])
    rng = np.random.default_rng(_SIMULATION_SEED)
    return float(simulate(tests, names, p, _SIMULATED_RUNS, rng)[1].mean()), {}


def expected_requests(design: SplitDesign, runs: int = _SIMULATED_RUNS,
                      seed: int = _SIMULATION_SEED) -> dict[str, float]:
    """Simulated expected requests at each test's boundary alternative (one backend
    ``shift`` off, the others scaled to make up the rest), for any number of backends."""
    names = list(design.shares)
    p = np.array([design.shares[name] for name in names])
    rng = np.random.default_rng(seed)
    return {t.name: float(simulate(design.tests, names,
                                   _boundary_alternative(p, names.index(t.backend), t),
                                   runs, rng)[1].mean())
            for t in design.tests}


def _boundary_alternative(p: np.ndarray, j: int, test: OneSidedTest) -> np.ndarray:
    """Backend j at its test's alternative share, the others scaled to make up the rest."""
    alt = test.alternative if test.side == "above" else 1 - test.alternative
    q = p * (1 - alt) / (1 - p[j])
    q[j] = alt
    return q


def simulate(tests: tuple[OneSidedTest, ...], names: list[str], q: np.ndarray, runs: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(passed, requests) of ``runs`` simulated runs of the combined test when requests
    go to ``names`` with probabilities ``q``: the same decisions as SequentialSplit."""
    step = tests[0].looks[0]
    last = max(len(t.looks) for t in tests)
    counts = np.zeros((runs, len(names)), dtype=np.int64)
    state = np.zeros((runs, len(tests)), dtype=np.int64)  # 0 open, 1 accepted, -1 rejected
    requests = np.zeros(runs, dtype=np.int64)
    open_runs = np.ones(runs, dtype=bool)
    for look in range(last):
        idx = np.flatnonzero(open_runs)
        if not len(idx):
            break
        counts[idx] += rng.multinomial(step, q, size=len(idx))
        requests[idx] += step
        n = (look + 1) * step
        for i, t in enumerate(tests):
            if look >= len(t.looks):
                continue
            own = counts[idx, names.index(t.backend)]
            watched = own if t.side == "above" else n - own
            undecided = state[idx, i] == 0
            state[idx[undecided & (watched >= t.reject_from[look])], i] = -1
            state[idx[undecided & (watched <= t.accept_to[look])], i] = 1
        done = (state[idx] == -1).any(axis=1) | (state[idx] == 1).all(axis=1)
        open_runs[idx[done]] = False
    passed = (state == 1).all(axis=1)
    return passed, requests


# -- running it ------------------------------------------------------------------------------


@dataclass
class SequentialResult:
    """The verdict on one sequentially sampled split, with everything to audit it."""

    design: SplitDesign
    n: int
    """Every request counted, unexpected ones included."""
    counts: dict[str, int]
    unexpected: dict[str, int]
    looks: int
    decisions: dict[str, tuple[str, int, float]]
    """Per one-sided test: (accept / reject / open, at n, log-likelihood ratio there)."""
    passed: bool

    @property
    def expected(self) -> dict[str, float]:
        return self.design.expected

    def properties(self) -> dict[str, str]:
        """Flat string key/values for JUnit ``<property>`` elements (``split.*``)."""
        d = self.design
        props = {
            "split.passed": "true" if self.passed else "false",
            "split.test": "sequential (SPRT per backend and side)",
            "split.n": str(self.n),
            "split.looks": str(self.looks),
            "split.alpha": _fmt(d.alpha),
            "split.beta": _fmt(d.beta),
            "split.shift": _fmt(d.shift),
            **d.properties(),
        }
        props.update(tally_properties(self.counts, d.expected, self.unexpected))
        for name, (what, at, llr) in self.decisions.items():
            props[f"split.sprt.{name.replace(' ', '.')}"] = f"{what} at n={at}, llr {llr:.4g}"
        return props

    def explain(self) -> str:
        """One paragraph for a person reading a failed assertion."""
        d = self.design
        verdict = "traffic split ok" if self.passed else "traffic split FAILED"
        parts = []
        for name, count in self.counts.items():
            share = f"{count / self.n:.1%}" if self.n else "-"
            want = d.expected.get(name)
            parts.append(f"{name} {count} ({share}, expected "
                         + ("no traffic" if not want else f"{want:.1%}") + ")")
        text = f"{verdict}: {self.n} requests in {self.looks} looks: " + ", ".join(parts) + "."
        if self.unexpected:
            stray = ", ".join(
                f"{name} got {count}"
                + (" with weight 0" if name in d.expected else " but is not in the route")
                for name, count in self.unexpected.items())
            text += f" Unexpected traffic: {stray}."
        rejected = [f"{name} (llr {llr:.3g} at n={at})"
                    for name, (what, at, llr) in self.decisions.items() if what == "reject"]
        if rejected:
            text += (" The sequential test found the split off by "
                     f"{d.shift * 100:g} points or more: rejected by " + ", ".join(rejected) + ".")
        elif self.passed:
            text += " Every one-sided test accepted: consistent with the configured weights."
        text += (f" Design: looks every {d.look_every} requests, at most {d.max_n}; a correct"
                 f" split fails with probability <= {d.alpha_bound:.2g} (budget {d.alpha:g}),"
                 f" one {d.shift * 100:g} points off passes with probability <="
                 f" {d.beta_bound:.2g} (budget {d.beta:g}).")
        return text


class SequentialSplit:
    """Feed it one batch per look; it says when to stop and what the verdict is.

    >>> run = SequentialSplit({"v1": 90, "v2": 10})
    >>> while not run.done:
    ...     run.observe(send(run.design.look_every))  # doctest: +SKIP
    >>> run.result().passed  # doctest: +SKIP
    """

    def __init__(self, weights: Mapping[str, float], **design_options: float) -> None:
        self.design = split_design(weights, **design_options)  # type: ignore[arg-type]
        self.counts: dict[str, int] = {name: 0 for name in self.design.expected}
        self.n = 0
        self.looks = 0
        self.decisions: dict[str, tuple[str, int, float]] = {}

    @property
    def unexpected(self) -> dict[str, int]:
        shares = self.design.shares
        return {name: c for name, c in self.counts.items() if c and name not in shares}

    @property
    def done(self) -> bool:
        d = self.design
        if self.unexpected or any(what == "reject" for what, _, _ in self.decisions.values()):
            return True
        if not d.tests:
            return self.n >= d.max_n
        return len(self.decisions) == len(d.tests)

    def observe(self, batch: Mapping[str, int]) -> None:
        """One look: the per-backend counts of the next ``look_every`` requests."""
        if self.done:
            raise ValueError("the test has already decided: send no more requests")
        for name, count in batch.items():
            if isinstance(count, bool) or not isinstance(count, Integral) or count < 0:
                raise ValueError(f"count of {name!r} must be an integer >= 0, got {count!r}")
        total = sum(int(c) for c in batch.values())
        if total != self.design.look_every:
            raise ValueError(f"a look is {self.design.look_every} requests; this batch has "
                             f"{total}: the error rates hold only for the planned looks")
        for name, count in batch.items():
            self.counts[name] = self.counts.get(name, 0) + int(count)
        self.n += total
        look = self.looks
        self.looks += 1
        for test in self.design.tests:
            if test.name in self.decisions or look >= len(test.looks):
                continue
            own = self.counts.get(test.backend, 0)
            what = test.decide(look, own)
            if what is not None:
                self.decisions[test.name] = (what, self.n, test.llr(own, self.n))

    def result(self) -> SequentialResult:
        decisions = dict(self.decisions)
        for test in self.design.tests:
            if test.name not in decisions:
                own = self.counts.get(test.backend, 0)
                decisions[test.name] = ("open", self.n, test.llr(own, self.n) if self.n else 0.0)
        unexpected = self.unexpected
        if self.design.tests:
            passed = all(what == "accept" for what, _, _ in decisions.values())
        else:
            passed = self.n >= self.design.max_n
        return SequentialResult(self.design, self.n, dict(self.counts), unexpected,
                                self.looks, decisions, passed and not unexpected)


def _fmt(value: float) -> str:
    return f"{value:.6g}"
