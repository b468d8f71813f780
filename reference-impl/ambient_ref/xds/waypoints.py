"""Waypoints: which Gateways are waypoints, and which services and workloads use one.

Pure functions over Kubernetes objects, like ``compute.py``.  Two API flavours
(facts file, section 5):

- **today's**: a Gateway of class ``istio-waypoint`` (listener ``mesh``, 15008,
  HBONE) is a waypoint named after itself; what it serves is set by its label
  ``istio.io/waypoint-for`` (``service`` by default, ``workload``, ``all``,
  ``none``).  A Service, pod or namespace opts in with the label
  ``istio.io/use-waypoint: <name>`` (optionally ``istio.io/use-waypoint-namespace``);
  the object's own label wins over its namespace's, and ``none`` opts out.  A label
  naming a waypoint that does not exist binds nothing: traffic stays at L4.
- **the 2022 preview**: a Gateway of class ``istio-mesh`` with the annotation
  ``istio.io/service-account: <sa>`` serves the workloads running as that service
  account (every account of the namespace without the annotation), deployed as
  ``<sa>-waypoint-proxy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TODAY_CLASS = "istio-waypoint"
PREVIEW_CLASS = "istio-mesh"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
SERVICE_ACCOUNT_ANNOTATION = "istio.io/service-account"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

KubeObject = Mapping[str, Any]


@dataclass(frozen=True)
class Waypoint:
    """One waypoint deployment the control plane runs for a Gateway."""

    gateway: str  # the Gateway's name
    namespace: str
    flavour: str  # TODAY_CLASS or PREVIEW_CLASS
    waypoint_for: str  # service | workload | all | none
    deployment: str  # Deployment, Service and service account name
    serves_account: str | None = None  # preview flavour: the account served (None: all)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.deployment)

    @property
    def hostname(self) -> str:
        return f"{self.deployment}.{self.namespace}.svc.cluster.local"

    def ref(self) -> dict[str, Any]:
        """How a workload or service names its waypoint on the wire."""
        return {"namespace": self.namespace, "name": self.deployment,
                "hostname": self.hostname, "hbone_mtls_port": 15008,
                "flavour": self.flavour}


def _meta(obj: KubeObject) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def has_addresses(gateway: KubeObject) -> bool:
    """Whether a waypoint's Gateway has an address in its status: set once the waypoint
    first had a ready pod and kept from then on, what binding to it depends on (istio/istio
    pilot/pkg/serviceregistry/ambient/waypoints.go reads ``gateway.Status.Addresses``)."""
    return bool((gateway.get("status") or {}).get("addresses"))


def find_waypoints(gateways: Iterable[KubeObject]) -> dict[tuple[str, str], Waypoint]:
    """Waypoints of both flavours, keyed (namespace, gateway name)."""
    out: dict[tuple[str, str], Waypoint] = {}
    for gw in gateways:
        meta = _meta(gw)
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        cls = (gw.get("spec") or {}).get("gatewayClassName")
        if not ns or not name:
            continue
        if cls == TODAY_CLASS:
            waypoint_for = (meta.get("labels") or {}).get(WAYPOINT_FOR, "service")
            if waypoint_for not in ("service", "workload", "all", "none"):
                waypoint_for = "service"
            out[(ns, name)] = Waypoint(name, ns, TODAY_CLASS, waypoint_for, name)
        elif cls == PREVIEW_CLASS:
            account = (meta.get("annotations") or {}).get(SERVICE_ACCOUNT_ANNOTATION)
            deployment = f"{account}-waypoint-proxy" if account else f"{name}-waypoint-proxy"
            out[(ns, name)] = Waypoint(name, ns, PREVIEW_CLASS, "workload", deployment,
                                       account or None)
    return dict(sorted(out.items()))


def _chosen(obj: KubeObject, namespace_labels: Mapping[str, str]) -> tuple[str, str] | None:
    """The (namespace, waypoint) an object asks for, its own label first."""
    labels = _meta(obj).get("labels") or {}
    if USE_WAYPOINT in labels:
        name = labels[USE_WAYPOINT]
        ns = labels.get(USE_WAYPOINT_NAMESPACE) or _meta(obj).get("namespace", "")
    elif USE_WAYPOINT in namespace_labels:
        name = namespace_labels[USE_WAYPOINT]
        ns = namespace_labels.get(USE_WAYPOINT_NAMESPACE) or _meta(obj).get("namespace", "")
    else:
        return None
    if not name or name == "none":
        return None
    return (ns, name)


def bind(waypoints: Mapping[tuple[str, str], Waypoint], namespaces: Iterable[KubeObject],
         services: Iterable[KubeObject], pods: Iterable[KubeObject],
         ) -> tuple[dict[tuple[str, str], Waypoint], dict[str, Waypoint]]:
    """Which Services (keyed (ns, name)) and pods (keyed uid) use which waypoint.

    A pod that is itself a waypoint never uses one (its traffic would loop).
    """
    ns_labels = {_meta(n).get("name", ""): _meta(n).get("labels") or {} for n in namespaces}
    by_gateway = {(w.namespace, w.gateway): w for w in waypoints.values()}
    service_use: dict[tuple[str, str], Waypoint] = {}
    for svc in services:
        meta = _meta(svc)
        ns = meta.get("namespace", "")
        chosen = _chosen(svc, ns_labels.get(ns, {}))
        wp = by_gateway.get(chosen) if chosen else None
        if wp is not None and wp.flavour == TODAY_CLASS and wp.waypoint_for in ("service",
                                                                                  "all"):
            service_use[(ns, meta.get("name", ""))] = wp
    workload_use: dict[str, Waypoint] = {}
    for pod in pods:
        meta = _meta(pod)
        ns = meta.get("namespace", "")
        uid = meta.get("uid", "")
        if not uid or GATEWAY_NAME_LABEL in (meta.get("labels") or {}):
            continue  # a waypoint's own pod
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        chosen = _chosen(pod, ns_labels.get(ns, {}))
        wp = by_gateway.get(chosen) if chosen else None
        if wp is not None and wp.flavour == TODAY_CLASS and wp.waypoint_for in ("workload",
                                                                                 "all"):
            workload_use[uid] = wp
            continue
        for candidate in waypoints.values():
            if (candidate.flavour == PREVIEW_CLASS and candidate.namespace == ns
                    and candidate.serves_account in (None, account)):
                workload_use[uid] = candidate
                break
    return service_use, workload_use


def proxy_container(image: str, env: list[dict[str, Any]],
                    ports: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``istio-proxy`` container of a waypoint or ingress pod: the image's
    ``waypoint`` program with ``env``, serving ``ports`` and, as every proxy here,
    metrics on 15020 and readiness on 15021 (``/healthz/ready``, polled each second)."""
    return {"name": "istio-proxy", "image": image, "args": ["waypoint"], "env": env,
            "ports": [*ports, {"containerPort": 15020, "name": "metrics"},
                      {"containerPort": 15021, "name": "status-port"}],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021},
                               "periodSeconds": 1}}


def waypoint_manifests(wp: Waypoint, image: str = "ambient-reference/ambient:0.1.0",
                       ) -> list[dict[str, Any]]:
    """The ServiceAccount, Deployment and Service the control plane runs for a waypoint."""
    labels = {GATEWAY_NAME_LABEL: wp.gateway,
              "istio.io/dataplane-mode": "none", "app": wp.deployment}
    # the Gateway's name on everything made for it, as istiod labels its waypoints
    owner = {"istio.io/waypoint": wp.gateway, GATEWAY_NAME_LABEL: wp.gateway}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": wp.deployment, "namespace": wp.namespace, "labels": owner}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": wp.deployment, "namespace": wp.namespace, "labels": owner},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": wp.deployment}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": wp.deployment,
                      "containers": [proxy_container(image, [
                          {"name": "GATEWAY_NAME", "value": wp.gateway},
                          {"name": "WAYPOINT_FLAVOUR", "value": wp.flavour},
                          {"name": "SERVICE_ACCOUNT", "value": wp.deployment},
                          {"name": "SERVES_ACCOUNT", "value": wp.serves_account or ""},
                          {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {
                              "fieldPath": "metadata.namespace"}}},
                          {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                              "fieldPath": "metadata.name"}}},
                          {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {
                              "fieldPath": "status.podIP"}}}],
                          [{"containerPort": 15008, "name": "mesh"}])]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": wp.deployment, "namespace": wp.namespace, "labels": owner},
         "spec": {"selector": {"app": wp.deployment}, "ports": [
             {"name": "mesh", "port": 15008, "targetPort": 15008},
             {"name": "metrics", "port": 15020, "targetPort": 15020}]}},
    ]
