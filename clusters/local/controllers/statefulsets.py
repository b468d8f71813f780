"""StatefulSet controller: pods with stable names, made and removed in order.

As k8s.io/kubernetes ``pkg/controller/statefulset`` does, in what a user sees:

- pod ``i`` is ``<set>-<i>``, with ``hostname`` ``<set>-<i>`` and ``subdomain`` the
  set's ``serviceName`` (so the headless Service gives it a stable DNS name), and the
  labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
  ``controller-revision-hash``;
- ``OrderedReady``: pod ``i`` is made only when pods ``0..i-1`` are Running and Ready,
  and scaling down removes the highest ordinal first, one at a time; ``Parallel`` makes
  and removes them all at once;
- a pod that failed or was deleted is made again under the same name;
- ``RollingUpdate``: when the template changes, pods at or above ``partition`` whose
  revision differs are replaced from the highest ordinal down, one at a time, once
  every other pod is Ready; ``OnDelete`` replaces only pods someone deleted;
- ``status``: replicas, ready/available/current/updated counts, current and update
  revisions, observed generation.

Simplified: no ControllerRevision objects (a revision is ``<set>-<hash of the
template>``), and ``volumeClaimTemplates`` are refused by the API (no
PersistentVolumeClaims are served here).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..apiserver.api import DeleteOptions
from ..apiserver.meta import controller_ref, short_hash
from ..apiserver.store import Event
from .base import Controller, controller_keys, is_pod_ready, owned, record_event
from .workloads import write_status

PODS = ("", "pods")
STATEFULSETS = ("apps", "statefulsets")
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
REVISION = "controller-revision-hash"


def revision(sts: dict[str, Any]) -> str:
    template = (sts.get("spec") or {}).get("template") or {}
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return f"{sts['metadata']['name']}-{short_hash(text)}"


def ordinal(sts: dict[str, Any], pod: dict[str, Any]) -> int | None:
    prefix = sts["metadata"]["name"] + "-"
    name = pod["metadata"]["name"]
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None


def _running_and_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


class StatefulSetController(Controller):
    name = "statefulset-controller"
    watches = (STATEFULSETS, PODS)

    def resync(self) -> None:
        for sts in self.api.store.items(STATEFULSETS):
            self.enqueue((sts["metadata"]["namespace"], sts["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == STATEFULSETS:
            return [(ev.obj["metadata"]["namespace"], ev.obj["metadata"]["name"])]
        return controller_keys(ev, "StatefulSet")

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        sts = self.api.store.get(STATEFULSETS, ns, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        spec = sts.get("spec") or {}
        want = int(spec.get("replicas", 1))
        update_rev = revision(sts)
        pods: dict[int, dict[str, Any]] = {}
        for pod in owned(self.api, PODS, sts):
            i = ordinal(sts, pod)
            if i is not None:
                pods[i] = pod
        self._step(sts, pods, want, update_rev)
        self._write_status(sts, want, update_rev)

    def _step(self, sts: dict[str, Any], pods: dict[int, dict[str, Any]], want: int,
              update_rev: str) -> None:
        """One round of changes; the events they cause bring the next round."""
        spec = sts.get("spec") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        # Failed pods are replaced (deleted here, made again on the next round).
        for _, pod in sorted(pods.items()):
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") and \
                    not pod["metadata"].get("deletionTimestamp"):
                self._delete(sts, pod)
                if ordered:
                    return
        for i in range(want):
            pod = pods.get(i)
            if pod is None:
                self._create(sts, i, update_rev)
                if ordered:
                    return
                continue
            if ordered and not (_running_and_ready(pod)
                                and not pod["metadata"].get("deletionTimestamp")):
                return  # wait for it before going on
        doomed = sorted((i for i in pods if i >= want), reverse=True)
        for i in doomed:
            if pods[i]["metadata"].get("deletionTimestamp"):
                if ordered:
                    return
                continue
            self._delete(sts, pods[i])
            if ordered:
                return
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0))
        current = [pods[i] for i in range(want) if i in pods]
        if len(current) < want or not all(_running_and_ready(p) for p in current):
            return
        for i in range(want - 1, partition - 1, -1):
            pod = pods[i]
            if (pod["metadata"].get("labels") or {}).get(REVISION) != update_rev:
                self._delete(sts, pod)
                return

    def _create(self, sts: dict[str, Any], i: int, rev: str) -> None:
        spec = sts.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        name = f"{sts['metadata']['name']}-{i}"
        labels = dict(tmeta.get("labels") or {})
        labels.update({POD_NAME: name, POD_INDEX: str(i), REVISION: rev})
        pod_spec = copy.deepcopy(template.get("spec") or {})
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        pod: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": sts["metadata"]["namespace"],
                         "labels": labels, "ownerReferences": [controller_ref(sts)]},
            "spec": pod_spec}
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        self.api.create(self.api.rt(*PODS), "v1", sts["metadata"]["namespace"], pod)
        record_event(self.api, sts, "SuccessfulCreate",
                     f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful",
                     component=self.name)

    def _delete(self, sts: dict[str, Any], pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        self.api.delete(self.api.rt(*PODS), pod["metadata"]["namespace"], name,
                        DeleteOptions())
        record_event(self.api, sts, "SuccessfulDelete",
                     f"delete Pod {name} in StatefulSet {sts['metadata']['name']} successful",
                     component=self.name)

    def _write_status(self, sts: dict[str, Any], want: int, update_rev: str) -> None:
        pods = [p for p in owned(self.api, PODS, sts)
                if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if is_pod_ready(p))
        updated = sum(1 for p in pods
                      if (p["metadata"].get("labels") or {}).get(REVISION) == update_rev)
        old = sts.get("status") or {}
        current_rev = update_rev if updated == len(pods) == want else \
            old.get("currentRevision", update_rev)
        current = sum(1 for p in pods
                      if (p["metadata"].get("labels") or {}).get(REVISION) == current_rev)
        status = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                  "currentReplicas": current, "updatedReplicas": updated,
                  "currentRevision": current_rev, "updateRevision": update_rev,
                  "observedGeneration": sts["metadata"].get("generation", 1),
                  "collisionCount": 0}
        for field in ("readyReplicas", "availableReplicas", "currentReplicas",
                      "updatedReplicas"):
            if not status[field]:
                del status[field]
        write_status(self.api, STATEFULSETS, sts, status)
