"""The node agent's Events count repeats, as kubelet's event correlator does."""

from __future__ import annotations

import asyncio
from typing import Any

from clusters.local.kubeclient import KubeError
from clusters.local.node.events import EventRecorder

POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"}}


def fixed_clock() -> str:
    return "2026-12-03T20:00:00Z"


class FakeEvents:
    """Stands in for the API's events: creates name them, patches must find them."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        name = f"{body['metadata']['generateName']}{len(self.store)}"
        self.store[name] = {**body, "metadata": {**body["metadata"], "name": name}}
        self.calls.append(("create", path))
        return self.store[name]

    async def patch(self, path: str, body: Any) -> dict[str, Any]:
        self.calls.append(("patch", path))
        name = path.rsplit("/", 1)[1]
        if name not in self.store:
            raise KubeError(404, "NotFound", f'events "{name}" not found')
        self.store[name].update(body)
        return self.store[name]


def record(recorder: EventRecorder, *args: Any) -> None:
    asyncio.run(recorder.record(*args))


def test_a_repeat_counts_up_on_one_event() -> None:
    api = FakeEvents()
    times = iter(["t1", "t2", "t3"])
    recorder = EventRecorder(api, "node-1", clock=lambda: next(times))
    for _ in range(3):
        record(recorder, POD, "Unhealthy", "Readiness probe failed: refused", "Warning")
    [event] = api.store.values()
    assert (event["count"], event["firstTimestamp"], event["lastTimestamp"]) == (3, "t1", "t3")
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert [c for c, _ in api.calls] == ["create", "patch", "patch"]
    assert api.calls[1][1] == f"/api/v1/namespaces/shop/events/{event['metadata']['name']}"


def test_another_message_reason_type_or_pod_is_another_event() -> None:
    api = FakeEvents()
    recorder = EventRecorder(api, "node-1", clock=fixed_clock)
    other_pod = {"metadata": {**POD["metadata"], "uid": "u-2"}}
    for args in ((POD, "Unhealthy", "a", "Warning"), (POD, "Unhealthy", "b", "Warning"),
                 (POD, "Killing", "a", "Warning"), (POD, "Unhealthy", "a", "Normal"),
                 (other_pod, "Unhealthy", "a", "Warning")):
        record(recorder, *args)
    assert len(api.store) == 5
    assert all(e["count"] == 1 for e in api.store.values())


def test_an_event_gone_from_the_store_is_made_again() -> None:
    api = FakeEvents()
    recorder = EventRecorder(api, "node-1", clock=fixed_clock)
    record(recorder, POD, "Started", "Started container c")
    api.store.clear()  # the namespace's events were deleted
    record(recorder, POD, "Started", "Started container c")
    [event] = api.store.values()
    assert event["count"] == 1


def test_a_forgotten_pod_and_the_cache_bound_start_counting_afresh() -> None:
    api = FakeEvents()
    recorder = EventRecorder(api, "node-1", clock=fixed_clock, cache_size=2)
    record(recorder, POD, "Pulled", "m")
    recorder.forget("u-1")
    record(recorder, POD, "Pulled", "m")
    assert len(api.store) == 2  # the pod is gone: a new one with its uid starts over
    record(recorder, POD, "Started", "m")
    record(recorder, POD, "Created", "m")  # evicts the oldest, ("Pulled", "m")
    record(recorder, POD, "Pulled", "m")
    assert len(api.store) == 5
