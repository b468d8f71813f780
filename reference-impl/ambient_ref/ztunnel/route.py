"""Which hop an outbound connection takes, decided from what the ztunnel knows.

Pure (no sockets), so the decision is tested on its own; ``proxy.py`` carries it out.
The order is istio/ztunnel's (src/proxy/outbound.rs ``build_request``):

1. a Service VIP whose Service has a waypoint: HBONE to the waypoint, naming the VIP
   and port the application dialled;
2. a workload with a waypoint of its own: HBONE to that waypoint;
3. a workload in the mesh: HBONE to the pod's 15008, naming ``podIP:port``;
4. anything else: plain TCP, to what was dialled (or to the endpoint chosen for it).

A waypoint in the way that has no ready endpoint refuses the connection: real ztunnel's
lookup fails with ``Error::UnknownWaypoint`` (src/state.rs ``fetch_waypoint``) and the
connection is dropped, never sent around the waypoint, which would skip every L7 policy
it enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .state import Destination, MeshState

RouteKind = Literal["hbone", "tcp", "refused"]


@dataclass(frozen=True)
class Route:
    """``hbone``: a tunnel to ``address``:15008 with ``authority``, the server verified as
    ``identity``; ``tcp``: plain TCP to ``address``:``port``; ``refused``: ``reason``."""

    kind: RouteKind
    address: str = ""
    port: int = 0
    authority: str = ""
    identity: str = ""
    reason: str = ""


def outbound_route(state: MeshState, dest: Destination, orig_ip: str, orig_port: int) -> Route:
    """The hop for a connection the application made to ``orig_ip:orig_port``, which
    ``state.destination`` resolved to ``dest``."""
    svc = dest.service
    waypoint, authority = None, f"{dest.ip}:{dest.port}"
    if svc is not None and svc.waypoint:
        waypoint, authority = svc.waypoint, f"{orig_ip}:{orig_port}"
    elif dest.workload is not None and dest.workload.waypoint:
        waypoint = dest.workload.waypoint
    if waypoint is not None:
        address = state.waypoint_address(waypoint)
        if address is None:
            return Route("refused", reason=f"unknown waypoint: {waypoint.get('hostname')} "
                                           "has no ready endpoint")
        return Route("hbone", address, authority=authority, identity=waypoint["identity"])
    if dest.workload is not None and dest.workload.protocol == "HBONE":
        return Route("hbone", dest.ip, authority=authority, identity=dest.workload.identity)
    # Not in the mesh: to the address it dialled (the node's service proxy still
    # balances a VIP), or to the endpoint chosen for it.
    if dest.workload is None:
        return Route("tcp", orig_ip, orig_port)
    return Route("tcp", dest.ip, dest.port)
