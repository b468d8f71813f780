"""Which Gateways are waypoints and what uses them (both API flavours)."""

from __future__ import annotations

from ambient_ref.xds.waypoints import bind, find_waypoints, waypoint_manifests


def gw(name, cls, labels=None, annotations=None, ns="default"):
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"gatewayClassName": cls,
                     "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}


def svc(name, labels=None, ns="default"):
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}}


def pod(uid, sa, labels=None, ns="default"):
    return {"metadata": {"uid": uid, "name": uid, "namespace": ns, "labels": labels or {}},
            "spec": {"serviceAccountName": sa}}


NS = [{"metadata": {"name": "default", "labels": {}}}]


def test_todays_waypoint_binds_labelled_services_only_when_it_exists():
    wps = find_waypoints([gw("waypoint", "istio-waypoint"), gw("other", "gke-l7")])
    assert list(wps) == [("default", "waypoint")]
    services, workloads = bind(
        wps, NS,
        [svc("productpage", {"istio.io/use-waypoint": "waypoint"}),
         svc("reviews", {"istio.io/use-waypoint": "missing"}),
         svc("ratings")],
        [pod("p1", "bookinfo-productpage", {"istio.io/use-waypoint": "waypoint"})])
    assert set(services) == {("default", "productpage")}  # missing waypoint: L4 only
    assert workloads == {}  # waypoint-for defaults to service


def test_namespace_label_and_object_override():
    ns = [{"metadata": {"name": "default", "labels": {"istio.io/use-waypoint": "waypoint"}}}]
    wps = find_waypoints([gw("waypoint", "istio-waypoint", {"istio.io/waypoint-for": "all"})])
    services, workloads = bind(
        wps, ns, [svc("a"), svc("b", {"istio.io/use-waypoint": "none"})],
        [pod("u1", "x"), pod("u2", "y", {"istio.io/use-waypoint": "none"}),
         pod("w", "waypoint", {"gateway.networking.k8s.io/gateway-name": "waypoint"})])
    assert set(services) == {("default", "a")}
    assert set(workloads) == {"u1"}  # opted-out and the waypoint's own pod excluded


def test_preview_flavour_serves_one_service_account():
    wps = find_waypoints([gw("productpage", "istio-mesh",
                             annotations={"istio.io/service-account": "bookinfo-productpage"})])
    [wp] = wps.values()
    assert wp.deployment == "bookinfo-productpage-waypoint-proxy"
    services, workloads = bind(wps, NS, [svc("productpage")],
                               [pod("p", "bookinfo-productpage"), pod("r", "bookinfo-reviews")])
    assert services == {} and set(workloads) == {"p"}


def test_manifests_name_the_deployment_after_the_waypoint():
    [wp] = find_waypoints([gw("waypoint", "istio-waypoint")]).values()
    kinds = {(m["kind"], m["metadata"]["name"]) for m in waypoint_manifests(wp)}
    assert kinds == {("ServiceAccount", "waypoint"), ("Deployment", "waypoint"),
                     ("Service", "waypoint")}
