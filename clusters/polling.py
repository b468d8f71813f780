"""Asking again until a condition holds, with a deadline: the harness's one poll loop.

Some states show on no watch: a pod's answer on the wire, a process's children, a
metric.  For them the harness observes, checks, and asks again, never sleeping
"long enough" instead.  The interval starts short (so a fast implementation is not
slowed down) and grows to a ceiling (so a slow one is not hammered).  The loop
returns what it saw last and whether the condition held; the caller words the
failure, because only it knows what was being waited for.  Where a watch or an
event exists, wait on that instead (``clusters/tests/waiting.py``'s ``until``, the
store's subscriptions).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Polled(Generic[T]):
    """How a poll ended: whether the condition held, the last value, how many looks."""

    held: bool
    value: T
    attempts: int


def poll(observe: Callable[[], T], holds: Callable[[T], bool], *, timeout: float,
         interval: float = 0.05, max_interval: float = 0.5) -> Polled[T]:
    """Call ``observe`` until ``holds(value)`` or ``timeout`` seconds have passed.

    The first observation is made at once and the last one at the deadline or just
    before, so a condition that holds in time is never reported as missed.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        value = observe()
        if holds(value):
            return Polled(True, value, attempts)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Polled(False, value, attempts)
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)


async def apoll(observe: Callable[[], T | Awaitable[T]], holds: Callable[[T], bool], *,
                timeout: float, interval: float = 0.05,
                max_interval: float = 0.5) -> Polled[T]:
    """``poll`` for the event loop: ``observe`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        value = observe()
        if inspect.isawaitable(value):
            value = await value
        if holds(value):  # type: ignore[arg-type]
            return Polled(True, value, attempts)  # type: ignore[arg-type]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Polled(False, value, attempts)  # type: ignore[arg-type]
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)
