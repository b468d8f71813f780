"""Enrollment changes, judged by the traffic they change, never by labels or annotations;
a waypoint that is missing, and a waypoint that has no ready pod.

What tells an enrolled workload from one outside the mesh on the wire:

* a client in the mesh has an identity at its destination, one outside sends plaintext
  and has none: an ALLOW naming the client's principal lets it in only while it is
  enrolled (ztunnel src/rbac.rs: a source without identity matches no principal);
* a destination in the mesh has its ztunnel enforce L4 policy, one outside does not: a
  client the policy refuses gets through once the destination left the mesh.

Clients and destination live in separate namespaces, so each side is enrolled and
unenrolled on its own.  Every change is followed by waiting (``eventually``) for the
traffic that defines the new state.  Pods that start in an enrolled namespace join
the mesh too (istio/istio architecture/ambient/ztunnel-cni-lifecycle.md: the CNI
plugin sets up a new pod's redirection; the node agent enrolls running ones).
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.apps import AppNamespace, client_workload, deny_path_at_waypoint, principal
from conformance.waiting import eventually
from profiles import features as F

pytestmark = pytest.mark.xdist_group("enrollment")

URL = "http://productpage:9080/"
PRODUCTPAGE = "http://productpage:9080/productpage"
CONFIRMATIONS = 5
"""Requests after the first that meets a changed path, each of which must meet it too:
a path that fails once and then lets the request around (a waypoint's last connection
closing, then a fall-through) is caught."""
USE_WAYPOINT = "istio.io/use-waypoint"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
RBAC_DENIED = "RBAC: access denied"
REFUSED = (52, 56)
"""Reset (56), or closed before a reply (52): how a refused connection looks."""
IN_TRANSITION = (6, 7)
"""A name not resolved (6) or a connect refused (7): what a running pod sees while it
is being enrolled, between its redirection rules and its ztunnel's listeners.
istio-cni installs the rules first and only then hands the pod to ztunnel, which
opens the listeners in it (istio/istio cni/pkg/nodeagent/net_linux.go,
``AddPodToMesh``: ``CreateInpodRules``, then ``sendPodToZtunnelAndWaitForAck``), and
the rules redirect DNS to ztunnel's DNS proxy as well (``--dport 53 ... REDIRECT
--to-ports 15053``, cni/pkg/iptables).  Never a state to converge to: the
observation is only "not yet"."""


def gets_through(ns: AppNamespace, client: str, url: str) -> bool | str:
    """True for an answer, False for a refusal, a description of the failure for a
    request caught in an enrollment change; anything else fails the test."""
    r = ns.request(client, url)
    if r.exit_code == 0 and r.status == 200:
        return True
    if r.exit_code in REFUSED:
        return False
    if r.exit_code in IN_TRANSITION:
        return f"in transition: curl exit {r.exit_code}: {r.stderr.strip()}"
    raise AssertionError(f"{ns.name}/{client} -> {url}: neither an answer nor a refusal: {r}")


def allow_only(dest: str, principals: list[str]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "only-listed", "namespace": dest},
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
                     "rules": [{"from": [{"source": {"principals": principals}}]}]}}


class Sides:
    """Bookinfo in one namespace, the clients in another, both enrolled at first."""

    def __init__(self, dest: AppNamespace, clients: AppNamespace) -> None:
        self.dest, self.clients = dest, clients
        self.url = f"http://productpage.{dest.name}:9080/"

    def through(self, client: str) -> bool | str:
        return gets_through(self.clients, client, self.url)

    def until(self, want: dict[str, bool], what: str) -> None:
        eventually(lambda: {c: self.through(c) for c in want}, lambda seen: seen == want,
                   what=what)

    def set_enrolled(self, ns: AppNamespace, enrolled: bool) -> None:
        """Label or unlabel through the adapter, without waiting on any annotation:
        the caller waits for the traffic instead."""
        (ns.adapter.enroll if enrolled else ns.adapter.unenroll)(ns.cluster, ns.name)


@pytest.fixture(scope="module")
def sides(namespaces) -> Sides:
    dest = namespaces("enr-dest", clients=False)
    clients = namespaces("enr-clients", bookinfo=False)
    s = Sides(dest, clients)
    dest.cluster.apply([allow_only(dest.name, [principal(clients.name, "sleep"),
                                               principal(clients.name, "latecomer")])])
    s.until({"sleep": True, "notsleep": False},
            "the principal allow-list is in force (sleep in, notsleep refused)")
    return s


@pytest.mark.feature(F.CAPTURE, F.MTLS, F.L4_POLICY)
def test_a_client_leaving_the_mesh_loses_its_identity_and_regains_it(sides):
    sides.set_enrolled(sides.clients, False)
    sides.until({"sleep": False}, "sleep, out of the mesh, arrives without the identity the "
                                  "allow-list names")
    sides.set_enrolled(sides.clients, True)
    sides.until({"sleep": True, "notsleep": False},
                "sleep, back in the mesh, is known by its principal again")


@pytest.mark.feature(F.CAPTURE, F.L4_POLICY)
def test_a_destination_leaving_the_mesh_stops_enforcing_and_resumes(sides):
    sides.set_enrolled(sides.dest, False)
    sides.until({"notsleep": True}, "nothing enforces the allow-list once productpage left the "
                                    "mesh: notsleep gets through")
    sides.set_enrolled(sides.dest, True)
    sides.until({"sleep": True, "notsleep": False},
                "productpage, back in the mesh, enforces the allow-list again")


@pytest.mark.feature(F.CAPTURE, F.MTLS, F.L4_POLICY)
def test_a_pod_started_in_an_enrolled_namespace_joins_the_mesh(sides):
    sides.clients.cluster.apply(client_workload("latecomer"), namespace=sides.clients.name)
    sides.clients.wait_ready()
    sides.until({"latecomer": True}, "the new pod's requests carry its identity, which the "
                                     "allow-list names")


def deny_notsleep(ns: str) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-notsleep", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [
                         principal(ns, "notsleep")]}}]}]}}


def denied_by_waypoint(r) -> bool:
    return r.status == 403 and r.body.strip() == RBAC_DENIED


@pytest.mark.feature(F.WAYPOINT, F.L4_POLICY, F.L7_POLICY)
def test_use_waypoint_naming_a_missing_waypoint_keeps_l4_working(bookinfo, waypoint_flavour):
    """A Service naming a waypoint that does not exist is not bound to one (istiod reports
    ``WaypointIsNotReady`` and sends no waypoint: istio/istio
    pilot/pkg/serviceregistry/ambient/waypoints.go, status.go), so its traffic stays at
    L4 (istio/istio tests/integration/ambient/baseline_test.go TestBogusUseWaypoint).

    The expected effect of the dangling label alone would be "nothing changes", which
    no observation can date.  So productpage is first bound to a real waypoint that
    denies its path, and then relabelled to the missing one: the change itself is
    visible at each client's ztunnel (where the binding is decided), as the denial
    giving way to productpage's answer."""
    ns = bookinfo
    wp = ns.add_waypoint("waypoint", flavour=waypoint_flavour)
    ns.cluster.apply([deny_path_at_waypoint(ns.name, "productpage", "/")])
    ns.use_waypoint("service", "productpage", wp)
    clients = ("sleep", "notsleep")
    for client in clients:
        eventually(lambda c=client: ns.request(c, URL), denied_by_waypoint,
                   what=f"{client}'s requests to productpage go through the waypoint")
    ns.cluster.kubectl("label", "service", "productpage", "-n", ns.name,
                       f"{USE_WAYPOINT}=no-such-waypoint", "--overwrite")
    for client in clients:
        r = eventually(lambda c=client: ns.request(c, URL),
                       lambda r: not denied_by_waypoint(r),
                       what=f"{client}'s requests to productpage no longer meet the "
                            "waypoint it was relabelled away from")
        assert r.status == 200, (client, r)
    ns.cluster.apply([deny_notsleep(ns.name)])
    eventually(lambda: ns.request("notsleep", URL), lambda r: r.exit_code == 56,
               what="L4 policy still enforced by ztunnel with the dangling use-waypoint")
    assert ns.request("sleep", URL).status == 200


@pytest.mark.feature(F.WAYPOINT, F.L7_POLICY, F.WAYPOINT_FAIL_CLOSED)
def test_a_service_whose_waypoint_has_no_ready_pod_is_not_reached_around_it(
        bookinfo, waypoint_flavour):
    """Fail closed: with its waypoint scaled to zero, a Service's traffic fails rather
    than reach the destination without the L7 policy.  The binding stays (istiod keeps
    a waypoint's address once it was ready: istio/istio
    pilot/pkg/serviceregistry/ambient/waypoints.go), and a ztunnel finding no ready
    waypoint endpoint refuses the connection (``Error::UnknownWaypoint``: istio/ztunnel
    src/state.rs fetch_waypoint, src/proxy/outbound.rs build_request)."""
    ns = bookinfo
    wp = ns.add_waypoint("waypoint", flavour=waypoint_flavour)
    ns.cluster.apply([deny_path_at_waypoint(ns.name, "productpage", "/productpage")])
    ns.use_waypoint("service", "productpage", wp)
    eventually(lambda: ns.request("sleep", PRODUCTPAGE), denied_by_waypoint,
               what="the waypoint denies sleep's GET /productpage (the L7 policy in force)")
    ns.cluster.kubectl("scale", "deployment", wp.deployment, "-n", ns.name, "--replicas=0")
    selector = f"{GATEWAY_NAME_LABEL}={wp.name}"
    eventually(lambda: ns.cluster.kubectl("get", "pods", "-n", ns.name, "-l", selector,
                                          "-o", "name").stdout.split(),
               lambda names: not names, what="the waypoint has no pod left")
    # The change itself: once sleep's ztunnel knows the waypoint has no ready pod,
    # productpage's requests no longer meet the waypoint's denial.  What they meet
    # instead must be a failure, and stay one, never productpage's answer.
    first = eventually(lambda: ns.request("sleep", PRODUCTPAGE),
                       lambda r: not denied_by_waypoint(r),
                       what="sleep's requests to productpage no longer reach the "
                            "scaled-down waypoint")
    seen = [first, *(ns.request("sleep", PRODUCTPAGE) for _ in range(CONFIRMATIONS))]
    answered = [r for r in seen if r.status is not None and r.status < 500]
    assert not answered, ("productpage answered with its waypoint scaled to zero "
                          f"(L7 policy bypassed): {answered[0]}")
