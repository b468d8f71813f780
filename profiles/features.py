"""Features and profiles: what an implementation may claim and how tests are grouped.

A *feature* is something an implementation may reasonably lack and that a group of
tests needs.  Every conformance test declares its features with
``@pytest.mark.feature(...)``; a test whose features are not all claimed by the
adapter (or that the user exempted) is skipped and reported as unsupported, never
passed.

A *profile* bundles features the way Gateway API's conformance profiles do: its
*core* features are what an implementation of the profile must have, *extended*
ones are optional parts it may claim.  A test counts under a profile when it needs
any of the profile's features; it is a core test there when it needs only core
features, besides those the profile ``builds_on`` (other profiles' features it uses
as tools).  Skipping a core test makes the profile ``partial``.
"""

from __future__ import annotations

from dataclasses import dataclass

CAPTURE = "capture"
"""Traffic of enrolled pods is redirected through the node proxy (ztunnel)."""
MTLS = "mtls"
"""Pod-to-pod traffic between enrolled pods is HBONE over mutual TLS with SPIFFE identities."""
L4_POLICY = "l4-policy"
"""L4 AuthorizationPolicy (principals, namespaces, ipBlocks, ports) enforced at ztunnel."""
TCP_TELEMETRY = "tcp-telemetry"
"""``istio_tcp_*`` metrics exported by ztunnel."""
WAYPOINT = "waypoint"
"""Waypoints can be deployed and services/namespaces bound to them."""
L7_POLICY = "l7-policy"
"""L7 AuthorizationPolicy (methods, paths, headers) enforced at a waypoint."""
TRAFFIC_SPLIT = "traffic-split"
"""Weighted routing (VirtualService subsets, HTTPRoute backendRefs) at a waypoint."""
HTTP_ROUTING = "http-routing"
"""Request routing at a waypoint: header matches, fault injection, route removal."""
HTTP_TELEMETRY = "http-telemetry"
"""``istio_requests_total`` with ``reporter="waypoint"`` exported by waypoints."""
INGRESS = "ingress"
"""An ingress gateway (``istio-ingressgateway.istio-system``) in front of the mesh."""
WALKTHROUGH_2022 = "walkthrough-2022"
"""The 2022 getting-started walkthrough end to end (``istio-mesh`` waypoints)."""
WALKTHROUGH_TODAY = "walkthrough-today"
"""The same walkthrough with today's API (``istio-waypoint`` + ``istio.io/use-waypoint``)."""
HBONE_AUTHN = "hbone-authn"
"""An enrolled pod's HBONE port (15008) takes only mutual TLS from the mesh: plaintext,
or TLS without a mesh certificate, never reaches the application."""
POLICY_RECHECK = "policy-recheck"
"""Connections opened before a DENY that covers them are closed once it is in force."""
CA_IDENTITY_BINDING = "ca-identity-binding"
"""A workload's credentials obtain a certificate for its own identity from the mesh's CA,
and never one for another identity."""
WAYPOINT_FAIL_CLOSED = "waypoint-fail-closed"
"""A service whose waypoint has no ready endpoint is not reached around it."""
NODE_AGENT_RESTART = "node-agent-restart"
"""The node's mesh agents (the node proxy; the CNI node agent, where the implementation
has one) can be deleted under traffic: they come back, pods stay enrolled, and no
request is answered on a path without authentication meanwhile."""
CONTROL_PLANE_OUTAGE = "control-plane-outage"
"""With the control plane scaled to zero, traffic and policies stay; back, it is heard."""
WAYPOINT_RESTART = "waypoint-restart"
"""A waypoint restarted under traffic never lets a request skip its L7 policy."""

ALL_FEATURES: frozenset[str] = frozenset({
    CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY, WAYPOINT, L7_POLICY, TRAFFIC_SPLIT,
    HTTP_ROUTING, HTTP_TELEMETRY, INGRESS, WALKTHROUGH_2022, WALKTHROUGH_TODAY,
    HBONE_AUTHN, POLICY_RECHECK, WAYPOINT_FAIL_CLOSED, CA_IDENTITY_BINDING,
    NODE_AGENT_RESTART, CONTROL_PLANE_OUTAGE, WAYPOINT_RESTART,
})


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    core: frozenset[str]
    extended: frozenset[str] = frozenset()
    builds_on: frozenset[str] = frozenset()
    """Other profiles' features its tests use as tools (an ALLOW list to tell an
    intruder apart): needing them alone neither brings a test into this profile nor
    keeps it from being a core test here."""

    @property
    def features(self) -> frozenset[str]:
        return self.core | self.extended

    def covers(self, test_features: frozenset[str]) -> bool:
        return bool(test_features & self.features)

    def is_core_test(self, test_features: frozenset[str]) -> bool:
        return test_features - self.builds_on <= self.core


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("AMBIENT-L4", "the secure overlay: capture, mutual TLS, L4 policy, TCP telemetry",
            core=frozenset({CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY})),
    Profile("AMBIENT-L7", "waypoints: L7 policy, traffic split, HTTP telemetry, routing",
            core=frozenset({WAYPOINT, L7_POLICY, TRAFFIC_SPLIT, HTTP_TELEMETRY}),
            extended=frozenset({HTTP_ROUTING})),
    Profile("WALKTHROUGH", "the Bookinfo getting-started walkthrough, step by step",
            core=frozenset({WALKTHROUGH_TODAY}),
            extended=frozenset({WALKTHROUGH_2022, INGRESS})),
    Profile("AMBIENT-SECURITY", "the mesh under attack: no way around mutual TLS, policy "
            "or the waypoint",
            core=frozenset({HBONE_AUTHN, POLICY_RECHECK, WAYPOINT_FAIL_CLOSED}),
            extended=frozenset({CA_IDENTITY_BINDING}),
            builds_on=frozenset({L4_POLICY, TCP_TELEMETRY, WAYPOINT, L7_POLICY})),
    Profile("AMBIENT-RESILIENCE", "the mesh under faults: its own components restarted or "
            "gone under steady traffic",
            core=frozenset({NODE_AGENT_RESTART, CONTROL_PLANE_OUTAGE, WAYPOINT_RESTART}),
            builds_on=frozenset({L4_POLICY, WAYPOINT, L7_POLICY})),
)}


class UnknownName(ValueError):
    pass


def parse_features(text: str | None, *, option: str) -> frozenset[str]:
    """A comma-separated list of feature names, each checked, for a command-line option."""
    names = frozenset(n.strip() for n in (text or "").split(",") if n.strip())
    unknown = names - ALL_FEATURES
    if unknown:
        raise UnknownName(f"{option}: unknown feature(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(ALL_FEATURES))}")
    return names


def parse_profiles(text: str | None, *, option: str) -> list[Profile]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n.upper() not in PROFILES]
    if unknown:
        raise UnknownName(f"{option}: unknown profile(s) {', '.join(unknown)}; "
                          f"known: {', '.join(PROFILES)}")
    return [PROFILES[n.upper()] for n in names] or list(PROFILES.values())
