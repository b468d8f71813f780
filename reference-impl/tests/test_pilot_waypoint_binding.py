"""When the control plane binds a Service to its waypoint: not before the waypoint first
served, and from then on even with no ready pod (istiod binds a Gateway whose status has
addresses, set once ready and never removed: istio/istio
pilot/pkg/serviceregistry/ambient/waypoints.go), so a waypoint scaled to zero makes its
users' traffic fail rather than skip it.  The computation runs on hand-filled informer
copies, without a cluster."""

from __future__ import annotations

from typing import Any

from ambient_ref.pilot.main import ControlPlane
from ambient_ref.xds.waypoints import has_addresses

NS = "shop"
HOST = f"productpage.{NS}.svc.cluster.local"


def _plane(*, ready_replicas: int, gateway_status: dict[str, Any]) -> ControlPlane:
    plane = ControlPlane(None, "istio-system", "cluster.local", set())  # type: ignore[arg-type]
    plane.namespaces.items = {("", NS): {"metadata": {"name": NS, "labels": {
        "istio.io/dataplane-mode": "ambient"}}}}
    plane.services.items = {(NS, "productpage"): {
        "metadata": {"name": "productpage", "namespace": NS,
                     "labels": {"istio.io/use-waypoint": "waypoint"}},
        "spec": {"clusterIP": "198.19.0.20", "selector": {"app": "productpage"},
                 "ports": [{"name": "http", "port": 9080}]}}}
    plane.gateways.items = {(NS, "waypoint"): {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": NS, "uid": "g1"},
        "spec": {"gatewayClassName": "istio-waypoint"}, "status": gateway_status}}
    plane.waypoint_deployments.items = {(NS, "waypoint"): {
        "metadata": {"name": "waypoint", "namespace": NS},
        "status": {"readyReplicas": ready_replicas}}}
    plane.push()
    return plane


def _bound_to(plane: ControlPlane) -> str | None:
    waypoint = plane.store.get("service")[f"{NS}/{HOST}"].get("waypoint")
    return waypoint and waypoint["hostname"]


ADDRESSED = {"addresses": [{"type": "IPAddress", "value": "198.19.0.30"}]}


def test_not_bound_before_the_waypoint_first_serves():
    assert _bound_to(_plane(ready_replicas=0, gateway_status={})) is None


def test_bound_once_the_waypoint_serves():
    assert _bound_to(_plane(ready_replicas=1, gateway_status={})) == \
        f"waypoint.{NS}.svc.cluster.local"


def test_still_bound_once_it_served_and_then_has_no_ready_pod():
    assert _bound_to(_plane(ready_replicas=0, gateway_status=ADDRESSED)) == \
        f"waypoint.{NS}.svc.cluster.local"


def test_the_gateway_address_is_written_once_ready_and_then_kept():
    assert not has_addresses({"status": {}}) and has_addresses({"status": ADDRESSED})
    written: list[dict[str, Any]] = []

    class Kube:
        async def patch(self, _path: str, body: dict[str, Any]) -> None:
            written.append(body["status"])

    import asyncio

    for ready, status in ((0, {}), (1, {}), (0, ADDRESSED)):
        plane = _plane(ready_replicas=ready, gateway_status=status)
        plane.kube = Kube()  # type: ignore[assignment]
        plane.services.items[(NS, "waypoint")] = {
            "metadata": {"name": "waypoint", "namespace": NS},
            "spec": {"clusterIP": "198.19.0.30"}}
        wp = plane.waypoints[(NS, "waypoint")]
        asyncio.run(plane._gateway_status(plane.gateways.items[(NS, "waypoint")], wp))
    assert ["addresses" in s for s in written] == [False, True, True], written


def test_policies_get_the_condition_of_whoever_enforces_them():
    """A selector (or namespace) policy is the ztunnels' (``ZtunnelAccepted``); one with
    targetRefs is its waypoint's (``WaypointAccepted``), which istiod writes too."""
    plane = ControlPlane(None, "istio-system", "cluster.local", set())  # type: ignore[arg-type]
    ztunnel = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "l4", "namespace": NS, "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                        "rules": [{"from": [{"source": {"namespaces": ["other"]}}]}]}}
    waypoint = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "l7", "namespace": NS, "generation": 1},
                "spec": {"targetRefs": [{"kind": "Service", "group": "",
                                         "name": "productpage"}],
                         "action": "ALLOW", "rules": [{"to": [{"operation": {
                             "methods": ["GET"]}}]}]}}
    plane.policies.items = {(NS, "l4"): ztunnel, (NS, "l7"): waypoint}
    plane.push()
    [l4] = plane._statuses[f"{NS}/l4"]
    [l7] = plane._statuses[f"{NS}/l7"]
    assert (l4["type"], l4["status"]) == ("ZtunnelAccepted", "True")
    assert (l7["type"], l7["status"]) == ("WaypointAccepted", "True")
