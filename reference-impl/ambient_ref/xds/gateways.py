"""Gateway API ingress: Gateways of class ``istio``, as istiod's gateway controller runs them.

Pure functions over Kubernetes objects, like ``waypoints.py``.  What istiod does for
a Gateway of class ``istio`` (istio/istio ``pilot/pkg/config/kube/gateway``:
``deploymentcontroller.go`` renders ``<name>-istio``; ``conditions.go`` writes the
statuses), in what a user sees:

- a ServiceAccount, Deployment and Service ``<name>-istio``, labelled
  ``gateway.networking.k8s.io/gateway-name: <name>`` and
  ``gateway.istio.io/managed: istio.io-gateway-controller``, owned by the Gateway;
  the Service exposes each listener's port (a ClusterIP Service here: the local
  cluster has no load balancers, so ``kubectl port-forward svc/<name>-istio`` or a
  pod reaches it);
- the Gateway's status: ``Accepted`` and ``Programmed`` (once its pod is ready), the
  address ``<name>-istio.<ns>.svc.cluster.local`` (type Hostname, as istiod reports a
  Service without a load balancer address), and per listener ``attachedRoutes``,
  ``supportedKinds`` and its conditions;
- the GatewayClasses ``istio`` and ``istio-waypoint`` (controller
  ``istio.io/gateway-controller``), made when missing;
- each HTTPRoute's ``status.parents`` for the parents this controller owns (Gateways
  of its classes, and Services, GAMMA's parents): ``Accepted`` and ``ResolvedRefs``
  (``BackendNotFound`` when a backend Service does not exist).

The ingress Deployment runs the reference's waypoint in its Gateway API ingress mode
(``waypoint/main.py``): plain HTTP on the listener ports, routed by the HTTPRoutes
attached to the Gateway.  Only HTTP listeners are served (no TLS termination).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .waypoints import GATEWAY_NAME_LABEL, KubeObject, _meta, proxy_container

INGRESS_CLASS = "istio"
WAYPOINT_CLASS = "istio-waypoint"
CONTROLLER = "istio.io/gateway-controller"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
MANAGED_LABEL = "gateway.istio.io/managed"
MANAGED_VALUE = "istio.io-gateway-controller"



@dataclass(frozen=True)
class IngressGateway:
    name: str
    namespace: str
    ports: tuple[tuple[str, int], ...]  # (listener name, port) of its HTTP listeners

    @property
    def deployment(self) -> str:
        return f"{self.name}-istio"

    @property
    def hostname(self) -> str:
        return f"{self.deployment}.{self.namespace}.svc.cluster.local"


def find_ingress_gateways(gateways: Iterable[KubeObject]) -> dict[tuple[str, str],
                                                                   IngressGateway]:
    """Gateways of class ``istio``, keyed (namespace, name)."""
    out = {}
    for gw in gateways:
        spec = gw.get("spec") or {}
        if spec.get("gatewayClassName") != INGRESS_CLASS:
            continue
        meta = _meta(gw)
        ports = tuple((str(li.get("name", "")), int(li["port"]))
                      for li in spec.get("listeners") or ()
                      if isinstance(li, Mapping) and isinstance(li.get("port"), int)
                      and li.get("protocol", "HTTP") == "HTTP")
        out[(meta.get("namespace", ""), meta.get("name", ""))] = IngressGateway(
            meta.get("name", ""), meta.get("namespace", ""), ports)
    return out


def gateway_classes() -> list[dict[str, Any]]:
    """The GatewayClasses istiod installs (``istio``, ``istio-waypoint``)."""
    return [{"apiVersion": f"{GATEWAY_API_GROUP}/v1", "kind": "GatewayClass",
             "metadata": {"name": name},
             "spec": {"controllerName": CONTROLLER, "description": description}}
            for name, description in (
                (INGRESS_CLASS, "The default Istio GatewayClass"),
                (WAYPOINT_CLASS, "The default Istio waypoint GatewayClass"))]


def ingress_manifests(gw: IngressGateway, image: str) -> list[dict[str, Any]]:
    """The ServiceAccount, Deployment and Service of a Gateway of class ``istio``."""
    labels = {GATEWAY_NAME_LABEL: gw.name, MANAGED_LABEL: MANAGED_VALUE}
    pod_labels = {**labels, "istio.io/dataplane-mode": "none", "app": gw.deployment}
    listen = ",".join(str(port) for _, port in gw.ports)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": gw.deployment, "namespace": gw.namespace, "labels": labels}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": gw.deployment, "namespace": gw.namespace, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": {GATEWAY_NAME_LABEL: gw.name}},
                  "template": {"metadata": {"labels": pod_labels}, "spec": {
                      "serviceAccountName": gw.deployment,
                      "containers": [proxy_container(image, [
                          {"name": "GATEWAY_NAME", "value": gw.name},
                          {"name": "WAYPOINT_FLAVOUR", "value": INGRESS_CLASS},
                          {"name": "SERVICE_ACCOUNT", "value": gw.deployment},
                          {"name": "GATEWAY_API_INGRESS", "value": "true"},
                          {"name": "LISTEN_PORTS", "value": listen},
                          {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {
                              "fieldPath": "metadata.namespace"}}}],
                          [{"containerPort": port, "name": name or f"port-{port}"}
                           for name, port in gw.ports])]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": gw.deployment, "namespace": gw.namespace, "labels": labels},
         "spec": {"selector": {GATEWAY_NAME_LABEL: gw.name}, "ports": [
             {"name": name or f"port-{port}", "port": port, "targetPort": port,
              "protocol": "TCP"} for name, port in gw.ports]}},
    ]


def status_time() -> str:
    """Now, as status conditions carry it (RFC 3339 to the second, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(old: Mapping[str, Any], ctype: str, ok: bool, reason: str, message: str,
              generation: int, now: str) -> dict[str, Any]:
    """A status condition as istiod writes it; one whose status did not change keeps the
    time of its last transition (``old``: the previous conditions by type)."""
    status = "True" if ok else "False"
    prev = old.get(ctype) or {}
    since = prev.get("lastTransitionTime") if prev.get("status") == status else None
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or now, "observedGeneration": generation}


def _attaches(route: KubeObject, ns: str, name: str, listener: str | None = None) -> bool:
    route_ns = _meta(route).get("namespace", "")
    for ref in (route.get("spec") or {}).get("parentRefs") or ():
        if not isinstance(ref, Mapping) or ref.get("name") != name:
            continue
        if ref.get("group", GATEWAY_API_GROUP) != GATEWAY_API_GROUP or \
                ref.get("kind", "Gateway") != "Gateway":
            continue
        if ref.get("namespace", route_ns) != ns:
            continue
        if listener is None or ref.get("sectionName") in (None, listener):
            return True
    return False


def gateway_status(gateway: KubeObject, gw: IngressGateway, routes: Iterable[KubeObject],
                   ready: bool, now: str) -> dict[str, Any]:
    """The status istiod writes on a Gateway of class ``istio``."""
    old = {c.get("type"): c for c in (gateway.get("status") or {}).get("conditions") or ()}
    generation = int(_meta(gateway).get("generation", 1))
    routes = list(routes)
    listeners = []
    old_listeners = {li.get("name"): {c.get("type"): c for c in li.get("conditions") or ()}
                     for li in (gateway.get("status") or {}).get("listeners") or ()}
    for name, _ in gw.ports:
        lold = old_listeners.get(name, {})
        attached = sum(1 for r in routes if _attaches(r, gw.namespace, gw.name, name))
        listeners.append({
            "name": name, "attachedRoutes": attached,
            "supportedKinds": [{"group": GATEWAY_API_GROUP, "kind": "HTTPRoute"}],
            "conditions": [
                condition(lold, "Accepted", True, "Accepted", "No errors found",
                           generation, now),
                condition(lold, "Programmed", True, "Programmed", "No errors found",
                           generation, now),
                condition(lold, "ResolvedRefs", True, "ResolvedRefs", "No errors found",
                           generation, now)]})
    status: dict[str, Any] = {
        "conditions": [
            condition(old, "Accepted", True, "Accepted", "Resource accepted", generation, now),
            condition(old, "Programmed", ready, "Programmed" if ready else "Pending",
                       "Resource programmed, assigned to service(s) " + gw.hostname
                       if ready else f"deployment {gw.deployment} is not ready yet",
                       generation, now)],
        "listeners": listeners}
    if ready:
        status["addresses"] = [{"type": "Hostname", "value": gw.hostname}]
    return status


def route_parents(route: KubeObject, controlled: Mapping[tuple[str, str], str],
                  services: Mapping[tuple[str, str], KubeObject], now: str
                  ) -> list[dict[str, Any]]:
    """``status.parents`` of an HTTPRoute for the parents this controller owns:
    ``controlled`` maps (namespace, Gateway name) to its class; Service parents (GAMMA)
    are this controller's too."""
    meta = _meta(route)
    ns = meta.get("namespace", "")
    generation = int(meta.get("generation", 1))
    spec = route.get("spec") or {}
    missing = []
    for rule in spec.get("rules") or ():
        for backend in (rule or {}).get("backendRefs") or ():
            if backend.get("kind", "Service") == "Service" and backend.get("group", "") == "":
                key = (backend.get("namespace", ns), backend.get("name", ""))
                if key not in services:
                    missing.append(f"{key[0]}/{key[1]}")
    old_parents = {_parent_key(p.get("parentRef") or {}, ns): p
                   for p in (route.get("status") or {}).get("parents") or ()
                   if p.get("controllerName") == CONTROLLER}
    out = []
    for ref in spec.get("parentRefs") or ():
        if not isinstance(ref, Mapping):
            continue
        kind = ref.get("kind", "Gateway")
        key = (ref.get("namespace", ns), ref.get("name", ""))
        if kind == "Gateway" and key not in controlled:
            continue
        if kind not in ("Gateway", "Service"):
            continue
        old = {c.get("type"): c for c in
               (old_parents.get(_parent_key(ref, ns)) or {}).get("conditions") or ()}
        resolved = not missing
        out.append({
            "parentRef": dict(ref), "controllerName": CONTROLLER,
            "conditions": [
                condition(old, "Accepted", True, "Accepted", "Route was valid",
                           generation, now),
                condition(old, "ResolvedRefs", resolved,
                           "ResolvedRefs" if resolved else "BackendNotFound",
                           "All references resolved" if resolved else
                           "backend(s) not found: " + ", ".join(missing), generation, now)]})
    return out


def _parent_key(ref: Mapping[str, Any], ns: str) -> tuple[str, str, str, str]:
    return (str(ref.get("kind", "Gateway")), str(ref.get("namespace", ns)),
            str(ref.get("name", "")), str(ref.get("sectionName", "")))
