"""In-memory object storage with one resourceVersion sequence and a watch log.

Like etcd behind the real API server, every write gets the next number of a single
sequence, so watchers see writes in order and can resume from any number still in
the log.  A resume from a number the log has already dropped is answered with
410 Gone, which tells a client to list again.

All methods are synchronous and run on the server's event loop, so a write and the
events it produces are atomic with respect to every reader.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class Event:
    rv: int
    type: str
    key: Key
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(eq=False)
class Subscription:
    """A watcher's inbox.  ``accept`` filters by resource and namespace."""

    key: Key | None
    namespace: str | None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    # For in-process listeners that must react synchronously (indexes), a callback.
    callback: Callable[[Event], None] | None = None

    def accept(self, ev: Event) -> bool:
        if self.key is not None and ev.key != self.key:
            return False
        if self.namespace:
            return ev.obj.get("metadata", {}).get("namespace") == self.namespace
        return True


class TooOld(Exception):
    """The requested resourceVersion is older than anything the log still holds."""


class Store:
    def __init__(self, log_size: int = 50_000) -> None:
        self._rv = 0
        self._data: dict[Key, dict[ObjKey, dict[str, Any]]] = {}
        self._log: deque[Event] = deque(maxlen=log_size)
        self._subs: set[Subscription] = set()
        # owner uid -> dependents, for garbage collection and cascading deletes
        self._dependents: dict[str, set[tuple[Key, ObjKey]]] = {}
        self._by_uid: dict[str, tuple[Key, ObjKey]] = {}

    # -- reads ------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, key: Key, ns: str, name: str) -> dict[str, Any] | None:
        return self._data.get(key, {}).get((ns, name))

    def items(self, key: Key, ns: str | None = None) -> Iterator[dict[str, Any]]:
        bucket = self._data.get(key, {})
        if ns is None:
            yield from bucket.values()
        else:
            for (ons, _), obj in bucket.items():
                if ons == ns:
                    yield obj

    def count(self) -> int:
        return sum(len(b) for b in self._data.values())

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        return self._data.get(where[0], {}).get(where[1])

    def dependents(self, owner_uid: str) -> list[tuple[Key, ObjKey]]:
        return sorted(self._dependents.get(owner_uid, ()))

    def reaches_back_to(self, rv: int) -> bool:
        """Whether the log still holds every event after ``rv``."""
        return rv >= self._rv or (bool(self._log) and self._log[0].rv <= rv + 1)

    def events_since(self, rv: int, key: Key | None = None) -> list[Event]:
        """Events after ``rv``; raises TooOld if the log no longer reaches back to it."""
        if not self.reaches_back_to(rv):
            raise TooOld(rv)
        return [e for e in self._log if e.rv > rv and (key is None or e.key == key)]

    # -- writes -----------------------------------------------------------------

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj``; stamps and returns it with its new resourceVersion."""
        meta = obj["metadata"]
        okey = (meta.get("namespace", ""), meta["name"])
        bucket = self._data.setdefault(key, {})
        old = bucket.get(okey)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        bucket[okey] = obj
        self._reindex(key, okey, old, obj)
        self._emit(Event(self._rv, MODIFIED if old is not None else ADDED, key, obj, old))
        return obj

    def remove(self, key: Key, ns: str, name: str) -> dict[str, Any] | None:
        bucket = self._data.get(key, {})
        old = bucket.pop((ns, name), None)
        if old is None:
            return None
        self._rv += 1
        gone = copy.copy(old)
        gone["metadata"] = {**old["metadata"], "resourceVersion": str(self._rv)}
        self._reindex(key, (ns, name), old, None)
        self._emit(Event(self._rv, DELETED, key, gone, old))
        return gone

    def drop_resource(self, key: Key) -> list[dict[str, Any]]:
        """Remove every object of a resource (its CRD went away)."""
        removed = []
        for ns, name in list(self._data.get(key, {})):
            gone = self.remove(key, ns, name)
            if gone is not None:
                removed.append(gone)
        self._data.pop(key, None)
        return removed

    # -- watching ---------------------------------------------------------------

    def subscribe(self, key: Key | None, namespace: str | None = None,
                  callback: Callable[[Event], None] | None = None) -> Subscription:
        sub = Subscription(key, namespace, callback=callback)
        self._subs.add(sub)
        return sub

    async def wait_for_version(self, rv: int, timeout: float) -> bool:
        """Wait until the sequence reaches ``rv``; False if ``timeout`` seconds pass
        first."""
        if self._rv >= rv:
            return True
        sub = self.subscribe(None)
        try:
            async with asyncio.timeout(timeout):
                while self._rv < rv:
                    if await sub.queue.get() is None:
                        return False
        except TimeoutError:
            return False
        finally:
            self.unsubscribe(sub)
        return True

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self) -> None:
        for sub in list(self._subs):
            if sub.callback is None:
                sub.queue.put_nowait(None)
        self._subs.clear()

    def _emit(self, ev: Event) -> None:
        self._log.append(ev)
        for sub in list(self._subs):
            if sub.accept(ev):
                if sub.callback is not None:
                    sub.callback(ev)
                else:
                    sub.queue.put_nowait(ev)

    def _reindex(self, key: Key, okey: ObjKey, old: dict[str, Any] | None,
                 new: dict[str, Any] | None) -> None:
        if old is not None:
            self._by_uid.pop(old["metadata"].get("uid", ""), None)
        if new is not None and new["metadata"].get("uid"):
            self._by_uid[new["metadata"]["uid"]] = (key, okey)
        for obj, adding in ((old, False), (new, True)):
            if obj is None:
                continue
            for ref in obj["metadata"].get("ownerReferences") or ():
                uid = ref.get("uid")
                if not uid:
                    continue
                if adding:
                    self._dependents.setdefault(uid, set()).add((key, okey))
                else:
                    deps = self._dependents.get(uid)
                    if deps is not None:
                        deps.discard((key, okey))
                        if not deps:
                            del self._dependents[uid]
