"""Steady, bounded traffic from a client pod while a test breaks something.

A resilience test must know what clients saw *during* a fault, not only after it: a
background thread sends batches of requests with the real curl in the client pod
(``per_second`` a second, each on a connection of its own, so every request meets
the data path as it is at that moment) until it is stopped, and keeps each outcome
with the time it was sent.  The traffic is bounded twice, by ``max_requests`` and by
``deadline_s``, so it always ends by itself.

Times are estimated: a batch's start as the harness saw it, plus one interval per
request before it in the batch (curl's ``--rate`` spaces them); a request that hangs
until its timeout delays the rest of its batch, so failures late in a batch may be
dated a little early.  Good enough to report an error window, never asserted on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .apps import AppNamespace
from .curl import Outcome


@dataclass(frozen=True)
class Observation:
    at: float
    """Seconds since the traffic began (estimated, see the module's doc)."""
    outcome: Outcome
    batch_began: float
    """When its batch began: the request was surely sent after this."""


@dataclass(frozen=True)
class TrafficStats:
    """What a stream of requests amounted to, for a test's report."""

    sent: int
    succeeded: int
    error_window_s: float
    """From the first failed request to the last (0 when none failed)."""

    @property
    def failed(self) -> int:
        return self.sent - self.succeeded

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.sent if self.sent else 0.0

    def properties(self, prefix: str) -> list[tuple[str, str]]:
        """``(name, value)`` pairs for ``record_property``: JUnit and HTML show them."""
        return [(f"{prefix}_requests", str(self.sent)),
                (f"{prefix}_success_rate", f"{self.success_rate:.3f}"),
                (f"{prefix}_error_window_s", f"{self.error_window_s:.1f}")]


def succeeded(outcome: Outcome) -> bool:
    return outcome.answered and outcome.status == 200


def stats(seen: list[Observation],
          ok: Callable[[Outcome], bool] = succeeded) -> TrafficStats:
    failures = [o.at for o in seen if not ok(o.outcome)]
    window = failures[-1] - failures[0] if failures else 0.0
    return TrafficStats(len(seen), len(seen) - len(failures), window)


class SteadyTraffic:
    """``with SteadyTraffic(ns, "sleep", url) as traffic: ...``; then ``traffic.seen``."""

    def __init__(self, ns: AppNamespace, client: str, url: str, *, per_second: int = 5,
                 batch: int = 10, timeout: float = 5, deadline_s: float = 300,
                 max_requests: int = 2000) -> None:
        self.ns, self.client, self.url = ns, client, url
        self.per_second, self.batch, self.timeout = per_second, batch, timeout
        self.deadline_s, self.max_requests = deadline_s, max_requests
        self.seen: list[Observation] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"traffic {ns.name}/{client}")
        self._start = 0.0
        self._batches = threading.Condition()

    def __enter__(self) -> SteadyTraffic:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the traffic began, on the same clock as ``Observation.at``."""
        return time.monotonic() - self._start

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and len(self.seen) < self.max_requests \
                    and self.now() < self.deadline_s:
                count = min(self.batch, self.max_requests - len(self.seen))
                began = self.now()
                outcomes = self.ns.request_each(self.client, [self.url] * count,
                                                timeout=self.timeout,
                                                per_second=self.per_second)
                with self._batches:
                    self.seen += [Observation(began + i / self.per_second, o, began)
                                  for i, o in enumerate(outcomes)]
                    self._batches.notify_all()
        except BaseException as exc:  # re-raised in the test by stop()
            self._error = exc
        finally:
            with self._batches:
                self._batches.notify_all()

    def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` more requests have been observed (the traffic really is
        flowing before the fault), or the traffic ended or ``timeout`` passed."""
        want = len(self.seen) + count
        with self._batches:
            self._batches.wait_for(lambda: len(self.seen) >= want or not self._thread.is_alive(),
                                   timeout=timeout)
        if len(self.seen) < want:
            self.stop()
            raise AssertionError(f"traffic from {self.client} to {self.url} did not flow: "
                                 f"{len(self.seen)} of {want} requests observed")

    def finished(self, within: float = 0) -> bool:
        """Whether the traffic ended by itself (its count or deadline), waiting up to
        ``within`` seconds for it."""
        self._thread.join(within)
        return not self._thread.is_alive()

    def stop(self) -> list[Observation]:
        """Stop after the batch in flight and return everything observed; raises what
        ended the traffic early, if anything did."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout * self.batch + 60)
        if self._error is not None:
            raise AssertionError(f"traffic from {self.client} to {self.url} failed: "
                                 f"{self._error}") from self._error
        return self.seen

    def sent_after(self, t: float) -> list[Observation]:
        """The requests surely sent after ``t`` (their batch began after it)."""
        return [o for o in self.seen if o.batch_began >= t]
