"""Service -> Endpoints and EndpointSlice, from the pods its selector matches.

Ready pods are addresses; pods that are not ready are ``notReadyAddresses`` (and
``ready: false`` in the slice), so a failing readiness probe takes a pod out of
the service's traffic, which is what kube-proxy and a mesh read.
"""

from __future__ import annotations

import copy
from typing import Any

from ..apiserver import errors
from ..apiserver.meta import controller_ref
from ..apiserver.selectors import selector_from_map
from ..apiserver.store import Event
from .base import Controller, is_pod_ready

SERVICES = ("", "services")
PODS = ("", "pods")
ENDPOINTS = ("", "endpoints")
SLICES = ("discovery.k8s.io", "endpointslices")
MANAGED_BY = "endpointslice-controller.k8s.io"


def _target_port(svc_port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod.get("spec", {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == target and p.get("protocol", "TCP") == svc_port.get(
                    "protocol", "TCP"):
                return p.get("containerPort")
    return None


class EndpointsController(Controller):
    name = "endpoints-controller"
    watches = (SERVICES, PODS)

    def resync(self) -> None:
        for svc in self.api.store.items(SERVICES):
            self.enqueue((svc["metadata"]["namespace"], svc["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        meta = ev.obj["metadata"]
        if ev.key == SERVICES:
            return [(meta["namespace"], meta["name"])]
        ns = meta["namespace"]
        keys = []
        for svc in self.api.store.items(SERVICES, ns):
            sel = (svc.get("spec") or {}).get("selector")
            if not sel:
                continue
            matcher = selector_from_map(sel)
            if any(obj is not None and matcher.matches(obj["metadata"].get("labels") or {})
                   for obj in (ev.obj, ev.old)):
                keys.append((ns, svc["metadata"]["name"]))
        return keys

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.api.store.get(SERVICES, ns, name)
        if svc is None:
            # As the real controller: the Endpoints go with their Service; the slice
            # is owned by the Service and goes through the garbage collector.
            if self.api.store.get(ENDPOINTS, ns, name) is not None:
                try:
                    self.api.delete(self.api.rt(*ENDPOINTS), ns, name)
                except errors.ApiError as exc:
                    if exc.code != 404:
                        raise
            return
        selector = (svc.get("spec") or {}).get("selector")
        if not selector:
            return  # endpoints of a selector-less service are the user's to manage
        matcher = selector_from_map(selector)
        pods = [p for p in self.api.store.items(PODS, ns)
                if matcher.matches(p["metadata"].get("labels") or {})
                and (p.get("status") or {}).get("podIP")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        pods.sort(key=lambda p: p["status"]["podIP"])
        svc_ports = (svc.get("spec") or {}).get("ports") or []
        self._write_endpoints(svc, pods, svc_ports)
        self._write_slice(svc, pods, svc_ports)

    def _write_endpoints(self, svc: dict[str, Any], pods: list[dict[str, Any]],
                         svc_ports: list[dict[str, Any]]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        # Pods that resolve the ports to the same numbers share a subset.
        subsets: dict[tuple[Any, ...], dict[str, Any]] = {}
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            ports = []
            for sp in svc_ports:
                tp = _target_port(sp, pod)
                if tp is None:
                    continue
                entry = {"port": tp, "protocol": sp.get("protocol", "TCP")}
                if sp.get("name"):
                    entry["name"] = sp["name"]
                if sp.get("appProtocol"):
                    entry["appProtocol"] = sp["appProtocol"]
                ports.append(entry)
            sig = tuple(sorted((p.get("name", ""), p["port"]) for p in ports))
            subset = subsets.setdefault(sig, {"ports": ports})
            address = {"ip": pod["status"]["podIP"],
                       "targetRef": {"kind": "Pod", "namespace": ns,
                                     "name": pod["metadata"]["name"],
                                     "uid": pod["metadata"]["uid"]}}
            if pod.get("spec", {}).get("nodeName"):
                address["nodeName"] = pod["spec"]["nodeName"]
            hostname = _hostname(pod, svc)
            if hostname:
                address["hostname"] = hostname
            field = "addresses" if is_pod_ready(pod) else "notReadyAddresses"
            subset.setdefault(field, []).append(address)
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns,
                         "labels": dict(svc["metadata"].get("labels") or {})},
        }
        if subsets:
            body["subsets"] = list(subsets.values())
        self._upsert(ENDPOINTS, body, "v1")

    def _write_slice(self, svc: dict[str, Any], pods: list[dict[str, Any]],
                     svc_ports: list[dict[str, Any]]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        endpoints = []
        ports: list[dict[str, Any]] = []
        for pod in pods:
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            ready = is_pod_ready(pod) and not terminating
            ep: dict[str, Any] = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": is_pod_ready(pod),
                               "terminating": terminating},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                              "uid": pod["metadata"]["uid"]},
            }
            if pod.get("spec", {}).get("nodeName"):
                ep["nodeName"] = pod["spec"]["nodeName"]
            hostname = _hostname(pod, svc)
            if hostname:
                ep["hostname"] = hostname
            endpoints.append(ep)
        for sp in svc_ports:
            tp = next((p for p in (_target_port(sp, pod) for pod in pods) if p), None)
            if tp is None and pods:
                continue
            entry = {"name": sp.get("name", ""), "protocol": sp.get("protocol", "TCP"),
                     "port": tp if tp is not None else sp.get("targetPort", sp.get("port"))}
            if not isinstance(entry["port"], int):
                continue
            if sp.get("appProtocol"):
                entry["appProtocol"] = sp["appProtocol"]
            ports.append(entry)
        labels = dict(svc["metadata"].get("labels") or {})
        labels["kubernetes.io/service-name"] = name
        labels["endpointslice.kubernetes.io/managed-by"] = MANAGED_BY
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-slice", "namespace": ns, "labels": labels,
                         "ownerReferences": [controller_ref(svc)]},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }
        self._upsert(SLICES, body, "v1")

    def _upsert(self, key: tuple[str, str], body: dict[str, Any], version: str) -> None:
        rt = self.api.rt(*key)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        current = self.api.store.get(key, ns, name)
        if current is None:
            try:
                self.api.create(rt, version, ns, body)
            except errors.ApiError as exc:
                if exc.code != 403:  # namespace terminating: nothing to publish
                    raise
            return
        new = copy.deepcopy(current)
        for k in ("subsets", "endpoints", "ports", "addressType"):
            if k in body:
                new[k] = body[k]
            else:
                new.pop(k, None)
        new["metadata"]["labels"] = body["metadata"]["labels"]
        if new != current:
            self.api.update(rt, version, ns, name, new)


def _hostname(pod: dict[str, Any], svc: dict[str, Any]) -> str | None:
    """The endpoint's DNS hostname: the pod's ``hostname`` when its ``subdomain`` names
    this Service (a StatefulSet's pods), as the real endpoint controllers set it
    (k8s.io/kubernetes ``pkg/controller/util/endpoint`` and endpointslice utils)."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        return str(spec["hostname"])
    return None
