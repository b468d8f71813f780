"""Enrollment changes: leaving and re-joining the mesh, and a waypoint that is missing."""

from __future__ import annotations

import pytest

from conformance import features as F
from conformance.apps import principal
from conformance.waiting import eventually

pytestmark = pytest.mark.xdist_group("enrollment")

URL = "http://productpage:9080/"


def deny_notsleep(ns: str) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-notsleep", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [
                         principal(ns, "notsleep")]}}]}]}}


@pytest.mark.feature(F.CAPTURE, F.L4_POLICY)
def test_unenroll_and_reenroll(bookinfo):
    bookinfo.cluster.apply([deny_notsleep(bookinfo.name)])
    eventually(lambda: bookinfo.request("notsleep", URL), lambda r: r.exit_code == 56,
               what="the DENY policy is in force while enrolled")
    bookinfo.unenroll()  # waits until no pod is marked captured
    # Outside the mesh nothing enforces the policy: notsleep gets through.
    r = eventually(lambda: bookinfo.request("notsleep", URL), lambda r: r.status == 200,
                   what="traffic flows directly once the namespace left the mesh")
    assert r.status == 200
    bookinfo.enroll()
    eventually(lambda: bookinfo.request("notsleep", URL), lambda r: r.exit_code == 56,
               what="the policy is enforced again after re-enrolling")
    assert bookinfo.request("sleep", URL).status == 200


@pytest.mark.feature(F.WAYPOINT, F.L4_POLICY)
def test_use_waypoint_naming_a_missing_waypoint_keeps_l4_working(bookinfo, waypoint_flavour):
    bookinfo.cluster.kubectl("label", "service", "productpage", "-n", bookinfo.name,
                             "istio.io/use-waypoint=no-such-waypoint", "--overwrite")
    # Only an L7 policy could tell whether traffic is sent to a (missing) waypoint;
    # with none there the request must simply keep working at L4.
    for client in ("sleep", "notsleep"):
        r = bookinfo.request(client, URL)
        assert r.status == 200, (client, r)
    bookinfo.cluster.apply([deny_notsleep(bookinfo.name)])
    eventually(lambda: bookinfo.request("notsleep", URL), lambda r: r.exit_code == 56,
               what="L4 policy still enforced by ztunnel with the dangling use-waypoint")
    assert bookinfo.request("sleep", URL).status == 200
