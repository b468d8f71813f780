"""Object lifecycles: namespaces emptying on deletion, a default ServiceAccount per
namespace, and the garbage collector that follows ownerReferences."""

from __future__ import annotations

import copy
from typing import Any

from ..apiserver import errors
from ..apiserver.api import DeleteOptions
from ..apiserver.store import DELETED, Event
from .base import Controller

NAMESPACES = ("", "namespaces")
SERVICEACCOUNTS = ("", "serviceaccounts")


class NamespaceController(Controller):
    """A deleted namespace deletes everything in it, then goes itself."""

    name = "namespace-controller"
    watches = (None,)

    def resync(self) -> None:
        for ns in self.api.store.items(NAMESPACES):
            if ns["metadata"].get("deletionTimestamp"):
                self.enqueue(ns["metadata"]["name"])

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == NAMESPACES:
            return [ev.obj["metadata"]["name"]] if ev.obj["metadata"].get(
                "deletionTimestamp") and ev.type != DELETED else []
        ns = ev.obj["metadata"].get("namespace")
        if ev.type == DELETED and ns:
            nso = self.api.store.get(NAMESPACES, "", ns)
            if nso is not None and nso["metadata"].get("deletionTimestamp"):
                return [ns]
        return []

    def reconcile(self, ns: str) -> None:
        nso = self.api.store.get(NAMESPACES, "", ns)
        if nso is None or not nso["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for rt in self.api.registry.all():
            if not rt.namespaced or rt.virtual:
                continue
            for obj in list(self.api.store.items(rt.key, ns)):
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    self.api.delete(rt, ns, obj["metadata"]["name"],
                                    DeleteOptions(propagation="Background"))
                except errors.ApiError as exc:
                    if exc.code != 404:
                        raise
        if remaining:
            # Re-check once the deletions took effect (pods may take their grace period).
            left = sum(1 for rt in self.api.registry.all() if rt.namespaced and not rt.virtual
                       for _ in self.api.store.items(rt.key, ns))
            if left:
                return
        self.api.force_remove(self.api.rt(*NAMESPACES), "", ns)


class ServiceAccountController(Controller):
    """Every active namespace has a ``default`` ServiceAccount, as pods assume."""

    name = "serviceaccount-controller"
    watches = (NAMESPACES, SERVICEACCOUNTS)

    def resync(self) -> None:
        for ns in self.api.store.items(NAMESPACES):
            self.enqueue(ns["metadata"]["name"])

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == NAMESPACES:
            return [] if ev.type == DELETED else [ev.obj["metadata"]["name"]]
        if ev.type == DELETED and ev.obj["metadata"]["name"] == "default":
            return [ev.obj["metadata"]["namespace"]]
        return []

    def reconcile(self, ns: str) -> None:
        nso = self.api.store.get(NAMESPACES, "", ns)
        if nso is None or nso["metadata"].get("deletionTimestamp"):
            return
        if self.api.store.get(SERVICEACCOUNTS, ns, "default") is not None:
            return
        try:
            self.api.create(self.api.rt(*SERVICEACCOUNTS), "v1", ns, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": ns}})
        except errors.ApiError as exc:
            if exc.code != 409:
                raise


class GarbageCollector(Controller):
    """Deletes objects whose owners are all gone; finishes foreground deletions.

    Keys are object uids.  A dependent goes once none of its ownerReferences names
    an existing object; an owner being deleted in the foreground keeps its
    ``foregroundDeletion`` finalizer until its dependents are gone.
    """

    name = "garbage-collector"
    watches = (None,)

    def resync(self) -> None:
        for rt in self.api.registry.all():
            for obj in self.api.store.items(rt.key):
                if obj["metadata"].get("ownerReferences") or _foreground(obj):
                    self.enqueue(obj["metadata"]["uid"])

    def keys_for(self, ev: Event) -> list[Any]:
        meta = ev.obj["metadata"]
        keys: list[Any] = []
        if ev.type == DELETED:
            # Its dependents may now be orphans.
            keys.extend(self._dependent_uids(meta.get("uid", "")))
            # An owner waiting in the foreground may now be free to go.
            for ref in meta.get("ownerReferences") or ():
                keys.append(ref.get("uid"))
        else:
            if meta.get("ownerReferences") and ev.type == "ADDED":
                keys.append(meta["uid"])  # created after its owner went?
            if _foreground(ev.obj):
                keys.append(meta["uid"])
        return [k for k in keys if k]

    def _dependent_uids(self, uid: str) -> list[str]:
        out = []
        for key, (ns, name) in self.api.store.dependents(uid):
            dep = self.api.store.get(key, ns, name)
            if dep is not None:
                out.append(dep["metadata"]["uid"])
        return out

    def reconcile(self, uid: str) -> None:
        obj = self.api.store.by_uid(uid)
        if obj is None:
            return
        rt = self.api.registry.by_kind(_group(obj), obj["kind"])
        if rt is None:
            return
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        refs = meta.get("ownerReferences") or []
        if refs and not meta.get("deletionTimestamp"):
            live = [r for r in refs if self.api.store.by_uid(r.get("uid", "")) is not None]
            if not live:
                self._delete(rt, ns, meta["name"], "Background")
                return
            owner_foreground = any(_foreground(self.api.store.by_uid(r["uid"]) or {})
                                   and r.get("blockOwnerDeletion") for r in live)
            if owner_foreground:
                self._delete(rt, ns, meta["name"], "Foreground")
                return
        if _foreground(obj):
            deps = self._dependent_uids(uid)
            blocking = []
            for dep_uid in deps:
                dep = self.api.store.by_uid(dep_uid)
                if dep is None:
                    continue
                blocking.append(dep)
                if not dep["metadata"].get("deletionTimestamp"):
                    dep_rt = self.api.registry.by_kind(_group(dep), dep["kind"])
                    if dep_rt is not None:
                        self._delete(dep_rt, dep["metadata"].get("namespace", ""),
                                     dep["metadata"]["name"], "Foreground")
            if not blocking:
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or ()
                                                 if f != "foregroundDeletion"]
                self.api.update(rt, rt.versions[0], ns, meta["name"], new)

    def _delete(self, rt: Any, ns: str, name: str, propagation: str) -> None:
        try:
            self.api.delete(rt, ns, name, DeleteOptions(propagation=propagation))
        except errors.ApiError as exc:
            if exc.code != 404:
                raise


def _foreground(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and "foregroundDeletion" in (
        meta.get("finalizers") or ())


def _group(obj: dict[str, Any]) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""
