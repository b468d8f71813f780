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
features.  Skipping a core test makes the profile ``partial``.
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

ALL_FEATURES: frozenset[str] = frozenset({
    CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY, WAYPOINT, L7_POLICY, TRAFFIC_SPLIT,
    HTTP_ROUTING, HTTP_TELEMETRY, INGRESS, WALKTHROUGH_2022, WALKTHROUGH_TODAY,
})


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    core: frozenset[str]
    extended: frozenset[str] = frozenset()

    @property
    def features(self) -> frozenset[str]:
        return self.core | self.extended

    def covers(self, test_features: frozenset[str]) -> bool:
        return bool(test_features & self.features)

    def is_core_test(self, test_features: frozenset[str]) -> bool:
        return test_features <= self.core


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("AMBIENT-L4", "the secure overlay: capture, mutual TLS, L4 policy, TCP telemetry",
            core=frozenset({CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY})),
    Profile("AMBIENT-L7", "waypoints: L7 policy, traffic split, HTTP telemetry, routing",
            core=frozenset({WAYPOINT, L7_POLICY, TRAFFIC_SPLIT, HTTP_TELEMETRY}),
            extended=frozenset({HTTP_ROUTING})),
    Profile("WALKTHROUGH", "the Bookinfo getting-started walkthrough, step by step",
            core=frozenset({WALKTHROUGH_TODAY}),
            extended=frozenset({WALKTHROUGH_2022, INGRESS})),
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
