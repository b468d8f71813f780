"""Waypoint routing (ambient_ref.waypoint.routing): pure, seeded, fast."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from ambient_ref.waypoint.routing import (
    DEFAULT_RETRY,
    HeaderOps,
    HttpRequest,
    Retry,
    RouteTable,
    apply_header_ops,
    parse_duration,
    resolve_host,
)

NS = "default"
PORT = 9080
DRAWS = 1000


def service(name: str, ns: str = NS, ports: tuple[int, ...] = (PORT,)) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": p} for p in ports]},
    }


SERVICES = {
    (NS, n): service(n)
    for n in ("reviews", "reviews-v1", "reviews-v2", "reviews-v3", "ratings", "productpage")
}
SERVICES[("other", "reviews")] = service("reviews", "other")
REVIEWS = (NS, "reviews")


def vs(name: str, hosts: list[str], http: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": spec.pop("namespace", NS)},
        "spec": {"hosts": hosts, "http": http, **spec},
    }


def dest(host: str, subset: str | None = None, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host}}
    if subset:
        d["destination"]["subset"] = subset
    if weight is not None:
        d["weight"] = weight
    return d


DR_REVIEWS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": NS},
    "spec": {
        "host": "reviews",
        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
        "subsets": [{"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3)],
    },
}

# samples/bookinfo/networking/virtual-service-reviews-90-10.yaml
VS_90_10 = vs(
    "reviews", ["reviews"], [{"route": [dest("reviews", "v1", 90), dest("reviews", "v2", 10)]}]
)

# samples/bookinfo/gateway-api/route-reviews-90-10.yaml
ROUTE_90_10 = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "reviews", "namespace": NS},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": PORT}],
        "rules": [
            {
                "backendRefs": [
                    {"name": "reviews-v1", "port": PORT, "weight": 90},
                    {"name": "reviews-v2", "port": PORT, "weight": 10},
                ]
            }
        ],
    },
}


def httproute(name: str, rules: list[dict[str, Any]], parent: str = "reviews") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": parent}], "rules": rules},
    }


def req(path: str = "/reviews/0", method: str = "GET", **headers: str) -> HttpRequest:
    return HttpRequest(method, path, [(k.replace("_", "-"), v) for k, v in headers.items()])


def table(
    vss: list[dict[str, Any]] = (),  # type: ignore[assignment]
    drs: list[dict[str, Any]] = (),  # type: ignore[assignment]
    routes: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> RouteTable:
    t = RouteTable.build(list(vss), list(drs), list(routes), SERVICES)
    return t


def assert_binomial(count: int, n: int, p: float) -> None:
    """``count`` of ``n`` draws is within 4 binomial standard deviations of ``n * p``."""
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= 4 * sigma, (count, n * p, sigma)


# --------------------------------------------------------------------------- walkthrough step 9


def test_virtual_service_90_10_with_destination_rule_subsets() -> None:
    t = table([VS_90_10], [DR_REVIEWS])
    assert t.problems == []
    rng = random.Random(9)
    versions = Counter()
    for _ in range(DRAWS):
        d = t.route(REVIEWS, PORT, req(), rng)
        assert d.kind == "forward" and d.destination == REVIEWS and d.port == PORT
        versions[d.subset_labels["version"]] += 1
    assert_binomial(versions["v1"], DRAWS, 0.9)
    assert_binomial(versions["v2"], DRAWS, 0.1)
    assert versions["v3"] == 0
    assert versions["v1"] + versions["v2"] == DRAWS


def test_httproute_90_10_over_version_services() -> None:
    t = table(routes=[ROUTE_90_10])
    assert t.problems == []
    rng = random.Random(10)
    hits = Counter(t.route(REVIEWS, PORT, req(), rng).destination for _ in range(DRAWS))
    assert_binomial(hits[(NS, "reviews-v1")], DRAWS, 0.9)
    assert_binomial(hits[(NS, "reviews-v2")], DRAWS, 0.1)
    assert hits[(NS, "reviews-v3")] == 0
    assert sum(hits.values()) == DRAWS


def test_httproute_parent_port_restricts_the_route() -> None:
    t = table(routes=[ROUTE_90_10])
    d = t.route(REVIEWS, 8080, req(), random.Random(1))
    assert d.kind == "error" and d.abort_status == 404


def test_jason_header_goes_to_v2_before_the_weighted_rule() -> None:
    jason = {
        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
        "route": [dest("reviews", "v2")],
    }
    weighted = {"route": [dest("reviews", "v1", 90), dest("reviews", "v3", 10)]}
    t = table([vs("reviews", ["reviews"], [jason, weighted])], [DR_REVIEWS])
    rng = random.Random(3)
    for _ in range(200):
        d = t.route(REVIEWS, PORT, req(end_user="jason"), rng)
        assert d.subset_labels == {"version": "v2"}
        assert d.route_name == "default/reviews/0"
    others = Counter(
        t.route(REVIEWS, PORT, req(end_user="alice"), rng).subset_labels["version"]
        for _ in range(DRAWS)
    )
    assert others["v2"] == 0
    assert_binomial(others["v1"], DRAWS, 0.9)


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("uri", "path", "hit"),
    [
        ({"exact": "/productpage"}, "/productpage", True),
        ({"exact": "/productpage"}, "/productpage?u=1", True),  # query string ignored
        ({"exact": "/productpage"}, "/productpage/x", False),
        ({"prefix": "/api/v1/products"}, "/api/v1/products/0", True),
        ({"prefix": "/static"}, "/stat", False),
        ({"regex": "/reviews/[0-9]+"}, "/reviews/42", True),
        ({"regex": "/reviews/[0-9]+"}, "/reviews/42/x", False),  # fullmatch
    ],
)
def test_uri_match(uri: dict[str, str], path: str, hit: bool) -> None:
    rules = [
        {"match": [{"uri": uri}], "route": [dest("reviews-v2")]},
        {"route": [dest("reviews-v1")]},
    ]
    d = table([vs("r", ["reviews"], rules)]).route(REVIEWS, PORT, req(path), random.Random(0))
    assert d.destination == (NS, "reviews-v2" if hit else "reviews-v1")


def test_ignore_uri_case() -> None:
    rules = [
        {"match": [{"uri": {"exact": "/Login"}, "ignoreUriCase": True}], "route": [dest("ratings")]}
    ]
    t = table([vs("r", ["reviews"], rules)])
    assert t.route(REVIEWS, PORT, req("/LOGIN"), random.Random(0)).destination == (NS, "ratings")


def test_method_match_and_and_or_semantics() -> None:
    rules = [
        {
            # (POST and /a) or (GET and header x present)
            "match": [
                {"method": {"exact": "POST"}, "uri": {"exact": "/a"}},
                {"method": {"exact": "GET"}, "headers": {"x": {}}},
            ],
            "route": [dest("ratings")],
        },
        {"route": [dest("reviews")]},
    ]
    t = table([vs("r", ["reviews"], rules)])
    rng = random.Random(0)

    def go(r: HttpRequest) -> str:
        return t.route(REVIEWS, PORT, r, rng).destination[1]

    assert go(req("/a", "POST")) == "ratings"
    assert go(req("/b", "POST")) == "reviews"
    assert go(req("/b", "GET", x="")) == "ratings"
    assert go(req("/b", "GET")) == "reviews"
    assert go(req("/a", "PUT", x="1")) == "reviews"


def test_without_headers_and_port_match() -> None:
    rules = [
        {
            "match": [{"withoutHeaders": {"end-user": {"exact": "jason"}}, "port": PORT}],
            "route": [dest("ratings")],
        },
        {"route": [dest("reviews")]},
    ]
    t = table([vs("r", ["reviews"], rules)])
    rng = random.Random(0)
    assert t.route(REVIEWS, PORT, req(), rng).destination == (NS, "ratings")
    assert t.route(REVIEWS, PORT, req(end_user="jason"), rng).destination == (NS, "reviews")
    assert t.route(REVIEWS, PORT, req(end_user="bob"), rng).destination == (NS, "ratings")


def test_first_match_wins_in_order() -> None:
    rules = [
        {"match": [{"uri": {"prefix": "/"}}], "route": [dest("ratings")]},
        {"match": [{"uri": {"exact": "/reviews/0"}}], "route": [dest("productpage")]},
    ]
    d = table([vs("r", ["reviews"], rules)]).route(
        REVIEWS, PORT, req("/reviews/0"), random.Random(0)
    )
    assert d.destination == (NS, "ratings")


def test_no_rule_matches_is_404() -> None:
    rules = [{"match": [{"uri": {"exact": "/only"}}], "route": [dest("ratings")]}]
    d = table([vs("r", ["reviews"], rules)]).route(REVIEWS, PORT, req("/other"), random.Random(0))
    assert d.kind == "error" and d.abort_status == 404


def test_httproute_matches_precedence_and_path_elements() -> None:
    route = httproute(
        "r",
        [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                "backendRefs": [{"name": "ratings", "port": PORT}],
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/api/health"}}],
                "backendRefs": [{"name": "productpage", "port": PORT}],
            },
            {
                "matches": [
                    {"headers": [{"name": "End-User", "value": "jason"}], "method": "GET"},
                    {"path": {"type": "RegularExpression", "value": "/r/[0-9]+"}},
                ],
                "backendRefs": [{"name": "reviews-v2", "port": PORT}],
            },
            {"backendRefs": [{"name": "reviews-v1", "port": PORT}]},
        ],
    )
    t = table(routes=[route])
    assert t.problems == []
    rng = random.Random(0)

    def go(r: HttpRequest) -> str:
        return t.route(REVIEWS, PORT, r, rng).destination[1]

    assert go(req("/api/health")) == "productpage"  # Exact beats the earlier, longer-listed prefix
    assert go(req("/api/x")) == "ratings"
    assert go(req("/api")) == "ratings"
    assert go(req("/apix")) == "reviews-v1"  # PathPrefix matches whole path elements
    assert go(req("/r/7")) == "reviews-v2"
    assert go(req("/x", end_user="jason")) == "reviews-v2"
    assert go(req("/x", "POST", end_user="jason")) == "reviews-v1"


# --------------------------------------------------------------------------- faults


def fault_vs(fault: dict[str, Any]) -> RouteTable:
    return table([vs("r", ["ratings"], [{"fault": fault, "route": [dest("ratings")]}])])


RATINGS = (NS, "ratings")


def test_abort_100_percent() -> None:
    t = fault_vs({"abort": {"httpStatus": 500, "percentage": {"value": 100.0}}})
    rng = random.Random(1)
    for _ in range(100):
        d = t.route(RATINGS, PORT, req(), rng)
        assert d.kind == "abort" and d.abort_status == 500 and d.destination is None


def test_abort_0_percent_never() -> None:
    t = fault_vs({"abort": {"httpStatus": 500, "percentage": {"value": 0}}})
    rng = random.Random(1)
    assert all(t.route(RATINGS, PORT, req(), rng).kind == "forward" for _ in range(DRAWS))


def test_abort_partial_percentage() -> None:
    t = fault_vs({"abort": {"httpStatus": 503, "percentage": {"value": 25}}})
    rng = random.Random(2)
    aborted = sum(t.route(RATINGS, PORT, req(), rng).kind == "abort" for _ in range(DRAWS))
    assert_binomial(aborted, DRAWS, 0.25)


def test_delay_with_percentage() -> None:
    t = fault_vs({"delay": {"fixedDelay": "7s", "percentage": {"value": 50}}})
    rng = random.Random(4)
    delays = Counter(t.route(RATINGS, PORT, req(), rng).delay for _ in range(DRAWS))
    assert set(delays) == {0.0, 7.0}
    assert_binomial(delays[7.0], DRAWS, 0.5)


def test_missing_percentage_injects_nothing() -> None:
    t = fault_vs({"delay": {"fixedDelay": "7s"}, "abort": {"httpStatus": 500}})
    assert t.problems == []
    rng = random.Random(5)
    for _ in range(100):
        d = t.route(RATINGS, PORT, req(), rng)
        assert d.kind == "forward" and d.delay == 0.0


def test_delay_and_abort_together() -> None:
    t = fault_vs(
        {
            "delay": {"fixedDelay": "100ms", "percentage": {"value": 100}},
            "abort": {"httpStatus": 500, "percentage": {"value": 100}},
        }
    )
    d = t.route(RATINGS, PORT, req(), random.Random(0))
    assert (d.kind, d.abort_status, d.delay) == ("abort", 500, 0.1)


# --------------------------------------------------------------------------- errors


def test_undefined_subset_is_500() -> None:
    t = table([vs("r", ["reviews"], [{"route": [dest("reviews", "v9")]}])], [DR_REVIEWS])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert d.kind == "error" and d.abort_status == 500
    assert "no healthy upstream" in d.reason and "v9" in d.reason


def test_subset_without_any_destination_rule_is_500() -> None:
    t = table([VS_90_10])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert (d.kind, d.abort_status) == ("error", 500)


def test_unknown_httproute_backend_is_500() -> None:
    route = httproute("r", [{"backendRefs": [{"name": "nonexistent", "port": PORT}]}])
    t = table(routes=[route])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert (d.kind, d.abort_status) == ("error", 500)
    assert "nonexistent" in d.reason


def test_unknown_backend_only_fails_its_share() -> None:
    route = httproute(
        "r",
        [
            {
                "backendRefs": [
                    {"name": "reviews-v1", "port": PORT, "weight": 1},
                    {"name": "gone", "port": PORT, "weight": 1},
                ]
            }
        ],
    )
    t = table(routes=[route])
    rng = random.Random(6)
    kinds = Counter(t.route(REVIEWS, PORT, req(), rng).kind for _ in range(DRAWS))
    assert_binomial(kinds["error"], DRAWS, 0.5)
    assert kinds["forward"] + kinds["error"] == DRAWS


def test_unknown_vs_destination_host_is_500() -> None:
    t = table([vs("r", ["reviews"], [{"route": [dest("nowhere.example.com")]}])])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert (d.kind, d.abort_status) == ("error", 500)


def test_unknown_service_is_an_error() -> None:
    d = table().route((NS, "missing"), PORT, req(), random.Random(0))
    assert (d.kind, d.abort_status) == ("error", 500)


# --------------------------------------------------------------------------- headers


def test_virtual_service_header_operations() -> None:
    rule = {
        "headers": {
            "request": {"set": {"X-Set": "1"}, "add": {"x-add": "2"}, "remove": ["x-drop"]}
        },
        "route": [{**dest("ratings"), "headers": {"request": {"add": {"x-dest": "3"}}}}],
    }
    d = table([vs("r", ["ratings"], [rule])]).route(RATINGS, PORT, req(), random.Random(0))
    assert d.header_ops == HeaderOps(
        set=(("x-set", "1"),), add=(("x-add", "2"), ("x-dest", "3")), remove=("x-drop",)
    )
    out = apply_header_ops(
        [("x-drop", "a"), ("x-set", "old"), ("x-add", "0"), ("keep", "k")], d.header_ops
    )
    assert sorted(out) == sorted(
        [("keep", "k"), ("x-set", "1"), ("x-add", "0"), ("x-add", "2"), ("x-dest", "3")]
    )


def test_httproute_request_header_modifier() -> None:
    rule = {
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {
                    "set": [{"name": "X-Version", "value": "v1"}],
                    "add": [{"name": "x-trace", "value": "on"}],
                    "remove": ["x-secret"],
                },
            }
        ],
        "backendRefs": [{"name": "reviews-v1", "port": PORT}],
    }
    d = table(routes=[httproute("r", [rule])]).route(REVIEWS, PORT, req(), random.Random(0))
    assert d.kind == "forward"
    out = apply_header_ops([("x-secret", "s"), ("x-version", "v0")], d.header_ops)
    assert out == [("x-version", "v1"), ("x-trace", "on")]


def test_apply_header_ops_does_not_mutate() -> None:
    headers = [("a", "1")]
    assert apply_header_ops(headers, HeaderOps(remove=("a",))) == []
    assert headers == [("a", "1")]


# --------------------------------------------------------------------------- hosts and precedence


@pytest.mark.parametrize(
    "host",
    ["reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local"],
)
def test_host_resolution(host: str) -> None:
    t = table([vs("r", [host], [{"route": [dest(host, "v2")]}])], [DR_REVIEWS])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert d.destination == REVIEWS and d.subset_labels == {"version": "v2"}
    # The short name belongs to the VirtualService's namespace, not to other/reviews.
    assert t.route(("other", "reviews"), PORT, req(), random.Random(0)).route_name is None


def test_short_host_resolves_in_the_rule_namespace() -> None:
    t = table([vs("r", ["reviews"], [{"route": [dest("ratings.default")]}], namespace="other")])
    assert t.route(("other", "reviews"), PORT, req(), random.Random(0)).destination == RATINGS
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).route_name is None


def test_resolve_host_helper() -> None:
    assert resolve_host("reviews", "other", SERVICES) == ("other", "reviews")
    assert resolve_host("REVIEWS.default.svc.cluster.local.", "x", SERVICES) == REVIEWS
    assert resolve_host("reviews.nope", "x", SERVICES) is None
    assert resolve_host("www.example.com", NS, SERVICES) is None


def test_wildcard_host_used_only_without_an_exact_one() -> None:
    wild = vs("wild", ["*.default.svc.cluster.local"], [{"route": [dest("productpage")]}])
    exact = vs("exact", ["reviews"], [{"route": [dest("ratings")]}])
    t = table([wild, exact])
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).destination == RATINGS
    assert t.route((NS, "reviews-v1"), PORT, req(), random.Random(0)).destination == (
        NS,
        "productpage",
    )


def test_gateway_bound_virtual_service_is_ignored() -> None:
    ingress = vs(
        "bookinfo", ["*"], [{"route": [dest("productpage")]}], gateways=["bookinfo-gateway"]
    )
    t = table([ingress])
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).route_name is None
    mesh = vs("m", ["reviews"], [{"route": [dest("ratings")]}], gateways=["mesh"])
    assert table([mesh]).route(REVIEWS, PORT, req(), random.Random(0)).destination == RATINGS


def test_httproute_wins_over_virtual_service() -> None:
    t = table([VS_90_10], [DR_REVIEWS], [ROUTE_90_10])
    d = t.route(REVIEWS, PORT, req(), random.Random(0))
    assert d.subset_labels is None and d.destination in {(NS, "reviews-v1"), (NS, "reviews-v2")}
    assert [p.kind for p in t.problems] == ["VirtualService"] and not t.problems[0].skipped


def test_several_virtual_services_merge_oldest_first() -> None:
    newer = vs(
        "b", ["reviews"], [{"match": [{"uri": {"prefix": "/b"}}], "route": [dest("ratings")]}]
    )
    older = vs(
        "a", ["reviews"], [{"match": [{"uri": {"prefix": "/"}}], "route": [dest("productpage")]}]
    )
    newer["metadata"]["creationTimestamp"] = "2024-02-01T00:00:00Z"
    older["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    t = table([newer, older])
    assert t.route(REVIEWS, PORT, req("/b"), random.Random(0)).destination == (NS, "productpage")


def test_default_route_when_nothing_targets_the_service() -> None:
    t = table([VS_90_10], [DR_REVIEWS], [ROUTE_90_10])
    d = t.route(RATINGS, PORT, req(), random.Random(0))
    assert d.kind == "forward" and d.destination == RATINGS and d.port == PORT
    assert d.subset_labels is None and d.route_name is None and d.retries == DEFAULT_RETRY
    assert d.delay == 0.0 and d.timeout is None and not d.header_ops


# ------------------------------------------------------------------ timeouts, retries, ports


def test_timeout_and_retries() -> None:
    rule = {
        "timeout": "1.5s",
        "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx, gateway-error"},
        "route": [dest("ratings")],
    }
    d = table([vs("r", ["ratings"], [rule])]).route(RATINGS, PORT, req(), random.Random(0))
    assert d.timeout == 1.5
    assert d.retries == Retry(3, 0.5, ("5xx", "gateway-error"))
    no_retry = {"retries": {"attempts": 0}, "route": [dest("ratings")]}
    d = table([vs("r", ["ratings"], [no_retry])]).route(RATINGS, PORT, req(), random.Random(0))
    assert d.retries is None


def test_destination_port() -> None:
    services = {**SERVICES, (NS, "multi"): service("multi", ports=(80, 9090))}
    rules = [{"route": [{"destination": {"host": "multi", "port": {"number": 9090}}}]}]
    t = RouteTable.build([vs("r", ["reviews"], rules)], [], [], services)
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).port == 9090
    bad = [{"route": [{"destination": {"host": "multi", "port": {"number": 1234}}}]}]
    t = RouteTable.build([vs("r", ["reviews"], bad)], [], [], services)
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).abort_status == 500


def test_weight_zero_gets_nothing() -> None:
    rules = [{"route": [dest("reviews", "v1", 100), dest("reviews", "v3", 0)]}]
    t = table([vs("r", ["reviews"], rules)], [DR_REVIEWS])
    rng = random.Random(8)
    assert {t.route(REVIEWS, PORT, req(), rng).subset_labels["version"] for _ in range(DRAWS)} == {
        "v1"
    }


def test_single_destination_gets_everything_whatever_its_weight() -> None:
    t = table([vs("r", ["reviews"], [{"route": [dest("reviews", "v3", 7)]}])], [DR_REVIEWS])
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).subset_labels == {"version": "v3"}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ("not an object", "(object)"),
        ({"metadata": {"namespace": NS}, "spec": {}}, "metadata.name"),
        (vs("r", [], []), "spec.hosts"),
        (vs("r", ["reviews"], "nope"), "spec.http"),  # type: ignore[arg-type]
        (
            vs(
                "r", ["reviews"], [{"match": [{"uri": {"regex": "("}}], "route": [dest("reviews")]}]
            ),
            "spec.http[0].match[0].uri.regex",
        ),
        (
            vs(
                "r",
                ["reviews"],
                [{"match": [{"uri": {"exact": "/", "prefix": "/"}}], "route": [dest("reviews")]}],
            ),
            "spec.http[0].match[0].uri",
        ),
        (
            vs("r", ["reviews"], [{"timeout": "soon", "route": [dest("reviews")]}]),
            "spec.http[0].timeout",
        ),
        (
            vs("r", ["reviews"], [{"route": [dest("reviews", "v1", -1)]}]),
            "spec.http[0].route[0].weight",
        ),
        (
            vs("r", ["reviews"], [{"route": [dest("reviews", "v1", 0), dest("reviews", "v2", 0)]}]),
            "spec.http[0].route",
        ),
        (vs("r", ["reviews"], [{"match": [{"uri": {"exact": "/"}}]}]), "spec.http[0]"),
        (
            vs("r", ["reviews"], [{"route": [{"destination": {}}]}]),
            "spec.http[0].route[0].destination.host",
        ),
        (
            vs(
                "r",
                ["reviews"],
                [
                    {
                        "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 200}}},
                        "route": [dest("reviews")],
                    }
                ],
            ),
            "spec.http[0].fault.abort.percentage.value",
        ),
    ],
)
def test_bad_virtual_services_become_problems(obj: Any, field: str) -> None:
    t = table([obj, VS_90_10], [DR_REVIEWS])
    assert [p.field for p in t.problems] == [field]
    assert t.problems[0].kind == "VirtualService" and t.problems[0].skipped
    assert field in str(t.problems[0])
    # The good object next to it still works.
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).subset_labels is not None


def test_bad_http_routes_and_destination_rules_become_problems() -> None:
    bad_route = httproute("bad", [{"matches": [{"path": {"type": "Glob", "value": "/x"}}]}])
    bad_dr = {
        "metadata": {"name": "d", "namespace": NS},
        "spec": {"host": "reviews", "subsets": [{"labels": {}}]},
    }
    weird = {"metadata": {"name": "w", "namespace": NS}, "spec": {"parentRefs": 5}}
    t = RouteTable.build([None, 42], [bad_dr, []], [bad_route, weird, "x"], SERVICES)  # type: ignore[list-item]
    fields = {(p.kind, p.name, p.field) for p in t.problems}
    assert ("HTTPRoute", "bad", "spec.rules[0].matches[0].path.type") in fields
    assert ("HTTPRoute", "w", "spec.parentRefs") in fields
    assert ("DestinationRule", "d", "spec.subsets[0].name") in fields
    assert len(t.problems) == 7
    assert all(p.skipped for p in t.problems)
    assert t.route(REVIEWS, PORT, req(), random.Random(0)).route_name is None


def test_unmodelled_features_fail_safe_with_a_warning() -> None:
    rules = [
        {"match": [{"sourceLabels": {"app": "x"}}], "route": [dest("ratings")]},
        {"match": [{"uri": {"prefix": "/r"}}], "redirect": {"uri": "/x"}},
        {"route": [dest("reviews")]},
    ]
    t = table([vs("r", ["reviews"], rules)])
    assert {p.field for p in t.problems} == {"spec.http[0].match[0]", "spec.http[1]"}
    assert not any(p.skipped for p in t.problems)
    rng = random.Random(0)
    assert (
        t.route(REVIEWS, PORT, req("/x"), rng).destination == REVIEWS
    )  # sourceLabels never matches
    d = t.route(REVIEWS, PORT, req("/r"), rng)
    assert (d.kind, d.abort_status) == ("error", 500)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("0", 0.0),
        ("250us", 0.00025),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-1s", "1.5", "s", "1d", "1 s", 5])
def test_parse_duration_errors(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
