"""Waiting for a condition observed on the wire, never for a fixed time.

A conformance test must not assert before the implementation had a chance to apply
a change, and must not sleep "long enough" either: it polls an observation until
the condition holds, with a deadline, and fails with the last observation when the
deadline passes.  The poll interval grows from 50 ms to 500 ms so fast
implementations are not slowed down and slow ones are not hammered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from clusters.polling import poll

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
    polled = poll(observe, holds, timeout=timeout)
    if not polled.held:
        raise NotConverged(f"timed out after {timeout:g}s ({polled.attempts} observations) "
                           f"waiting until {what}; last observed: {polled.value!r}"[:2000])
    return polled.value
