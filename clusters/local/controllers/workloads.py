"""ReplicaSet, Deployment and DaemonSet controllers: desired replicas become Pods."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from ..apiserver import errors
from ..apiserver.api import DeleteOptions
from ..apiserver.meta import controller_ref, now, short_hash
from ..apiserver.selectors import label_selector_from_spec
from ..apiserver.store import Event
from .base import (
    Controller,
    controller_keys,
    is_pod_active,
    is_pod_ready,
    owned,
    owner_uid,
    record_event,
)

PODS = ("", "pods")
REPLICASETS = ("apps", "replicasets")
DEPLOYMENTS = ("apps", "deployments")
DAEMONSETS = ("apps", "daemonsets")
NODES = ("", "nodes")
REVISION = "deployment.kubernetes.io/revision"


def _pod_from_template(owner: dict[str, Any], template: dict[str, Any],
                       extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": owner["metadata"]["name"] + "-",
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [controller_ref(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    if tmeta.get("annotations"):
        pod["metadata"]["annotations"] = dict(tmeta["annotations"])
    return pod


def write_status(api: Any, key: tuple[str, str], obj: dict[str, Any],
                 status: dict[str, Any]) -> None:
    """Write ``status`` through the object's status subresource, unless it is unchanged."""
    if obj.get("status") == status:
        return
    new = copy.deepcopy(obj)
    new["status"] = status
    rt = api.rt(*key)
    api.update(rt, rt.versions[0], obj["metadata"]["namespace"], obj["metadata"]["name"],
               new, subresource="status")


def _delete_order(pod: dict[str, Any]) -> tuple[int, int, int, str]:
    """Which pods a scale-down removes first, as the real controller ranks them:
    unscheduled before scheduled, pending before running, not ready before ready,
    newest first."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    created = pod["metadata"].get("creationTimestamp", "")
    # Negate "newness" by sorting on the inverted timestamp string.
    newest_first = "".join(chr(0x7F - ord(ch)) for ch in created)
    return (1 if pod.get("spec", {}).get("nodeName") else 0, phase_rank,
            1 if is_pod_ready(pod) else 0, newest_first)


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    watches = (REPLICASETS, PODS)

    def resync(self) -> None:
        for rs in self.api.store.items(REPLICASETS):
            self.enqueue((rs["metadata"]["namespace"], rs["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        meta = ev.obj["metadata"]
        if ev.key == REPLICASETS:
            return [(meta["namespace"], meta["name"])]
        return controller_keys(ev, "ReplicaSet")

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.api.store.get(REPLICASETS, ns, name)
        if rs is None:
            return
        pods = [p for p in owned(self.api, PODS, rs) if is_pod_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        if not rs["metadata"].get("deletionTimestamp"):
            pods_rt = self.api.rt(*PODS)
            if len(pods) < want:
                for _ in range(want - len(pods)):
                    pod = self.api.create(pods_rt, "v1", ns, _pod_from_template(
                        rs, rs["spec"].get("template") or {}))
                    pods.append(pod)
                    record_event(self.api, rs, "SuccessfulCreate",
                                 f"Created pod: {pod['metadata']['name']}",
                                 component="replicaset-controller")
            elif len(pods) > want:
                doomed = sorted(pods, key=_delete_order)[: len(pods) - want]
                for pod in doomed:
                    self.api.delete(pods_rt, ns, pod["metadata"]["name"], DeleteOptions())
                    record_event(self.api, rs, "SuccessfulDelete",
                                 f"Deleted pod: {pod['metadata']['name']}",
                                 component="replicaset-controller")
                pods = [p for p in pods if p not in doomed]
        pods = [self.api.store.get(PODS, ns, p["metadata"]["name"]) or p for p in pods]
        pods = [p for p in pods if is_pod_active(p)]
        selector = label_selector_from_spec(rs["spec"].get("selector") or {})
        ready = sum(1 for p in pods if is_pod_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods
                                        if selector.matches(p["metadata"].get("labels") or {})),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        write_status(self.api, REPLICASETS, rs, status)


def _template_hash(template: dict[str, Any]) -> str:
    return short_hash(json.dumps(template, sort_keys=True, separators=(",", ":")))


def _resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value or 0)


class DeploymentController(Controller):
    """Rolls a Deployment's ReplicaSets with the real controller's surge/unavailable
    arithmetic, so a rollout never drops below the availability it promises."""

    name = "deployment-controller"
    watches = (DEPLOYMENTS, REPLICASETS)

    def resync(self) -> None:
        for d in self.api.store.items(DEPLOYMENTS):
            self.enqueue((d["metadata"]["namespace"], d["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        meta = ev.obj["metadata"]
        if ev.key == DEPLOYMENTS:
            return [(meta["namespace"], meta["name"])]
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == "Deployment":
                return [(meta["namespace"], ref["name"])]
        return []

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        d = self.api.store.get(DEPLOYMENTS, ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        rs_rt = self.api.rt(*REPLICASETS)
        all_rs = [rs for rs in self.api.store.items(REPLICASETS, ns) if owner_uid(rs) == uid]
        spec = d["spec"]
        template = spec.get("template") or {}
        thash = _template_hash(template)
        new_rs = next((rs for rs in all_rs
                       if rs["metadata"].get("labels", {}).get("pod-template-hash") == thash),
                      None)
        old_rs = [rs for rs in all_rs if rs is not new_rs]
        desired = int(spec.get("replicas", 1))
        revision = max([int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))
                        for rs in all_rs] + [0])
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        max_surge = _resolve(ru.get("maxSurge", "25%"), desired, True) if rolling else 0
        max_unavailable = _resolve(ru.get("maxUnavailable", "25%"), desired, False) \
            if rolling else desired
        if rolling and max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1

        if new_rs is None:
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            labels["pod-template-hash"] = thash
            new_template = copy.deepcopy(template)
            new_template.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = thash
            total = sum(int(rs["spec"].get("replicas", 0)) for rs in old_rs)
            if rolling:
                start = max(0, min(desired, desired + max_surge - total))
            else:
                start = 0 if total else desired
            new_rs = self.api.create(rs_rt, "v1", ns, {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{thash}",
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {REVISION: str(revision + 1),
                                    "deployment.kubernetes.io/desired-replicas": str(desired),
                                    "deployment.kubernetes.io/max-replicas":
                                        str(desired + max_surge)},
                    "ownerReferences": [controller_ref(d)],
                },
                "spec": {"replicas": start, "selector": selector, "template": new_template,
                         "minReadySeconds": spec.get("minReadySeconds", 0)},
            })
            record_event(self.api, d, "ScalingReplicaSet",
                         f"Scaled up replica set {new_rs['metadata']['name']} to {start}",
                         component="deployment-controller")
        elif int(new_rs["metadata"].get("annotations", {}).get(REVISION, "0")) < revision:
            # Rolling back to an older template makes its ReplicaSet the newest revision.
            self._annotate_revision(new_rs, revision + 1)

        def replicas(rs: dict[str, Any]) -> int:
            return int(rs["spec"].get("replicas", 0))

        def available(rs: dict[str, Any]) -> int:
            return int((rs.get("status") or {}).get("availableReplicas", 0))

        if rolling:
            total = sum(replicas(rs) for rs in old_rs) + replicas(new_rs)
            # Scale the new ReplicaSet up within the surge budget...
            if replicas(new_rs) != desired:
                if replicas(new_rs) > desired:
                    self._scale(d, new_rs, desired)
                else:
                    room = desired + max_surge - total
                    if room > 0:
                        self._scale(d, new_rs, replicas(new_rs) + min(room, desired
                                                                       - replicas(new_rs)))
            # ...and old ones down within the availability budget.
            new_rs = self.api.store.get(REPLICASETS, ns, new_rs["metadata"]["name"]) or new_rs
            total = sum(replicas(rs) for rs in old_rs) + replicas(new_rs)
            min_available = desired - max_unavailable
            new_unavailable = replicas(new_rs) - available(new_rs)
            budget = total - min_available - new_unavailable
            if budget > 0:
                for rs in sorted(old_rs, key=lambda r: r["metadata"]["creationTimestamp"]):
                    # Unavailable old pods go first: removing them costs no availability.
                    unhealthy = replicas(rs) - available(rs)
                    cut = min(budget, unhealthy)
                    if cut > 0:
                        self._scale(d, rs, replicas(rs) - cut)
                        budget -= cut
                old_rs = [self.api.store.get(REPLICASETS, ns, rs["metadata"]["name"]) or rs
                          for rs in old_rs]
                total_available = sum(available(rs) for rs in old_rs) + available(new_rs)
                budget = min(budget, total_available - min_available)
                for rs in sorted(old_rs, key=lambda r: r["metadata"]["creationTimestamp"]):
                    if budget <= 0:
                        break
                    cut = min(budget, replicas(rs))
                    if cut > 0:
                        self._scale(d, rs, replicas(rs) - cut)
                        budget -= cut
        else:  # Recreate: old pods all gone before new ones start
            for rs in old_rs:
                if replicas(rs):
                    self._scale(d, rs, 0)
            old_pods = [p for rs in old_rs for p in owned(self.api, PODS, rs)]
            if not old_pods and replicas(new_rs) != desired:
                self._scale(d, new_rs, desired)

        self._cleanup_history(d, [self.api.store.get(REPLICASETS, ns, rs["metadata"]["name"])
                                  for rs in old_rs])
        self._update_status(d, ns, uid, thash, desired, max_unavailable)

    def _annotate_revision(self, rs: dict[str, Any], revision: int) -> None:
        new = copy.deepcopy(rs)
        new["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        rt = self.api.rt(*REPLICASETS)
        self.api.update(rt, "v1", rs["metadata"]["namespace"], rs["metadata"]["name"], new)

    def _scale(self, d: dict[str, Any], rs: dict[str, Any], to: int) -> None:
        current = self.api.store.get(REPLICASETS, rs["metadata"]["namespace"],
                                     rs["metadata"]["name"])
        if current is None or int(current["spec"].get("replicas", 0)) == to:
            return
        new = copy.deepcopy(current)
        before = int(new["spec"].get("replicas", 0))
        new["spec"]["replicas"] = to
        rt = self.api.rt(*REPLICASETS)
        self.api.update(rt, "v1", new["metadata"]["namespace"], new["metadata"]["name"], new)
        verb = "up" if to > before else "down"
        record_event(self.api, d, "ScalingReplicaSet",
                     f"Scaled {verb} replica set {new['metadata']['name']} from {before} to {to}",
                     component="deployment-controller")

    def _cleanup_history(self, d: dict[str, Any], old_rs: list[dict[str, Any] | None]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in old_rs if rs is not None and not int(rs["spec"].get("replicas", 0))
                and not (rs.get("status") or {}).get("replicas")]
        idle.sort(key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")))
        rt = self.api.rt(*REPLICASETS)
        for rs in idle[: max(0, len(idle) - limit)]:
            try:
                self.api.delete(rt, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise

    def _update_status(self, d: dict[str, Any], ns: str, uid: str, thash: str, desired: int,
                       max_unavailable: int) -> None:
        d = self.api.store.get(DEPLOYMENTS, ns, d["metadata"]["name"]) or d
        all_rs = [rs for rs in self.api.store.items(REPLICASETS, ns) if owner_uid(rs) == uid]

        def st(rs: dict[str, Any], k: str) -> int:
            return int((rs.get("status") or {}).get(k, 0))

        new_rs = [rs for rs in all_rs
                  if rs["metadata"].get("labels", {}).get("pod-template-hash") == thash]
        replicas = sum(st(rs, "replicas") for rs in all_rs)
        updated = sum(st(rs, "replicas") for rs in new_rs)
        ready = sum(st(rs, "readyReplicas") for rs in all_rs)
        available = sum(st(rs, "availableReplicas") for rs in all_rs)
        old_conditions = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or ()}

        def condition(ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
            prev = old_conditions.get(ctype)
            if prev and prev.get("status") == status and prev.get("reason") == reason:
                return prev
            ts = now()
            return {"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": ts, "lastTransitionTime": ts}

        is_available = available >= desired - max_unavailable
        complete = updated == desired and replicas == desired and available == desired
        new_name = new_rs[0]["metadata"]["name"] if new_rs else ""
        status: dict[str, Any] = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                condition("Available", "True" if is_available else "False",
                          "MinimumReplicasAvailable" if is_available
                          else "MinimumReplicasUnavailable",
                          "Deployment has minimum availability." if is_available
                          else "Deployment does not have minimum availability."),
                condition("Progressing", "True",
                          "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                          f'ReplicaSet "{new_name}" has successfully progressed.' if complete
                          else f'ReplicaSet "{new_name}" is progressing.'),
            ],
        }
        unavailable = max(0, desired - available)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
            if not status[k]:
                del status[k]
        write_status(self.api, DEPLOYMENTS, d, status)


class DaemonSetController(Controller):
    """One pod per eligible node; a changed template replaces pods one node at a time."""

    name = "daemonset-controller"
    watches = (DAEMONSETS, PODS, NODES)

    def resync(self) -> None:
        for ds in self.api.store.items(DAEMONSETS):
            self.enqueue((ds["metadata"]["namespace"], ds["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        meta = ev.obj["metadata"]
        if ev.key == DAEMONSETS:
            return [(meta["namespace"], meta["name"])]
        if ev.key == NODES:
            return [(ds["metadata"]["namespace"], ds["metadata"]["name"])
                    for ds in self.api.store.items(DAEMONSETS)]
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == "DaemonSet":
                return [(meta["namespace"], ref["name"])]
        return []

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        ds = self.api.store.get(DAEMONSETS, ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        template = ds["spec"].get("template") or {}
        thash = _template_hash(template)
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        nodes = [n for n in self.api.store.items(NODES)
                 if all((n["metadata"].get("labels") or {}).get(k) == v
                        for k, v in selector.items())]
        eligible = {n["metadata"]["name"] for n in nodes}
        pods = [p for p in owned(self.api, PODS, ds) if is_pod_active(p)]
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_node.setdefault(p.get("spec", {}).get("nodeName", ""), []).append(p)
        pods_rt = self.api.rt(*PODS)
        # Wrong node or duplicates: remove.
        for node, node_pods in by_node.items():
            extra = node_pods if node not in eligible else sorted(
                node_pods, key=lambda p: p["metadata"]["creationTimestamp"])[1:]
            for p in extra:
                self.api.delete(pods_rt, ns, p["metadata"]["name"])
        # Outdated pods: replace while within maxUnavailable.
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        budget = _resolve(ru.get("maxUnavailable", 1), len(eligible), True) or 1
        unavailable = sum(1 for n in eligible
                          if not any(is_pod_ready(p) for p in by_node.get(n, ())))
        rolling = (ds["spec"].get("updateStrategy") or {}).get("type",
                                                                "RollingUpdate") == "RollingUpdate"
        for node in sorted(eligible):
            current = by_node.get(node, [])[:1]
            outdated = bool(current) and current[0]["metadata"].get("labels", {}).get(
                "controller-revision-hash") != thash
            if outdated and rolling and (unavailable < budget or not is_pod_ready(current[0])):
                self.api.delete(pods_rt, ns, current[0]["metadata"]["name"])
                if is_pod_ready(current[0]):
                    unavailable += 1
                current = []
            if not current:
                pod = _pod_from_template(ds, template, {"controller-revision-hash": thash})
                pod["spec"]["nodeName"] = node
                created = self.api.create(pods_rt, "v1", ns, pod)
                record_event(self.api, ds, "SuccessfulCreate",
                             f"Created pod: {created['metadata']['name']}",
                             component="daemonset-controller")
        pods = [p for p in owned(self.api, PODS, ds) if is_pod_active(p)]
        on_eligible = [p for p in pods if p.get("spec", {}).get("nodeName") in eligible]
        ready = sum(1 for p in on_eligible if is_pod_ready(p))
        updated = [p for p in on_eligible
                   if p["metadata"].get("labels", {}).get("controller-revision-hash") == thash]
        status = {
            "currentNumberScheduled": len({p["spec"]["nodeName"] for p in on_eligible}),
            "desiredNumberScheduled": len(eligible),
            "numberMisscheduled": len(pods) - len(on_eligible),
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": len(updated),
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        if len(eligible) - ready:
            status["numberUnavailable"] = len(eligible) - ready
        write_status(self.api, DAEMONSETS, ds, status)
