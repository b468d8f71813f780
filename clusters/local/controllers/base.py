"""The shape every in-process controller shares: watch, queue keys, reconcile.

Like client-go's informer + workqueue: store events only mark a key dirty, and a
loop reconciles each dirty key against the current state, so bursts of events
collapse into one reconcile and a controller never acts on a stale event.  The
controllers live in the API server's process and call ``Api`` directly; they see
and produce exactly the objects clients see.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clusters.background import BackgroundTask

from ..apiserver import errors
from ..apiserver.api import Api
from ..apiserver.meta import now_micro, random_suffix
from ..apiserver.store import Event, Subscription

log = logging.getLogger("controllers")

ObjRef = tuple[str, str]  # (namespace, name)

# Retries after an error back off up to this many seconds, then keep trying at it.
MAX_BACKOFF = 5.0


class Controller:
    """Subclasses set ``watches`` and implement ``keys_for`` and ``reconcile``."""

    name = "controller"
    watches: tuple[tuple[str, str] | None, ...] = ()

    def __init__(self, api: Api) -> None:
        self.api = api
        self._dirty: dict[Any, None] = {}
        self._wakeup = asyncio.Event()
        self._subs: list[Subscription] = []
        self._failures: dict[Any, int] = {}
        self._background = BackgroundTask(self._loop, self.name)
        self._retry_handles: set[asyncio.TimerHandle] = set()
        self._requeues: dict[Any, asyncio.TimerHandle] = {}

    def start(self) -> None:
        for key in self.watches:
            self._subs.append(self.api.store.subscribe(key, callback=self._on_event))
        self.resync()
        self._background.start()

    async def stop(self) -> None:
        for sub in self._subs:
            self.api.store.unsubscribe(sub)
        for handle in self._retry_handles:
            handle.cancel()
        await self._background.stop()

    def resync(self) -> None:
        """Queue every key this controller owns (at start)."""

    def enqueue(self, key: Any) -> None:
        self._dirty[key] = None
        self._wakeup.set()

    def requeue_after(self, key: Any, seconds: float) -> None:
        """Reconcile ``key`` again in ``seconds`` (a schedule's next time, a deadline)
        even if nothing changes meanwhile; cancelled when the controller stops.  One
        such timer per key: a later call replaces the earlier (every reconcile asks
        again, and timers must not pile up with the events that caused them)."""
        earlier = self._requeues.pop(key, None)
        if earlier is not None:
            earlier.cancel()
        handle = asyncio.get_running_loop().call_later(max(0.0, seconds), self.enqueue, key)
        self._requeues[key] = handle
        self._retry_handles.add(handle)

    def keys_for(self, ev: Event) -> list[Any]:
        raise NotImplementedError

    def reconcile(self, key: Any) -> None:
        raise NotImplementedError

    def _on_event(self, ev: Event) -> None:
        for key in self.keys_for(ev):
            self.enqueue(key)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch = list(self._dirty)
            self._dirty.clear()
            for key in batch:
                try:
                    self.reconcile(key)
                    self._failures.pop(key, None)
                except Exception as exc:
                    n = self._failures.get(key, 0) + 1
                    self._failures[key] = n
                    delay = min(MAX_BACKOFF, 0.05 * 2**n)
                    level = logging.DEBUG if isinstance(exc, errors.ApiError) else logging.ERROR
                    log.log(level, "%s: reconcile %s failed (try %d): %s", self.name, key, n,
                            exc, exc_info=level == logging.ERROR)
                    handle = asyncio.get_running_loop().call_later(delay, self.enqueue, key)
                    self._retry_handles.add(handle)
                # Let the server answer requests between reconciles of a large batch.
                await asyncio.sleep(0)
            clock = asyncio.get_running_loop().time()
            self._retry_handles = {h for h in self._retry_handles
                                   if not h.cancelled() and h.when() > clock}


def record_event(api: Api, involved: dict[str, Any], reason: str, message: str,
                 kind: str = "Normal", component: str = "controller") -> None:
    """An Event about ``involved``, as ``kubectl describe`` shows them."""
    meta = involved["metadata"]
    ns = meta.get("namespace") or "default"
    ts = now_micro()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{random_suffix(10)}", "namespace": ns},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "firstTimestamp": ts[:19] + "Z",
        "lastTimestamp": ts[:19] + "Z",
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "",
    }
    try:
        api.create(api.rt("", "events"), "v1", ns, event)
    except errors.ApiError as exc:
        log.debug("event %s for %s not recorded: %s", reason, meta["name"], exc)


def is_pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def is_pod_active(pod: dict[str, Any]) -> bool:
    """Counts toward a ReplicaSet's replicas: not terminating, not finished."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def owner_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def owned(api: Api, key: tuple[str, str], owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of resource ``key`` in ``owner``'s namespace that it controls."""
    uid = owner["metadata"]["uid"]
    return [o for o in api.store.items(key, owner["metadata"]["namespace"])
            if owner_uid(o) == uid]


def controller_keys(ev: Event, kind: str) -> list[ObjRef]:
    """The (namespace, name) of the ``kind`` controlling the object of ``ev`` (as it is
    now, or was before the change), if one does."""
    for obj in (ev.obj, ev.old):
        if obj is None:
            continue
        for ref in obj["metadata"].get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == kind:
                return [(obj["metadata"]["namespace"], ref["name"])]
    return []
