"""Pod events as kubelet records them: a repeat of the same event counts up.

client-go's event correlator (k8s.io/client-go/tools/record/events_cache.go,
``EventCorrelator`` and ``eventLogger.eventObserve``) keys an event by its source,
involved object, type, reason and message; a repeat patches the existing Event's
``count`` and ``lastTimestamp`` instead of creating another.  So a probe failing every
second for an hour is one Event ``x3600`` that ``kubectl describe`` shows in one line,
not 3600 objects in the store; real components that crash-loop or stay unready for a
while (istiod waiting for its CA, say) would otherwise fill it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..kubeclient import KubeError

__all__ = ["EventRecorder"]

CACHE_SIZE = 4096
"""Events remembered for counting (client-go's default cache holds 4096 too)."""


class _Client(Protocol):
    def create(self, path: str, body: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...
    def patch(self, path: str, body: Any) -> Awaitable[dict[str, Any]]: ...


@dataclass
class _Seen:
    name: str
    count: int


class EventRecorder:
    """Records Events about pods for one node, counting repeats."""

    def __init__(self, client: _Client, host: str, *, clock: Callable[[], str],
                 component: str = "kubelet", cache_size: int = CACHE_SIZE) -> None:
        """``clock`` gives timestamps as the agent writes them everywhere else."""
        self.client = client
        self.host = host
        self.component = component
        self.cache_size = cache_size
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()

    async def record(self, pod: dict[str, Any], reason: str, message: str,
                     kind: str = "Normal") -> None:
        """Create the Event, or count a repeat on the one already made.  An Event gone
        from the store (deleted, or its namespace) is made again."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        key = (meta["uid"], kind, reason, message)
        ts = self.clock()
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            try:
                await self.client.patch(f"/api/v1/namespaces/{ns}/events/{seen.name}",
                                        {"count": seen.count + 1, "lastTimestamp": ts})
                seen.count += 1
                return
            except KubeError as exc:
                if exc.status != 404:
                    raise
                del self._seen[key]
        created = await self.client.create(f"/api/v1/namespaces/{ns}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": ns, "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        })
        self._seen[key] = _Seen(created["metadata"]["name"], 1)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)

    def forget(self, uid: str) -> None:
        """Drop what is remembered about a pod that is gone."""
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
