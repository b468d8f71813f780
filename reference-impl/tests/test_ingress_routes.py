"""The ingress gateway's routes: VirtualServices bound to its Gateways, selected by Host."""

import random

from ambient_ref.waypoint.main import ingress_virtual_services
from ambient_ref.waypoint.routing import HttpRequest, RouteTable

HOST = "istio-ingressgateway.istio-system.svc.cluster.local"


def gateway(ns: str) -> dict:
    return {"metadata": {"name": "bookinfo-gateway", "namespace": ns},
            "spec": {"selector": {"istio": "ingressgateway"}}}


def vs(ns: str, hosts: list[str]) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "bookinfo", "namespace": ns},
            "spec": {"hosts": hosts, "gateways": ["bookinfo-gateway"], "http": [
                {"match": [{"uri": {"exact": "/productpage"}}],
                 "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}}


def services(*namespaces: str) -> dict:
    known = {(ns, "productpage"): {"metadata": {"namespace": ns, "name": "productpage"},
                                   "spec": {"ports": [{"port": 9080}]}} for ns in namespaces}
    known[("istio-system", "istio-ingressgateway")] = {
        "metadata": {"namespace": "istio-system", "name": "istio-ingressgateway"},
        "spec": {"ports": [{"port": 80}]}}
    return known


def route(table: RouteTable, host: str):
    req = HttpRequest("GET", "/productpage", [("host", host)], host)
    return table.route(("istio-system", "istio-ingressgateway"), 80, req, random.Random(1))


def test_each_namespace_gets_the_requests_for_its_own_host():
    vss = ingress_virtual_services([gateway("a"), gateway("b")],
                                   [vs("a", ["a.example"]), vs("b", ["b.example"])], HOST)
    table = RouteTable.build(vss, [], [], services("a", "b"))
    assert route(table, "a.example:80").destination == ("a", "productpage")
    assert route(table, "b.example").destination == ("b", "productpage")
    assert route(table, "c.example").kind == "error"  # no route: 404


def test_a_catch_all_host_serves_any_host():
    vss = ingress_virtual_services([gateway("a")], [vs("a", ["*"])], HOST)
    table = RouteTable.build(vss, [], [], services("a"))
    assert route(table, "anything.else").destination == ("a", "productpage")
