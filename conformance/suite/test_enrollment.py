"""Enrollment changes, judged by the traffic they change, never by labels or annotations.

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

from conformance import features as F
from conformance.apps import AppNamespace, client_workload, principal
from conformance.waiting import eventually

pytestmark = pytest.mark.xdist_group("enrollment")

REFUSED = (52, 56)
"""Reset (56), or closed before a reply (52): how a refused connection looks."""


def gets_through(ns: AppNamespace, client: str, url: str) -> bool:
    r = ns.request(client, url)
    if r.exit_code == 0 and r.status == 200:
        return True
    if r.exit_code in REFUSED:
        return False
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

    def through(self, client: str) -> bool:
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


@pytest.mark.feature(F.WAYPOINT, F.L4_POLICY)
def test_use_waypoint_naming_a_missing_waypoint_keeps_l4_working(sides, waypoint_flavour):
    """A bogus ``istio.io/use-waypoint`` leaves traffic working at L4 (istio/istio
    tests/integration/ambient/baseline_test.go ``TestBogusUseWaypoint``), and the
    destination's ztunnel still enforces L4 policy."""
    dest, clients = sides.dest, sides.clients
    dest.cluster.kubectl("label", "service", "productpage", "-n", dest.name,
                         "istio.io/use-waypoint=no-such-waypoint", "--overwrite")
    try:
        # A policy change made after the label, seen at L4, shows the label was taken.
        dest.cluster.apply([allow_only(dest.name, [principal(clients.name, c)
                                                   for c in ("sleep", "notsleep", "latecomer")])])
        sides.until({"sleep": True, "notsleep": True},
                    "the widened allow-list is in force at L4 with the dangling use-waypoint")
        dest.cluster.apply([allow_only(dest.name, [principal(clients.name, "sleep"),
                                                   principal(clients.name, "latecomer")])])
        sides.until({"sleep": True, "notsleep": False},
                    "the allow-list refuses notsleep again, still at L4")
    finally:
        dest.cluster.kubectl("label", "service", "productpage", "-n", dest.name,
                             "istio.io/use-waypoint-")
