"""Steady traffic's bookkeeping, against a fake namespace (no cluster)."""

from __future__ import annotations

import threading

import pytest

from conformance.curl import Outcome
from conformance.traffic import Observation, SteadyTraffic, stats

OK, RESET = Outcome(200, 0), Outcome(0, 56)


class FakeNamespace:
    name = "fake"

    def __init__(self, script: list[Outcome] | None = None, fail_after: int | None = None):
        self.script = script or []
        self.calls = 0
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def request_each(self, client, urls, *, timeout, per_second):  # type: ignore[no-untyped-def]
        with self.lock:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise AssertionError("kubectl exec failed")
            taken, self.script = self.script[:len(urls)], self.script[len(urls):]
        return [*taken, *([OK] * (len(urls) - len(taken)))]


def test_stats_count_failures_and_their_window() -> None:
    seen = [Observation(t, o, t) for t, o in [(0.0, OK), (1.0, RESET), (2.5, Outcome(503, 0)),
                                              (3.0, OK)]]
    s = stats(seen)
    assert (s.sent, s.succeeded, s.failed, s.error_window_s) == (4, 2, 2, 1.5)
    assert s.success_rate == 0.5
    assert dict(s.properties("near")) == {"near_requests": "4", "near_success_rate": "0.500",
                                          "near_error_window_s": "1.5"}
    assert stats([]).error_window_s == 0.0 and stats([]).success_rate == 0.0


def test_traffic_is_bounded_and_keeps_every_outcome_in_order() -> None:
    ns = FakeNamespace([OK, RESET, OK])
    with SteadyTraffic(ns, "sleep", "http://x/", batch=4, max_requests=10) as t:  # type: ignore[arg-type]
        assert t.finished(within=30)  # it ends by itself, at max_requests
    assert [o.outcome for o in t.seen][:3] == [OK, RESET, OK] and len(t.seen) == 10
    assert ns.calls == 3  # 4 + 4 + 2: never more than max_requests
    assert all(a.batch_began <= b.batch_began for a, b in zip(t.seen, t.seen[1:], strict=False))


def test_traffic_that_breaks_says_so_when_stopped() -> None:
    ns = FakeNamespace(fail_after=1)
    t = SteadyTraffic(ns, "sleep", "http://x/", batch=2, max_requests=100)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match=r"did not flow|kubectl exec failed"), t:
        t.wait_for(50, timeout=30)
    with pytest.raises(AssertionError, match="kubectl exec failed"):
        t.stop()


def test_sent_after_takes_whole_batches_begun_later() -> None:
    t = SteadyTraffic(FakeNamespace(), "sleep", "http://x/")  # type: ignore[arg-type]
    t.seen = [Observation(0.1, OK, 0.0), Observation(1.1, RESET, 1.0), Observation(1.3, OK, 1.0)]
    assert [o.at for o in t.sent_after(0.5)] == [1.1, 1.3]
