"""The harness's one poll loop: it returns the value that satisfied the condition, or
the last one seen once the deadline passed, and counts its looks."""

from __future__ import annotations

import asyncio
import itertools

from clusters.polling import apoll, poll


def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    polled = poll(lambda: next(counter), lambda n: n >= 3, timeout=30, interval=0.001)
    assert (polled.held, polled.value, polled.attempts) == (True, 3, 4)


def test_reports_the_last_value_when_the_deadline_passes() -> None:
    counter = itertools.count()
    polled = poll(lambda: next(counter), lambda n: n < 0, timeout=0.05, interval=0.001)
    assert not polled.held
    assert polled.attempts >= 2 and polled.value == polled.attempts - 1


def test_a_zero_timeout_still_looks_once() -> None:
    polled = poll(lambda: "ready", lambda v: v == "ready", timeout=0)
    assert (polled.held, polled.attempts) == (True, 1)


def test_async_poll_awaits_coroutine_observations() -> None:
    counter = itertools.count()

    async def observe() -> int:
        await asyncio.sleep(0)
        return next(counter)

    polled = asyncio.run(apoll(observe, lambda n: n == 2, timeout=30, interval=0.001))
    assert (polled.held, polled.value, polled.attempts) == (True, 2, 3)
    missed = asyncio.run(apoll(lambda: 0, lambda n: n == 1, timeout=0.02, interval=0.001))
    assert not missed.held and missed.value == 0
