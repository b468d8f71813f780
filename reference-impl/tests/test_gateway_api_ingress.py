"""Gateway API ingress (a Gateway of class istio): what the control plane makes and
writes (xds/gateways.py), the ingress's routing of its HTTPRoutes (waypoint/main.py),
and, on the local cluster, Bookinfo reached through ``<name>-istio`` as Istio's
getting-started guide reaches it."""

from __future__ import annotations

import random

import pytest

from ambient_ref.waypoint.main import gateway_api_routes
from ambient_ref.waypoint.routing import HttpRequest, RouteTable
from ambient_ref.xds.gateways import (
    CONTROLLER,
    find_ingress_gateways,
    gateway_classes,
    gateway_status,
    ingress_manifests,
    route_parents,
)

from .test_on_local_cluster import curl, mesh, provider

__all__ = ["mesh", "provider"]  # the module-scoped cluster fixture, shared

NOW = "2026-12-04T12:00:00Z"


def gateway(name: str = "bookinfo-gateway", cls: str = "istio") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"gatewayClassName": cls, "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "tls", "port": 443, "protocol": "HTTPS"}]}}


def route(hostnames: list[str] | None = None, backend: str = "productpage",
          parent: dict | None = None) -> dict:
    spec = {"parentRefs": [parent or {"name": "bookinfo-gateway"}], "rules": [
        {"matches": [{"path": {"type": "Exact", "value": "/productpage"}}],
         "backendRefs": [{"name": backend, "port": 9080}]}]}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "bookinfo", "namespace": "default", "generation": 1,
                         "creationTimestamp": NOW},
            "spec": spec}


def test_only_class_istio_gateways_are_ingresses_and_only_their_http_listeners_served():
    found = find_ingress_gateways([gateway(), gateway("waypoint", "istio-waypoint")])
    [gw] = found.values()
    assert (gw.name, gw.deployment, gw.ports) == ("bookinfo-gateway", "bookinfo-gateway-istio",
                                                  (("http", 80),))
    assert gw.hostname == "bookinfo-gateway-istio.default.svc.cluster.local"


def test_the_ingress_objects_carry_istios_names_and_labels():
    [gw] = find_ingress_gateways([gateway()]).values()
    account, deployment, service = ingress_manifests(gw, "ambient-reference/ambient:0.1.0")
    for obj in (account, deployment, service):
        assert obj["metadata"]["name"] == "bookinfo-gateway-istio"
        assert obj["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == \
            "bookinfo-gateway"
        assert obj["metadata"]["labels"]["gateway.istio.io/managed"] == \
            "istio.io-gateway-controller"
    env = {e["name"]: e.get("value") for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GATEWAY_API_INGRESS"] == "true" and env["LISTEN_PORTS"] == "80"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 80,
                                         "protocol": "TCP"}]
    assert [c["metadata"]["name"] for c in gateway_classes()] == ["istio", "istio-waypoint"]
    assert {c["spec"]["controllerName"] for c in gateway_classes()} == {CONTROLLER}


def test_the_gateway_status_counts_routes_and_is_programmed_once_ready():
    [gw] = find_ingress_gateways([gateway()]).values()
    other = route(parent={"name": "another-gateway"})
    pending = gateway_status(gateway(), gw, [route(), other], ready=False, now=NOW)
    assert {c["type"]: c["status"] for c in pending["conditions"]} == {
        "Accepted": "True", "Programmed": "False"}
    assert "addresses" not in pending
    assert pending["listeners"][0]["attachedRoutes"] == 1
    ready = gateway_status({**gateway(), "status": pending}, gw, [route()], True, "later")
    assert ready["addresses"] == [{"type": "Hostname",
                                   "value": "bookinfo-gateway-istio.default.svc.cluster.local"}]
    accepted = next(c for c in ready["conditions"] if c["type"] == "Accepted")
    assert accepted["lastTransitionTime"] == NOW  # unchanged conditions keep their time


def test_route_parents_are_written_for_this_controllers_parents_only():
    controlled = {("default", "bookinfo-gateway"): "istio"}
    services = {("default", "productpage"): {}}
    [parent] = route_parents(route(), controlled, services, NOW)
    assert parent["controllerName"] == CONTROLLER
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {
        "Accepted": "True", "ResolvedRefs": "True"}
    [missing] = route_parents(route(backend="nope"), controlled, services, NOW)
    resolved = next(c for c in missing["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert route_parents(route(parent={"name": "someone-elses"}), controlled, services,
                         NOW) == []


def _table(routes: list[dict]) -> RouteTable:
    known = {("default", name): {"metadata": {"namespace": "default", "name": name},
                                 "spec": {"ports": [{"port": port}]}}
             for name, port in (("productpage", 9080), ("bookinfo-gateway-istio", 80))}
    return RouteTable.build([], [], gateway_api_routes(
        routes, "default", "bookinfo-gateway", "bookinfo-gateway-istio", [80]), known)


def test_the_ingress_routes_its_httproutes_by_path_and_hostname():
    key = ("default", "bookinfo-gateway-istio")
    table = _table([route()])
    hit = table.route(key, 80, HttpRequest("GET", "/productpage", (), "anything"),
                      random.Random(1))
    assert hit.kind == "forward" and hit.destination == ("default", "productpage")
    miss = table.route(key, 80, HttpRequest("GET", "/other", (), "x"), random.Random(1))
    assert miss.kind == "error" and miss.abort_status == 404
    named = _table([route(hostnames=["bookinfo.example.com"])])
    right = named.route(key, 80, HttpRequest("GET", "/productpage",
                                             [("host", "bookinfo.example.com")],
                                             "bookinfo.example.com"), random.Random(1))
    wrong = named.route(key, 80, HttpRequest("GET", "/productpage", [("host", "other.com")],
                                             "other.com"), random.Random(1))
    assert right.kind == "forward" and wrong.kind == "error"


@pytest.mark.slow
@pytest.mark.xdist_group("mesh-cluster")
def test_bookinfo_through_a_gateway_of_class_istio(mesh):
    gw = {**gateway(), "spec": {"gatewayClassName": "istio", "listeners": [
        {"name": "http", "port": 80, "protocol": "HTTP",
         "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}
    del gw["metadata"]["generation"]
    http_route = route()
    http_route["spec"]["rules"][0]["matches"].append(
        {"path": {"type": "PathPrefix", "value": "/static"}})
    for obj in (gw, http_route):
        obj["metadata"].pop("generation", None)
        obj["metadata"].pop("creationTimestamp", None)
    mesh.apply([gw, http_route])
    try:
        programmed = mesh.wait("gateway.networking.k8s.io/v1", "Gateway", "bookinfo-gateway",
                               namespace="default", timeout=60, condition=lambda g: any(
                                   c.get("type") == "Programmed" and c.get("status") == "True"
                                   for c in (g.get("status") or {}).get("conditions") or ()))
        assert programmed["status"]["listeners"][0]["attachedRoutes"] == 1
        mesh.wait("gateway.networking.k8s.io/v1", "HTTPRoute", "bookinfo",
                  namespace="default", timeout=30,
                  condition=lambda r: bool((r.get("status") or {}).get("parents")))
        url = "http://bookinfo-gateway-istio.default"
        assert curl(mesh, "sleep", f"{url}/productpage", "-o", "/dev/null", "-w",
                    "%{http_code}").stdout == "200"
        assert curl(mesh, "sleep", f"{url}/reviews/0", "-o", "/dev/null", "-w",
                    "%{http_code}").stdout == "404"  # no rule routes it
    finally:
        mesh.delete([http_route, gw])
