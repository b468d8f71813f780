"""Waypoints of the reference implementation on the local cluster: walkthrough steps 8
and 9 in both API flavours, HTTPRoute, header matches, faults, removal."""

from __future__ import annotations

import collections
import math

import pytest
import yaml

from .test_on_local_cluster import applied, curl, mesh, provider, removed, wait_synced

__all__ = ["mesh", "provider"]  # the module-scoped cluster fixture, shared

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mesh-cluster")]

L7_PRINCIPALS = ["cluster.local/ns/default/sa/sleep",
                 "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]


def gateway(name: str, flavour: str, account: str | None = None) -> dict:
    if flavour == "istio-mesh":
        return {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "Gateway",
                "metadata": {"name": name, "namespace": "default",
                             "annotations": {"istio.io/service-account": account}},
                "spec": {"gatewayClassName": "istio-mesh"}}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"istio.io/waypoint-for": "service"}},
            "spec": {"gatewayClassName": "istio-waypoint",
                     "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}


KEYS = {"VirtualService": "vs", "DestinationRule": "dr", "HTTPRoute": "routes",
        "AuthorizationPolicy": "policies", "Service": "services"}


def waypoint_holds(cluster, deployment: str, objects: list[dict], present: bool = True,
                   timeout: float = 30) -> None:
    """Until the waypoint's own account (``/debug/configz``) shows each object at its
    current version (or gone): only then is a routing or policy change in force there."""
    import json
    import time

    wanted = {}
    for obj in objects:
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        rv = None
        if present:
            plural = {"VirtualService": "virtualservices.networking.istio.io",
                      "DestinationRule": "destinationrules.networking.istio.io",
                      "HTTPRoute": "httproutes.gateway.networking.k8s.io",
                      "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
                      "Service": "services"}[obj["kind"]]
            rv = cluster.kubectl("get", plural, obj["metadata"]["name"], "-n",
                                 obj["metadata"]["namespace"], "-o",
                                 "jsonpath={.metadata.resourceVersion}").stdout
        wanted[(KEYS[obj["kind"]], key)] = rv
    deadline = time.monotonic() + timeout
    while True:
        r = cluster.exec("default", f"deploy/{deployment}",
                         ["curl", "-s", "http://127.0.0.1:15021/debug/configz"])
        held = json.loads(r.stdout) if r.exit_code == 0 and r.stdout else {}
        if held and all(held.get(kind, {}).get(key) == rv for (kind, key), rv in
                        wanted.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waypoint {deployment} does not hold {wanted}: {held}")


def programmed(cluster, name: str) -> None:
    cluster.wait("gateway.networking.k8s.io/v1", "Gateway", name, namespace="default",
                 timeout=60, description="Programmed",
                 condition=lambda g: any(c.get("type") == "Programmed" and c["status"] == "True"
                                         for c in (g.get("status") or {}).get("conditions")
                                         or ()))
    wait_synced(cluster)


def use_waypoint(cluster, service: str, name: str | None) -> None:
    value = f"istio.io/use-waypoint={name}" if name else "istio.io/use-waypoint-"
    cluster.kubectl("label", "--overwrite", "service", service, "-n", "default", value)
    wait_synced(cluster)


def l7_policy(flavour: str) -> dict:
    rule = {"from": [{"source": {"principals": L7_PRINCIPALS}}],
            "to": [{"operation": {"methods": ["GET"]}}]}
    spec: dict = {"action": "ALLOW", "rules": [rule]}
    if flavour == "istio-mesh":
        spec["selector"] = {"matchLabels": {"app": "productpage"}}
    else:
        spec["targetRefs"] = [{"kind": "Service", "group": "", "name": "productpage"}]
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "productpage-viewer", "namespace": "default"}, "spec": spec}


@pytest.mark.parametrize("flavour", ["istio-waypoint", "istio-mesh"])
def test_step8_waypoint_enforces_the_get_only_policy(mesh, flavour):
    name = "waypoint" if flavour == "istio-waypoint" else "productpage"
    gw = gateway(name, flavour, "bookinfo-productpage")
    deployment = "waypoint" if flavour == "istio-waypoint" else \
        "bookinfo-productpage-waypoint-proxy"
    mesh.apply([gw])
    try:
        programmed(mesh, name)
        if flavour == "istio-waypoint":
            use_waypoint(mesh, "productpage", "waypoint")
        policy = l7_policy(flavour)
        mesh.apply([policy])
        waypoint_holds(mesh, deployment, [policy])
        wait_synced(mesh)
        try:
            ok = curl(mesh, "sleep", "http://productpage:9080/productpage")
            assert ok.exit_code == 0 and "<title>Simple Bookstore App</title>" in ok.stdout
            for client, extra in (("sleep", ("-X", "DELETE")), ("notsleep", ())):
                r = curl(mesh, client, "http://productpage:9080/productpage",
                         "-w", "\n%{http_code}", *extra)
                assert r.stdout.splitlines()[-1] == "403", (client, r.stdout)
                assert "RBAC: access denied" in r.stdout
            stats = mesh.exec("default", f"deploy/{deployment}", [
                "curl", "-s", "http://localhost:15020/stats/prometheus"]).stdout
            series = [line for line in stats.splitlines()
                      if line.startswith("istio_requests_total{")
                      and 'destination_service_name="productpage"' in line]
            codes = {line.split('response_code="')[1].split('"')[0] for line in series}
            assert {"200", "403"} <= codes
            assert all('reporter="waypoint"' in line for line in series)
        finally:
            removed(mesh, [policy])
            waypoint_holds(mesh, deployment, [policy], present=False)
    finally:
        if flavour == "istio-waypoint":
            use_waypoint(mesh, "productpage", None)
        removed(mesh, [gw])


def _versions(mesh, n: int) -> collections.Counter:
    loop = (f"for i in $(seq {n}); do curl -s http://productpage:9080/productpage "
            "| grep -o 'reviews-v[0-9]' | head -n 1; done")
    r = mesh.exec("default", "deploy/sleep", ["sh", "-c", loop], timeout=300)
    return collections.Counter(r.stdout.split())


def _assert_split(counts: collections.Counter, n: int) -> None:
    """v1 ~ 90 %, v2 ~ 10 % (binomial band of 4 standard deviations), v3 nothing."""
    assert sum(counts.values()) == n, counts
    sd = math.sqrt(n * 0.9 * 0.1)
    assert abs(counts["reviews-v1"] - 0.9 * n) <= 4 * sd, counts
    assert counts["reviews-v3"] == 0, counts


DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
      "metadata": {"name": "reviews", "namespace": "default"},
      "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}}
                                              for v in ("v1", "v2", "v3")]}}
VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": "reviews", "namespace": "default"},
      "spec": {"hosts": ["reviews"], "http": [
          {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
           "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
          {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                     {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]}]}}


@pytest.mark.parametrize("flavour", ["istio-waypoint", "istio-mesh"])
def test_step9_reviews_waypoint_splits_90_10(mesh, flavour):
    name = "waypoint" if flavour == "istio-waypoint" else "reviews"
    deployment = "waypoint" if flavour == "istio-waypoint" else "bookinfo-reviews-waypoint-proxy"
    gw = gateway(name, flavour, "bookinfo-reviews")
    mesh.apply([gw])
    try:
        programmed(mesh, name)
        if flavour == "istio-waypoint":
            use_waypoint(mesh, "reviews", "waypoint")
        mesh.apply([DR, VS])
        waypoint_holds(mesh, deployment, [DR, VS])
        try:
            _assert_split(_versions(mesh, 200), 200)
            jason = mesh.exec("default", "deploy/sleep", ["sh", "-c",
                              "for i in 1 2 3 4 5; do curl -s -H 'end-user: jason' "
                              "http://reviews:9080/reviews/0; echo; done"]).stdout
            assert jason.count('"podname": "reviews-v2') == 5, jason
        finally:
            mesh.delete([VS, DR])
            waypoint_holds(mesh, deployment, [VS, DR], present=False)
        # Without the VirtualService the spread is even again (all three answer).
        counts = _versions(mesh, 60)
        assert set(counts) == {"reviews-v1", "reviews-v2", "reviews-v3"}, counts
    finally:
        if flavour == "istio-waypoint":
            use_waypoint(mesh, "reviews", None)
        removed(mesh, [gw])


def test_httproute_split_fault_abort_and_delay(mesh):
    gw = gateway("waypoint", "istio-waypoint")
    versions = [{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": f"reviews-{v}", "namespace": "default"},
                 "spec": {"selector": {"app": "reviews", "version": v},
                          "ports": [{"port": 9080, "name": "http"}]}} for v in ("v1", "v2")]
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "reviews", "namespace": "default"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews",
                                      "port": 9080}],
                      "rules": [{"backendRefs": [
                          {"name": "reviews-v1", "port": 9080, "weight": 90},
                          {"name": "reviews-v2", "port": 9080, "weight": 10}]}]}}
    mesh.apply([gw, *versions])
    try:
        programmed(mesh, "waypoint")
        use_waypoint(mesh, "reviews", "waypoint")
        mesh.apply([route])
        waypoint_holds(mesh, "waypoint", [route, *versions])
        _assert_split(_versions(mesh, 200), 200)
        mesh.delete([route])
        waypoint_holds(mesh, "waypoint", [route], present=False)
        abort = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                 "metadata": {"name": "ratings-fault", "namespace": "default"},
                 "spec": {"hosts": ["reviews"], "http": [{
                     "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100}}},
                     "route": [{"destination": {"host": "reviews"}}]}]}}
        mesh.apply([abort])
        waypoint_holds(mesh, "waypoint", [abort])
        r = curl(mesh, "sleep", "http://reviews:9080/reviews/0", "-w", "\n%{http_code}")
        assert r.stdout.splitlines()[-1] == "500", r.stdout
        delay = yaml.safe_load(yaml.safe_dump(abort))
        delay["spec"]["http"][0]["fault"] = {"delay": {"fixedDelay": "1s",
                                                       "percentage": {"value": 100}}}
        mesh.apply([delay])
        waypoint_holds(mesh, "waypoint", [delay])
        r = curl(mesh, "sleep", "http://reviews:9080/reviews/0", "-o", "/dev/null", "-w",
                 "%{http_code} %{time_total}")
        code, seconds = r.stdout.split()
        assert code == "200" and float(seconds) >= 1.0, r.stdout
        mesh.delete([delay])
        waypoint_holds(mesh, "waypoint", [delay], present=False)
    finally:
        use_waypoint(mesh, "reviews", None)
        removed(mesh, [gw, *versions])


def test_destination_sees_the_waypoint_identity(mesh):
    """Today's flavour: the L4 allow-list at the destination must name the waypoint."""
    gw = gateway("waypoint", "istio-waypoint")
    only_sleep = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                  "metadata": {"name": "details-l4", "namespace": "default"},
                  "spec": {"selector": {"matchLabels": {"app": "details"}}, "action": "ALLOW",
                           "rules": [{"from": [{"source": {"principals": [
                               "cluster.local/ns/default/sa/sleep"]}}]}]}}
    mesh.apply([gw])
    try:
        programmed(mesh, "waypoint")
        use_waypoint(mesh, "details", "waypoint")
        applied(mesh, [only_sleep])
        r = curl(mesh, "sleep", "http://details:9080/details/0", "-w", "\n%{http_code}")
        assert r.stdout.splitlines()[-1] == "503", r.stdout  # the waypoint is refused
        with_waypoint = yaml.safe_load(yaml.safe_dump(only_sleep))
        with_waypoint["spec"]["rules"][0]["from"][0]["source"]["principals"].append(
            "cluster.local/ns/default/sa/waypoint")
        applied(mesh, [with_waypoint])
        r = curl(mesh, "sleep", "http://details:9080/details/0", "-w", "\n%{http_code}")
        assert r.stdout.splitlines()[-1] == "200", r.stdout
        removed(mesh, [with_waypoint])
    finally:
        use_waypoint(mesh, "details", None)
        removed(mesh, [gw])
