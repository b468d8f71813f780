"""The reference ztunnel, except that a waypoint with no ready endpoint is gone around:
the connection goes straight to its destination, skipping the waypoint's L7 policies
(what the reference did before it failed closed)."""

import sys
from dataclasses import replace

from ambient_ref.ztunnel import proxy, route

_route = route.outbound_route


def _around_missing_waypoints(state, dest, orig_ip, orig_port):  # type: ignore[no-untyped-def]
    chosen = _route(state, dest, orig_ip, orig_port)
    if chosen.kind != "refused":
        return chosen
    unbound = replace(dest, service=dest.service and replace(dest.service, waypoint=None),
                      workload=dest.workload and replace(dest.workload, waypoint=None))
    return _route(state, unbound, orig_ip, orig_port)


proxy.outbound_route = _around_missing_waypoints

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
