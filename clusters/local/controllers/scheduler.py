"""Binds pending pods to nodes.

Filters: node unschedulable, nodeSelector, required node affinity, required pod
affinity and anti-affinity (both the pod's own terms and existing pods' anti-affinity
against it), on any topology key (Bookinfo's notsleep uses
``kubernetes.io/hostname``).  Scores: preferred (anti-)affinity weights, then the
node with fewer pods, then the name, so placement is deterministic.
"""

from __future__ import annotations

import copy
from typing import Any

from ..apiserver import errors
from ..apiserver.meta import now
from ..apiserver.selectors import SelectorError, label_selector_from_spec
from ..apiserver.store import Event
from .base import Controller, is_pod_active, record_event

PODS = ("", "pods")
NODES = ("", "nodes")


def _wants_scheduling(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and is_pod_active(pod)
            and spec.get("schedulerName", "default-scheduler") == "default-scheduler")


def _node_labels(node: dict[str, Any]) -> dict[str, str]:
    return node["metadata"].get("labels") or {}


def _expr_matches(expr: dict[str, Any], value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or ()]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            v, ref = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return v > ref if op == "Gt" else v < ref
    return False


def _node_term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = _node_labels(node)
    if not term.get("matchExpressions") and not term.get("matchFields"):
        return False
    for expr in term.get("matchExpressions") or ():
        if not _expr_matches(expr, labels.get(expr.get("key", ""))):
            return False
    for expr in term.get("matchFields") or ():
        value = node["metadata"]["name"] if expr.get("key") == "metadata.name" else None
        if not _expr_matches(expr, value):
            return False
    return True


def _term_pods(term: dict[str, Any], pod_ns: str, pods: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """Pods a pod (anti-)affinity term selects."""
    try:
        sel = label_selector_from_spec(term.get("labelSelector") or {})
    except SelectorError:
        return []
    namespaces = set(term.get("namespaces") or ()) or {pod_ns}
    if term.get("namespaceSelector") is not None and not term.get("namespaces"):
        namespaces = set()  # all namespaces the (here ignored) selector picks: all
    return [p for p in pods
            if (not namespaces or p["metadata"].get("namespace") in namespaces)
            and sel.matches(p["metadata"].get("labels") or {})]


class Scheduler(Controller):
    name = "scheduler"
    watches = (PODS, NODES)

    def resync(self) -> None:
        for pod in self.api.store.items(PODS):
            if _wants_scheduling(pod):
                self.enqueue((pod["metadata"]["namespace"], pod["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == PODS and ev.type != "DELETED" and _wants_scheduling(ev.obj):
            return [(ev.obj["metadata"]["namespace"], ev.obj["metadata"]["name"])]
        if ev.key == NODES or ev.type == "DELETED":
            # Capacity or constraints changed: retry every pod still waiting.
            return [(p["metadata"]["namespace"], p["metadata"]["name"])
                    for p in self.api.store.items(PODS) if _wants_scheduling(p)]
        return []

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        pod = self.api.store.get(PODS, ns, name)
        if pod is None or not _wants_scheduling(pod):
            return
        nodes = sorted(self.api.store.items(NODES), key=lambda n: n["metadata"]["name"])
        placed = [p for p in self.api.store.items(PODS)
                  if p.get("spec", {}).get("nodeName") and is_pod_active(p)]
        node_by_name = {n["metadata"]["name"]: n for n in nodes}
        reasons: dict[str, int] = {}
        feasible = []
        for node in nodes:
            why = self._filter(pod, node, placed, node_by_name)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
            else:
                feasible.append(node)
        if not feasible:
            detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
            message = f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail else ".")
            self._unschedulable(pod, message)
            return
        best = max(feasible, key=lambda n: (self._score(pod, n, placed, node_by_name),
                                            _negated(n["metadata"]["name"])))
        node_name = best["metadata"]["name"]
        self.api.hooks.bind_pod(pod, node_name)
        record_event(self.api, pod, "Scheduled",
                     f"Successfully assigned {ns}/{name} to {node_name}",
                     component="default-scheduler")

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        status = pod.get("status") or {}
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": None, "lastTransitionTime": now()}
        old = next((c for c in status.get("conditions") or ()
                    if c.get("type") == "PodScheduled"), None)
        if old and old.get("message") == message and old.get("status") == "False":
            return
        new = copy.deepcopy(pod)
        new.setdefault("status", {})["conditions"] = [*conditions, cond]
        try:
            self.api.update(self.api.rt(*PODS), "v1", pod["metadata"]["namespace"],
                            pod["metadata"]["name"], new, subresource="status")
        except errors.ApiError as exc:
            if exc.code != 404:
                raise
        record_event(self.api, pod, "FailedScheduling", message, kind="Warning",
                     component="default-scheduler")

    def _filter(self, pod: dict[str, Any], node: dict[str, Any], placed: list[dict[str, Any]],
                nodes: dict[str, dict[str, Any]]) -> str | None:
        spec = pod.get("spec") or {}
        labels = _node_labels(node)
        if (node.get("spec") or {}).get("unschedulable"):
            return "node(s) were unschedulable"
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return "node(s) didn't match Pod's node affinity/selector"
        affinity = spec.get("affinity") or {}
        required = ((affinity.get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        terms = required.get("nodeSelectorTerms") or []
        if terms and not any(_node_term_matches(t, node) for t in terms):
            return "node(s) didn't match Pod's node affinity/selector"
        ns = pod["metadata"]["namespace"]
        for term in ((affinity.get("podAntiAffinity") or {})
                     .get("requiredDuringSchedulingIgnoredDuringExecution") or ()):
            if self._topology_has(term, ns, node, placed, nodes):
                return "node(s) didn't match pod anti-affinity rules"
        for term in ((affinity.get("podAffinity") or {})
                     .get("requiredDuringSchedulingIgnoredDuringExecution") or ()):
            if not self._topology_has(term, ns, node, placed, nodes):
                # A pod matching its own term may start a group anywhere (as upstream).
                anywhere = _term_pods(term, ns, placed)
                if anywhere or not _term_pods(term, ns, [pod]):
                    return "node(s) didn't match pod affinity rules"
        # Existing pods' required anti-affinity against this pod.
        for other in placed:
            oaff = (other.get("spec") or {}).get("affinity") or {}
            for term in ((oaff.get("podAntiAffinity") or {})
                         .get("requiredDuringSchedulingIgnoredDuringExecution") or ()):
                if _term_pods(term, other["metadata"]["namespace"], [pod]) and \
                        self._same_domain(term, node, other, nodes):
                    return "node(s) didn't satisfy existing pods anti-affinity rules"
        return None

    def _same_domain(self, term: dict[str, Any], node: dict[str, Any], other: dict[str, Any],
                     nodes: dict[str, dict[str, Any]]) -> bool:
        key = term.get("topologyKey", "")
        other_node = nodes.get(other["spec"]["nodeName"])
        if other_node is None:
            return False
        value = _node_labels(node).get(key)
        return value is not None and _node_labels(other_node).get(key) == value

    def _topology_has(self, term: dict[str, Any], ns: str, node: dict[str, Any],
                      placed: list[dict[str, Any]], nodes: dict[str, dict[str, Any]]) -> bool:
        return any(self._same_domain(term, node, p, nodes) for p in _term_pods(term, ns, placed))

    def _score(self, pod: dict[str, Any], node: dict[str, Any], placed: list[dict[str, Any]],
               nodes: dict[str, dict[str, Any]]) -> tuple[int, int]:
        affinity = (pod.get("spec") or {}).get("affinity") or {}
        ns = pod["metadata"]["namespace"]
        score = 0
        for sign, field in ((1, "podAffinity"), (-1, "podAntiAffinity")):
            for weighted in ((affinity.get(field) or {})
                             .get("preferredDuringSchedulingIgnoredDuringExecution") or ()):
                term = weighted.get("podAffinityTerm") or {}
                if self._topology_has(term, ns, node, placed, nodes):
                    score += sign * int(weighted.get("weight", 1))
        for weighted in ((affinity.get("nodeAffinity") or {})
                         .get("preferredDuringSchedulingIgnoredDuringExecution") or ()):
            if _node_term_matches(weighted.get("preference") or {}, node):
                score += int(weighted.get("weight", 1))
        load = sum(1 for p in placed if p["spec"]["nodeName"] == node["metadata"]["name"])
        return score, -load


def _negated(name: str) -> str:
    """Sorts names in reverse so ``max`` picks the alphabetically first on a tie."""
    return "".join(chr(0x10FFFF - ord(c)) for c in name)
