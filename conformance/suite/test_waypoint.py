"""Waypoints (today's API): L7 policy, routing, traffic split and the identity the
destination sees.

One namespace with a waypoint bound to productpage and reviews serves the module.

Knowing when a change is in force, for any implementation:

- **Policies.** As in test_l4_policy, a canary AuthorizationPolicy for the same Service
  (DENY the ``canary`` client at the waypoint) is applied after the case's policies;
  once it is enforced, so are they.  Assumed: one kind's objects take effect in the
  order written (``conformance/apps.py``, ``CANARY``); nothing across kinds.
- **Routes.** A route (VirtualService with its DestinationRule, or HTTPRoute) is in
  force once its own effect is seen: every request of a batch of ``PROBE_BATCH``
  carrying a rule's header match reaches the one version that rule names (under the
  Service's even spread over three versions, a batch does so with probability
  (1/3)^20 < 4e-10).  Split routes carry such a rule for this purpose
  (``PROBE_HEADER``); the other routes' own header rules serve.  It is gone once a
  batch reaches another version, which no request matching the rule can while it is
  in force.  The route is one object, so its rules take effect together.

Traffic splits are then sampled in batches until a sequential test decides, with
error rates of at most 1e-4 both ways (conformance/sequential.py), and the
statistics go in the report.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conformance.apps import CANARY, AppNamespace, canary_client, principal
from conformance.waiting import eventually
from profiles import features as F

pytestmark = pytest.mark.xdist_group("waypoint")

PRODUCTPAGE = "http://productpage:9080"
REVIEWS = "http://reviews:9080/reviews/0"
RBAC_DENIED = "RBAC: access denied"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API = f"{GATEWAY_GROUP}/v1"


@pytest.fixture(scope="module")
def l7(namespaces, waypoint_flavour) -> AppNamespace:
    ns = namespaces("l7", extra=[*canary_client(), *version_services()])
    wp = ns.add_waypoint("waypoint", flavour=waypoint_flavour)
    for service in ("productpage", "reviews"):
        ns.use_waypoint("service", service, wp)
    return ns


def version_services() -> list[dict[str, Any]]:
    """reviews-v1/v2/v3: one Service per version, for HTTPRoute backendRefs."""
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"reviews-{v}"},
             "spec": {"ports": [{"port": 9080, "name": "http"}],
                      "selector": {"app": "reviews", "version": v}}} for v in ("v1", "v2", "v3")]


def target(service: str) -> list[dict[str, Any]]:
    return [{"kind": "Service", "group": "", "name": service}]


def l7_policy(ns: str, name: str, action: str, rules: list[dict[str, Any]],
              service: str = "productpage") -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"targetRefs": target(service), "action": action, "rules": rules}}


def canary(ns: str, service: str = "productpage") -> dict[str, Any]:
    return l7_policy(ns, "zz-canary", "DENY",
                     [{"from": [{"source": {"principals": [principal(ns, CANARY)]}}]}], service)


def in_force(ns: AppNamespace, objects: list[dict[str, Any]], service: str = "productpage",
             url: str = f"{PRODUCTPAGE}/productpage") -> None:
    ns.apply_in_force(objects, canary(ns.name, service), url, lambda r: r.status == 403)


def removed(ns: AppNamespace, objects: list[dict[str, Any]], service: str = "productpage",
            url: str = f"{PRODUCTPAGE}/productpage") -> None:
    ns.delete_in_force(objects, canary(ns.name, service), url, lambda r: r.status == 200)


# -- L7 authorization at the waypoint ---------------------------------------------------------
#
# istiod builds the waypoint's Envoy RBAC filter from the policies attached to it
# (istio/istio pilot/pkg/security/authz/builder/builder.go, model/model.go).  Paths:
# model/generator.go pathGenerator -> matcher.PathMatcher (matcher/header.go), i.e.
# StringMatcherWithPrefix (matcher/string.go): ``*`` any non-empty path, ``*x`` suffix,
# ``x*`` prefix, else exact, on the path without its query (Envoy's PathMatcher,
# envoyproxy/envoy source/common/common/matchers.cc); ``{*}``/``{**}`` templates go to
# matcher.PathTemplateMatcher.  Attachment (pilot/pkg/model/policyattachment.go): a
# waypoint takes ``targetRefs`` naming a Service it serves (that Service's requests
# only), its own Gateway (all its requests), or the GatewayClass ``istio-waypoint``
# from the root namespace (every waypoint's); selector policies are not the waypoint's.

Check = tuple[str, str, str, dict, int]
"""(client, method, path or URL, headers, expected status)"""


def _l7_cases(ns: str, root: str = "istio-system", waypoint: str = "waypoint",
              ) -> dict[str, tuple[list[dict[str, Any]], list[Check]]]:
    """name -> (policies, checks).  A path check's 404 means "allowed, no such page":
    the request went past the waypoint's RBAC to productpage, which does not serve it."""
    sleep, notsleep = principal(ns, "sleep"), principal(ns, "notsleep")

    def allow(*rules: dict[str, Any]) -> dict[str, Any]:
        return l7_policy(ns, "case", "ALLOW", list(rules))

    def deny(*rules: dict[str, Any]) -> dict[str, Any]:
        return l7_policy(ns, "case-deny", "DENY", list(rules))

    def op(**kw: Any) -> dict[str, Any]:
        return {"to": [{"operation": kw}]}

    def get(path: str, status: int, client: str = "sleep") -> Check:
        return (client, "GET", path, {}, status)

    return {
        "methods": ([allow(op(methods=["GET"]))],
                    [get("/productpage", 200), ("sleep", "DELETE", "/productpage", {}, 403)]),
        "not-methods": ([allow(op(notMethods=["DELETE"]))],
                        [get("/productpage", 200), ("sleep", "DELETE", "/productpage", {}, 403)]),
        "principals": ([allow({"from": [{"source": {"principals": [notsleep]}}]})],
                       [get("/productpage", 200, "notsleep"), get("/productpage", 403)]),
        "path-exact": ([allow(op(paths=["/api/v1/products"]))],
                       [get("/api/v1/products", 200), get("/api/v1/products?page=1", 200),
                        get("/api/v1/products/0", 403), get("/api/v1/productsX", 403)]),
        "path-prefix": ([allow(op(paths=["/api/v1/products*"]))],
                        [get("/api/v1/products", 200), get("/api/v1/products/0", 200),
                         get("/api/v1/productsX", 404), get("/productpage", 403)]),
        "path-suffix": ([allow(op(paths=["*/reviews"]))],
                        [get("/api/v1/products/0/reviews", 200), get("/reviews", 404),
                         get("/api/v1/products/0", 403), get("/api/v1/products/0/reviewsX", 403)]),
        "not-paths": ([allow(op(notPaths=["/api/v1/products*"]))],
                      [get("/productpage", 200), get("/api/v1/products", 403),
                       get("/api/v1/products/0", 403)]),
        "path-one-segment": ([allow(op(paths=["/api/v1/products/{*}"]))],
                             [get("/api/v1/products/0", 200),
                              get("/api/v1/products/0/reviews", 403)]),
        "path-any-segments": ([allow(op(paths=["/api/v1/products/{**}"]))],
                              [get("/api/v1/products/0/reviews", 200), get("/productpage", 403)]),
        "when-header": ([allow({"when": [{"key": "request.headers[x-allowed]",
                                          "values": ["yes"]}]})],
                        [("sleep", "GET", "/productpage", {"x-allowed": "yes"}, 200),
                         get("/productpage", 403)]),
        "deny-before-allow": ([allow({"from": [{"source": {"principals": [sleep]}}]}),
                               deny(op(methods=["DELETE"]))],
                              [get("/productpage", 200),
                               ("sleep", "DELETE", "/productpage", {}, 403),
                               get("/productpage", 403, "notsleep")]),
        # Which requests a policy reaches at the waypoint.
        "service-target-spares-the-other-services": (
            [deny({"from": [{"source": {"principals": [sleep]}}]})],
            [get("/productpage", 403), get(REVIEWS, 200), get("/productpage", 200, "notsleep")]),
        "gateway-target-covers-every-service": (
            [{**deny(), "spec": {
                "targetRefs": [{"kind": "Gateway", "group": GATEWAY_GROUP, "name": waypoint}],
                "action": "DENY",
                "rules": [{"from": [{"source": {"principals": [notsleep]}}]}]}}],
            [get("/productpage", 403, "notsleep"), get(REVIEWS, 403, "notsleep"),
             get("/productpage", 200), get(REVIEWS, 200)]),
        "root-gatewayclass-covers-every-waypoint": (
            [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": f"conformance-{ns}-waypoints", "namespace": root},
              "spec": {"targetRefs": [{"kind": "GatewayClass", "group": GATEWAY_GROUP,
                                       "name": "istio-waypoint"}], "action": "DENY",
                       "rules": [{"from": [{"source": {"principals": [notsleep]}}]}]}}],
            [get("/productpage", 403, "notsleep"), get(REVIEWS, 403, "notsleep"),
             get("/productpage", 200)]),
        # A selector policy is the destination ztunnel's, and ztunnel drops the HTTP
        # part of a DENY (pilot/pkg/serviceregistry/ambient/authorization.go): the
        # DELETE reaches productpage, which does not allow it (405), instead of 403.
        "selector-policy-not-applied-by-the-waypoint": (
            [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "case-selector", "namespace": ns},
              "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                       "rules": [op(methods=["DELETE"])]}}],
            [("sleep", "DELETE", "/productpage", {}, 405), get("/productpage", 200)]),
    }


@pytest.mark.feature(F.WAYPOINT, F.L7_POLICY)
@pytest.mark.parametrize("case", list(_l7_cases("ns")))
def test_l7_policy_at_the_waypoint(l7, adapter, case):
    objects, checks = _l7_cases(l7.name, adapter.root_namespace(), l7.waypoints[0].name)[case]
    # the canary must pass the case's own ALLOW rules to be a canary: let it in
    for obj in objects:
        if obj["spec"].get("action") == "ALLOW":
            obj["spec"]["rules"].append({"from": [{"source": {"principals": [
                principal(l7.name, CANARY)]}}]})
    ztunnel_canary = None
    if any("selector" in obj["spec"] for obj in objects):
        # A selector policy is the destination ztunnel's: a canary there too, seen by
        # the canary client calling the pod directly (around the Service's waypoint).
        ztunnel_canary = {**canary(l7.name), "metadata": {"name": "zz-canary-ztunnel",
                                                          "namespace": l7.name}}
        ztunnel_canary["spec"] = {"selector": {"matchLabels": {"app": "productpage"}},
                                  "action": "DENY", "rules": canary(l7.name)["spec"]["rules"]}
        pod_url = f"http://{l7.pod('productpage')['status']['podIP']}:9080/productpage"
        objects = [*objects, ztunnel_canary]
    in_force(l7, objects)
    if ztunnel_canary:
        eventually(lambda: l7.request(CANARY, pod_url), lambda r: r.exit_code == 56,
                   what="the canary is refused at productpage's ztunnel too")
    try:
        def check(c: Check) -> tuple[Check, Any]:
            client, method, path, headers, _ = c
            url = path if path.startswith("http") else f"{PRODUCTPAGE}{path}"
            return c, l7.request(client, url, method=method, headers=headers)

        with ThreadPoolExecutor(len(checks)) as pool:
            for (client, method, path, _, status), r in pool.map(check, checks):
                assert r.status == status, f"{case}: {client} {method} {path}: {r}"
                if status == 403:
                    assert r.body.strip() == RBAC_DENIED, r
    finally:
        removed(l7, objects)
        if ztunnel_canary:
            eventually(lambda: l7.request(CANARY, pod_url), lambda r: r.status == 200,
                       what="the ztunnel canary is gone")


# -- identity behind a waypoint --------------------------------------------------------------

@pytest.mark.feature(F.WAYPOINT, F.L4_POLICY)
def test_destination_sees_the_waypoint_identity(l7):
    """An L4 allow-list at the destination must name the waypoint: traffic arrives
    from it, not from the client (istio/istio tests/integration/ambient/baseline_test.go,
    ``TestAuthorizationL4`` and ``TestAuthorizationWaypointDefaultDeny``)."""
    ns = l7.name
    wp = l7.waypoints[0]
    only_sleep = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                  "metadata": {"name": "dest-l4", "namespace": ns},
                  "spec": {"selector": {"matchLabels": {"app": "productpage"}},
                           "action": "ALLOW", "rules": [{"from": [{"source": {"principals": [
                               principal(ns, "sleep")]}}]}]}}
    l7.cluster.apply([only_sleep])
    try:
        r = eventually(lambda: l7.request("sleep", f"{PRODUCTPAGE}/productpage"),
                       lambda r: r.status != 200,
                       what="the destination refuses the waypoint, which the allow-list "
                            "does not name")
        assert r.status in (502, 503) or r.exit_code == 56, r
        with_waypoint = dict(only_sleep, spec=dict(only_sleep["spec"], rules=[
            {"from": [{"source": {"principals": [principal(ns, "sleep"),
                                                 principal(ns, wp.deployment)]}}]}]))
        l7.cluster.apply([with_waypoint])
        eventually(lambda: l7.request("sleep", f"{PRODUCTPAGE}/productpage"),
                   lambda r: r.status == 200, what="naming the waypoint lets traffic through")
    finally:
        l7.cluster.delete([only_sleep])
        eventually(lambda: l7.request("notsleep", f"{PRODUCTPAGE}/productpage"),
                   lambda r: r.status == 200, what="the allow-list is gone")


# -- routing -----------------------------------------------------------------------------------

def destination_rule(ns: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": ns},
            "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}}
                                                    for v in ("v1", "v2", "v3")]}}


def virtual_service(ns: str, http: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": ns},
            "spec": {"hosts": ["reviews"], "http": http}}


PROBE_HEADER = "x-route-probe"
PROBE = {PROBE_HEADER: "on"}
PROBE_BATCH = 20


def route_in_force(l7: AppNamespace, headers: dict[str, str], version: str) -> None:
    """Return once a batch of requests with ``headers`` all reach ``version``."""
    eventually(lambda: l7.reviews_versions("sleep", REVIEWS, PROBE_BATCH, headers=headers),
               lambda c: c == {version: PROBE_BATCH},
               what=f"every request with {headers or 'no header'} reaches {version}: "
                    "the route is in force")


def route_gone(l7: AppNamespace, headers: dict[str, str], version: str) -> None:
    """Return once a request with ``headers`` reaches another version than ``version``."""
    eventually(lambda: l7.reviews_versions("sleep", REVIEWS, PROBE_BATCH, headers=headers),
               lambda c: any(k.startswith("reviews-") and k != version for k in c),
               what=f"requests with {headers or 'no header'} reach other versions than "
                    f"{version}: the route is gone")


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


@pytest.mark.feature(F.WAYPOINT, F.HTTP_ROUTING)
def test_header_match_routes_and_removal_restores_the_spread(l7):
    objects = [destination_rule(l7.name), virtual_service(l7.name, [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
        {"route": [to("v1")]}])]
    jason_only = {"end-user": "jason"}
    l7.cluster.apply(objects)
    try:
        route_in_force(l7, jason_only, "reviews-v2")
        jason = l7.reviews_versions("sleep", REVIEWS, 30, headers=jason_only)
        assert jason == {"reviews-v2": 30}, jason
        others = l7.reviews_versions("sleep", REVIEWS, 30)
        assert others == {"reviews-v1": 30}, others
    finally:
        l7.cluster.delete(objects)
        route_gone(l7, jason_only, "reviews-v2")
    # Without routing, the Service spreads over all three versions again.
    spread = l7.reviews_versions("sleep", REVIEWS, 60)
    assert set(spread) == {"reviews-v1", "reviews-v2", "reviews-v3"}, spread


@pytest.mark.feature(F.WAYPOINT, F.HTTP_ROUTING)
def test_fault_abort_and_delay(l7):
    objects = [destination_rule(l7.name), virtual_service(l7.name, [
        {"match": [{"headers": {"x-fault": {"exact": "abort"}}}],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
         "route": [to("v1")]},
        {"match": [{"headers": {"x-fault": {"exact": "delay"}}}],
         "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 100}}},
         "route": [to("v1")]},
        {"route": [to("v1")]}])]
    l7.cluster.apply(objects)
    try:
        # The catch-all rule pins plain requests to v1: seen, the route is in force.
        route_in_force(l7, {}, "reviews-v1")
        aborted = l7.batch("sleep", REVIEWS, 5, headers={"x-fault": "abort"})
        assert [s for s, _ in aborted] == [418] * 5, aborted
        t = time.monotonic()
        delayed = l7.request("sleep", REVIEWS, headers={"x-fault": "delay"})
        elapsed = time.monotonic() - t
        assert delayed.status == 200 and elapsed >= 1.0, (delayed, elapsed)
        plain = l7.request("sleep", REVIEWS)
        assert plain.status == 200, plain
    finally:
        l7.cluster.delete(objects)
        route_gone(l7, {}, "reviews-v1")


def _split_test(l7: AppNamespace, objects: list[dict[str, Any]], weights: dict[str, float],
                record_property: Any) -> None:
    """Apply a split route whose probe rule sends ``PROBE`` requests to reviews-v3, wait
    for that, sample the split, and wait until the route is gone."""
    l7.cluster.apply(objects)
    try:
        route_in_force(l7, PROBE, "reviews-v3")
        zero = {v for v in ("reviews-v1", "reviews-v2", "reviews-v3") if not weights.get(v)}
        result = l7.sample_split("sleep", REVIEWS, {**{v: 0.0 for v in zero}, **weights})
        for key, value in result.properties().items():
            record_property(key, value)
        assert result.passed, result.explain()
    finally:
        l7.cluster.delete(objects)
        route_gone(l7, PROBE, "reviews-v3")


@pytest.mark.feature(F.WAYPOINT, F.TRAFFIC_SPLIT)
def test_virtual_service_weights_with_subsets(l7, record_property):
    objects = [destination_rule(l7.name), virtual_service(l7.name, [
        {"match": [{"headers": {PROBE_HEADER: {"exact": PROBE[PROBE_HEADER]}}}],
         "route": [to("v3")]},
        {"route": [to("v1", 90), to("v2", 10)]}])]
    _split_test(l7, objects, {"reviews-v1": 0.9, "reviews-v2": 0.1}, record_property)


@pytest.mark.feature(F.WAYPOINT, F.TRAFFIC_SPLIT)
def test_httproute_weights_three_ways(l7, record_property):
    route = {"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
             "metadata": {"name": "reviews", "namespace": l7.name},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews",
                                      "port": 9080}],
                      "rules": [
                          {"matches": [{"headers": [{"name": PROBE_HEADER,
                                                     "value": PROBE[PROBE_HEADER]}]}],
                           "backendRefs": [{"name": "reviews-v3", "port": 9080}]},
                          {"backendRefs": [
                              {"name": "reviews-v1", "port": 9080, "weight": 80},
                              {"name": "reviews-v2", "port": 9080, "weight": 10},
                              {"name": "reviews-v3", "port": 9080, "weight": 10}]}]}}
    # A header match outranks a rule without one (Gateway API HTTPRouteRule: ties are
    # broken by the largest number of header matches), so plain requests get the split.
    _split_test(l7, [route], {"reviews-v1": 0.8, "reviews-v2": 0.1, "reviews-v3": 0.1},
                record_property)
