"""The ztunnel's outbound decision (which hop a captured connection takes), without
sockets: straight to a mesh pod over HBONE, to a waypoint, plain TCP outside the mesh,
and refused when the waypoint in the way has no ready endpoint (istio/ztunnel
src/state.rs ``fetch_waypoint`` returns ``Error::UnknownWaypoint``, and
src/proxy/outbound.rs drops the connection)."""

from __future__ import annotations

from ambient_ref.xds.types import PortMapping, Service, ServicePort, Workload
from ambient_ref.ztunnel.route import outbound_route
from ambient_ref.ztunnel.state import MeshState

NS = "default"
VIP = "198.19.0.20"
POD_IP = "198.18.0.5"
WAYPOINT_IP = "198.18.1.9"
PRODUCTPAGE = f"productpage.{NS}.svc.cluster.local"
WAYPOINT_HOST = f"waypoint.{NS}.svc.cluster.local"
WAYPOINT_REF = {"namespace": NS, "name": "waypoint", "hostname": WAYPOINT_HOST,
                "hbone_mtls_port": 15008, "identity": f"spiffe://cluster.local/ns/{NS}/sa/waypoint"}


def _state(*, waypoint_bound: bool, waypoint_pods: int, waypoint_healthy: bool = True,
           protocol: str = "HBONE") -> MeshState:
    pp = Workload(uid="pp", name="productpage-v1-x", namespace=NS, addresses=[POD_IP],
                  service_account="bookinfo-productpage", protocol=protocol,  # type: ignore[arg-type]
                  services={f"{NS}/{PRODUCTPAGE}": [PortMapping(9080, 9080)]})
    workloads = {"pp": pp}
    for i in range(waypoint_pods):
        workloads[f"wp{i}"] = Workload(
            uid=f"wp{i}", name=f"waypoint-{i}", namespace=NS, addresses=[WAYPOINT_IP],
            service_account="waypoint", protocol="HBONE", healthy=waypoint_healthy,
            services={f"{NS}/{WAYPOINT_HOST}": [PortMapping(15008, 15008)]})
    services = {
        f"{NS}/{PRODUCTPAGE}": Service("productpage", NS, PRODUCTPAGE, [VIP],
                                       [ServicePort("http", 9080, 9080)],
                                       waypoint=WAYPOINT_REF if waypoint_bound else None),
        f"{NS}/{WAYPOINT_HOST}": Service("waypoint", NS, WAYPOINT_HOST, ["198.19.0.30"],
                                         [ServicePort("mesh", 15008, 15008)]),
    }
    state = MeshState()
    state.update(workloads, services, {})
    return state


def _route(state: MeshState, ip: str = VIP, port: int = 9080):
    return outbound_route(state, state.destination(ip, port), ip, port)


def test_a_mesh_pod_behind_a_vip_is_reached_over_hbone():
    route = _route(_state(waypoint_bound=False, waypoint_pods=0))
    assert (route.kind, route.address, route.authority) == ("hbone", POD_IP, f"{POD_IP}:9080")
    assert route.identity == f"spiffe://cluster.local/ns/{NS}/sa/bookinfo-productpage"


def test_a_service_with_a_ready_waypoint_goes_through_it_naming_the_vip():
    route = _route(_state(waypoint_bound=True, waypoint_pods=1))
    assert (route.kind, route.address, route.authority) == ("hbone", WAYPOINT_IP, f"{VIP}:9080")
    assert route.identity == WAYPOINT_REF["identity"]


def test_a_service_whose_waypoint_has_no_ready_endpoint_is_refused_not_reached_around_it():
    for state in (_state(waypoint_bound=True, waypoint_pods=0),
                  _state(waypoint_bound=True, waypoint_pods=1, waypoint_healthy=False)):
        route = _route(state)
        assert route.kind == "refused", route
        assert "unknown waypoint" in route.reason and WAYPOINT_HOST in route.reason


def test_a_workload_whose_waypoint_has_no_ready_endpoint_is_refused():
    state = _state(waypoint_bound=False, waypoint_pods=0)
    state.workloads["pp"].waypoint = WAYPOINT_REF
    state.update(dict(state.workloads), {}, {})
    assert _route(state, POD_IP, 9080).kind == "refused"


def test_outside_the_mesh_plain_tcp_to_what_was_dialled():
    route = _route(_state(waypoint_bound=False, waypoint_pods=0), "198.18.3.3", 80)
    assert (route.kind, route.address, route.port) == ("tcp", "198.18.3.3", 80)
    route = _route(_state(waypoint_bound=False, waypoint_pods=0, protocol="TCP"))
    assert (route.kind, route.address, route.port) == ("tcp", POD_IP, 9080)
