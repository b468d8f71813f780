"""Waiting for a condition observed on the wire, never for a fixed time.

A conformance test must not assert before the implementation had a chance to apply
a change, and must not sleep "long enough" either: it polls an observation until
the condition holds, with a deadline, and fails with the last observation when the
deadline passes.  The poll interval grows from 50 ms to 500 ms so fast
implementations are not slowed down and slow ones are not hammered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How long an implementation may take to apply a change; the suite's
# --convergence-timeout sets it for the run.
DEFAULT_TIMEOUT = 60.0


def set_default_timeout(seconds: float) -> None:
    global DEFAULT_TIMEOUT
    if seconds <= 0:
        raise ValueError("the convergence timeout must be positive")
    DEFAULT_TIMEOUT = seconds


class NotConverged(AssertionError):
    """The condition did not hold before the deadline; the message has the last state."""


def eventually(observe: Callable[[], T], holds: Callable[[T], bool], *, what: str,
               timeout: float | None = None) -> T:
    """Call ``observe`` until ``holds(result)``; return that result.

    ``what`` completes the sentence "timed out waiting until ..." in the failure.
    """
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    deadline = time.monotonic() + timeout
    interval = 0.05
    attempts = 0
    while True:
        attempts += 1
        seen = observe()
        if holds(seen):
            return seen
        if time.monotonic() >= deadline:
            raise NotConverged(f"timed out after {timeout:g}s ({attempts} observations) "
                               f"waiting until {what}; last observed: {seen!r}"[:2000])
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 0.5)
