"""Waiting for the cluster's controllers, by watching: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch

from clusters.polling import poll

T = TypeVar("T")


def until_value(fn: Callable[[], T], check: Callable[[T], bool], timeout: float = 20) -> T:
    """Ask again until ``check`` holds, for what no watch shows (a DNS server's answer,
    a pod's processes): the state changes on its own time, not one a sleep could
    guess.  Fails with the last value on timeout."""
    polled = poll(fn, check, timeout=timeout, interval=0.02, max_interval=0.02)
    if not polled.held:
        raise AssertionError(f"not within {timeout}s; last: {polled.value}")
    return polled.value


def until(list_fn: Callable[..., Any], predicate: Callable[[list[Any]], bool],
          timeout: float = 60, **kwargs: Any) -> list[Any]:
    """Watch ``list_fn`` (a client list method) until ``predicate(items)`` holds for
    the current set of items; returns them.  Fails with the last state on timeout
    (a hang guard, far beyond the seconds a controller takes on a loaded machine)."""
    deadline = time.monotonic() + timeout
    result = list_fn(**kwargs)
    items = {(i.metadata.namespace, i.metadata.name): i for i in result.items}
    if predicate(list(items.values())):
        return list(items.values())
    rv = result.metadata.resource_version
    w = watch.Watch()
    while time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        for ev in w.stream(list_fn, resource_version=rv, timeout_seconds=remaining, **kwargs):
            obj = ev["object"]
            key = (obj.metadata.namespace, obj.metadata.name)
            if ev["type"] == "DELETED":
                items.pop(key, None)
            else:
                items[key] = obj
            rv = obj.metadata.resource_version
            if predicate(list(items.values())):
                w.stop()
                return list(items.values())
            if time.monotonic() >= deadline:
                w.stop()
                break
    raise AssertionError(
        f"condition not met within {timeout}s; last items: "
        f"{sorted(f'{k[0]}/{k[1]}' for k in items)}")
