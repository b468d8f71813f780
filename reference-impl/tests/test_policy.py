"""ztunnel's L4 authorization: istiod's conversion and ztunnel's decision.

The expected behaviour is ztunnel's (istio/ztunnel src/rbac.rs, src/state.rs ``assert_rbac``)
after istiod's conversion (istio/istio pilot/pkg/serviceregistry/ambient/authorization.go)
of the API (istio/api security/v1beta1/authorization_policy.proto).
Everything here is pure and fast: dicts in, decisions out.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from ambient_ref.policy import (
    Action,
    Authorization,
    Clause,
    Connection,
    Conversion,
    Decision,
    Match,
    Peer,
    PolicyIndex,
    Rule,
    Scope,
    StringMatch,
    authorize,
    convert,
    convert_for_xds,
)
from ambient_ref.policy.convert import (
    REASON_ACCEPTED,
    REASON_INVALID,
    REASON_UNSUPPORTED,
)

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
NOTSLEEP = "spiffe://cluster.local/ns/default/sa/notsleep"
GATEWAY = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
FOO_APP = "spiffe://cluster.local/ns/foo/sa/app"
PROD_WEB = "spiffe://cluster.local/ns/prod-eu/sa/web"
PLAINTEXT = None

PRODUCTPAGE = {"app": "productpage", "version": "v1"}


def policy(
    spec: Any = None,
    *,
    name: str = "p",
    namespace: str = "default",
    annotations: dict[str, Any] | None = None,
    api_version: str = "security.istio.io/v1",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 1}
    if annotations is not None:
        meta["annotations"] = annotations
    obj: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "AuthorizationPolicy",
        "metadata": meta,
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def authz(spec: Any, **kwargs: Any) -> Authorization:
    result = convert(policy(spec, **kwargs))
    assert result.authorization is not None, result.conditions
    return result.authorization


def decide(
    policies: list[Authorization | dict[str, Any]],
    identity: str | None = SLEEP,
    *,
    src: str = "10.0.0.5",
    dst: str = "10.0.1.7",
    port: int = 9080,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
) -> Decision:
    compiled = [p if isinstance(p, Authorization) else authz(p) for p in policies]
    conn = Connection.of(src, identity, dst, port)
    return authorize(compiled, namespace, PRODUCTPAGE if labels is None else labels, conn)


def allowed(policies: list[Authorization | dict[str, Any]], identity: str | None = SLEEP, **kw):
    return decide(policies, identity, **kw).allowed


def allow_from(**source: Any) -> dict[str, Any]:
    return {"action": "ALLOW", "rules": [{"from": [{"source": source}]}]}


def deny_from(**source: Any) -> dict[str, Any]:
    return {"action": "DENY", "rules": [{"from": [{"source": source}]}]}


def the_condition(result: Conversion) -> dict[str, Any]:
    assert len(result.conditions) == 1, result.conditions
    condition = result.conditions[0]
    assert condition["type"] == "ZtunnelAccepted"
    return condition


# -- the Bookinfo walkthrough ---------------------------------------------------------------


PRODUCTPAGE_VIEWER = {
    "selector": {"matchLabels": {"app": "productpage"}},
    "action": "ALLOW",
    "rules": [
        {
            "from": [
                {
                    "source": {
                        "principals": [
                            "cluster.local/ns/default/sa/sleep",
                            "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                        ]
                    }
                }
            ]
        }
    ],
}


def test_bookinfo_productpage_viewer_lets_sleep_in_and_keeps_notsleep_out():
    result = convert(policy(PRODUCTPAGE_VIEWER, name="productpage-viewer"))
    assert the_condition(result) == {
        "type": "ZtunnelAccepted",
        "status": "True",
        "reason": REASON_ACCEPTED,
        "message": "attached to ztunnel",
        "observedGeneration": 1,
    }
    auth = result.authorization
    assert auth is not None
    assert auth.scope is Scope.WORKLOAD_SELECTOR and dict(auth.selector) == {"app": "productpage"}

    sleep = decide([auth], SLEEP)
    assert sleep == Decision(
        True, "allowed by: default/productpage-viewer", "default/productpage-viewer"
    )
    assert allowed([auth], GATEWAY)
    notsleep = decide([auth], NOTSLEEP)
    assert notsleep == Decision(False, "allow policies exist, but none allowed", None)
    assert not allowed([auth], PLAINTEXT)
    # Other Bookinfo workloads are not selected: no ALLOW policy, so allowed.
    assert allowed([auth], NOTSLEEP, labels={"app": "reviews", "version": "v1"})


def test_getting_started_policy_admits_only_the_gateway():
    spec = allow_from(principals=["cluster.local/ns/default/sa/bookinfo-gateway-istio"])
    spec["selector"] = {"matchLabels": {"app": "productpage"}}
    assert allowed([spec], "spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio")
    assert not allowed([spec], "spiffe://cluster.local/ns/default/sa/curl")


# -- the decision order ---------------------------------------------------------------------


def test_no_policies_allow_everything():
    assert decide([], PLAINTEXT) == Decision(True, "no allow policies exist", None)


def test_allow_nothing_spec_denies_everything():
    auth = authz({})
    assert auth.action is Action.ALLOW and auth.rules == ()
    for identity in (SLEEP, NOTSLEEP, PLAINTEXT):
        assert decide([auth], identity) == Decision(
            False, "allow policies exist, but none allowed", None
        )


def test_empty_rule_allows_everything():
    auth = authz({"rules": [{}]})
    assert auth.rules == (Rule(()),)
    assert allowed([auth], PLAINTEXT) and allowed([auth], NOTSLEEP)


def test_deny_wins_over_allow():
    allow_all = authz({"rules": [{}]}, name="allow-all")
    deny_sleep = authz(
        deny_from(principals=["cluster.local/ns/default/sa/sleep"]), name="deny-sleep"
    )
    assert decide([allow_all, deny_sleep], SLEEP) == Decision(
        False, "explicitly denied by: default/deny-sleep", "default/deny-sleep"
    )
    assert allowed([allow_all, deny_sleep], NOTSLEEP)


def test_deny_alone_leaves_the_rest_allowed_and_deny_without_rules_does_nothing():
    deny_sleep = deny_from(principals=["cluster.local/ns/default/sa/sleep"])
    assert not allowed([deny_sleep], SLEEP)
    assert decide([deny_sleep], NOTSLEEP) == Decision(True, "no allow policies exist", None)
    assert allowed([{"action": "DENY"}], SLEEP)
    assert not allowed([{"action": "DENY", "rules": [{}]}], SLEEP)


def test_any_matching_allow_policy_allows():
    a = authz(allow_from(principals=["cluster.local/ns/default/sa/other"]), name="a")
    b = authz(allow_from(principals=["cluster.local/ns/default/sa/sleep"]), name="b")
    assert decide([a, b], SLEEP).policy == "default/b"


# -- source fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "identity", "expected"),
    [
        ("cluster.local/ns/default/sa/sleep", SLEEP, True),
        ("cluster.local/ns/default/sa/sleep", NOTSLEEP, False),
        ("cluster.local/ns/default/sa/sle", SLEEP, False),
        ("cluster.local/ns/default/*", SLEEP, True),  # prefix
        ("cluster.local/ns/default/*", FOO_APP, False),
        ("*/sa/sleep", SLEEP, True),  # suffix
        ("*/sa/sleep", NOTSLEEP, False),
        ("*sleep", NOTSLEEP, True),
        ("*", SLEEP, True),  # presence
        ("*", PLAINTEXT, False),
        ("cluster.local/*", PLAINTEXT, False),
        ("spiffe://cluster.local/ns/default/sa/sleep", SLEEP, False),  # compared stripped
    ],
)
def test_principals(pattern, identity, expected):
    assert allowed([allow_from(principals=[pattern])], identity) is expected


@pytest.mark.parametrize(
    ("identity", "expected"),
    [(SLEEP, False), (NOTSLEEP, True), (FOO_APP, False), (PLAINTEXT, True)],
)
def test_not_principals_require_that_none_match(identity, expected):
    spec = allow_from(notPrincipals=["cluster.local/ns/default/sa/sleep", "*/ns/foo/sa/app"])
    assert allowed([spec], identity) is expected


@pytest.mark.parametrize(
    ("namespaces", "identity", "expected"),
    [
        (["default"], SLEEP, True),
        (["default"], FOO_APP, False),
        (["prod-*"], PROD_WEB, True),
        (["prod-*"], SLEEP, False),
        (["*-eu"], PROD_WEB, True),
        (["*"], FOO_APP, True),
        (["*"], PLAINTEXT, False),
        (["default", "foo"], FOO_APP, True),
    ],
)
def test_namespaces(namespaces, identity, expected):
    assert allowed([allow_from(namespaces=namespaces)], identity) is expected


def test_not_namespaces():
    spec = allow_from(notNamespaces=["foo"])
    assert allowed([spec], SLEEP)
    assert not allowed([spec], FOO_APP)
    assert allowed([spec], PLAINTEXT)  # no namespace, so none of the values match


def test_service_accounts_default_to_the_policy_namespace():
    auth = authz(allow_from(serviceAccounts=["sleep", "foo/app"]))
    match = auth.rules[0].clauses[0].matches[0]
    assert match.service_accounts == (("default", "sleep"), ("foo", "app"))
    assert allowed([auth], SLEEP)
    assert allowed([auth], FOO_APP)
    assert not allowed([auth], NOTSLEEP)
    assert not allowed([auth], "spiffe://cluster.local/ns/other/sa/sleep")
    assert not allowed([auth], PLAINTEXT)


def test_not_service_accounts():
    spec = allow_from(notServiceAccounts=["default/sleep"])
    assert not allowed([spec], SLEEP)
    assert allowed([spec], NOTSLEEP)
    assert allowed([spec], PLAINTEXT)


@pytest.mark.parametrize(
    ("blocks", "src", "expected"),
    [
        (["10.0.0.0/24"], "10.0.0.5", True),
        (["10.0.0.0/24"], "10.0.1.5", False),
        (["10.0.0.5"], "10.0.0.5", True),  # a bare address is one host
        (["10.0.0.6"], "10.0.0.5", False),
        (["10.9.9.9/8"], "10.0.0.5", True),  # host bits are ignored, as by istiod
        (["fd00::/8"], "fd00::1", True),
        (["fd00::/8"], "10.0.0.5", False),
        (["192.168.0.0/16", "10.0.0.0/8"], "10.0.0.5", True),
    ],
)
def test_ip_blocks(blocks, src, expected):
    assert allowed([allow_from(ipBlocks=blocks)], PLAINTEXT, src=src) is expected


def test_not_ip_blocks():
    spec = allow_from(notIpBlocks=["10.0.0.0/24"])
    assert not allowed([spec], SLEEP, src="10.0.0.5")
    assert allowed([spec], SLEEP, src="10.0.2.5")


def test_source_fields_are_anded_and_values_ored():
    spec = allow_from(namespaces=["default"], ipBlocks=["10.0.0.0/24"])
    assert allowed([spec], SLEEP, src="10.0.0.5")
    assert not allowed([spec], SLEEP, src="10.0.9.5")
    assert not allowed([spec], FOO_APP, src="10.0.0.5")


def test_several_sources_are_ored():
    spec = {
        "rules": [
            {
                "from": [
                    {"source": {"namespaces": ["foo"]}},
                    {"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}},
                ]
            }
        ]
    }
    assert allowed([spec], SLEEP) and allowed([spec], FOO_APP)
    assert not allowed([spec], NOTSLEEP)


# -- operations and conditions ---------------------------------------------------------------


def test_ports_and_not_ports():
    ports = {"rules": [{"to": [{"operation": {"ports": ["9080", 8080]}}]}]}
    assert allowed([ports], PLAINTEXT, port=9080)
    assert allowed([ports], PLAINTEXT, port=8080)
    assert not allowed([ports], PLAINTEXT, port=9090)
    not_ports = {"rules": [{"to": [{"operation": {"notPorts": ["9080"]}}]}]}
    assert not allowed([not_ports], SLEEP, port=9080)
    assert allowed([not_ports], SLEEP, port=15000)


def test_from_and_to_are_anded():
    spec = {
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
                "to": [{"operation": {"ports": ["9080"]}}],
            }
        ]
    }
    auth = authz(spec)
    # istiod's clause order: to, from, then one per when.
    (rule,) = auth.rules
    assert rule.clauses[0].matches[0].destination_ports == (9080,)
    assert rule.clauses[1].matches[0].principals == (
        StringMatch.exact("cluster.local/ns/default/sa/sleep"),
    )
    assert allowed([auth], SLEEP, port=9080)
    assert not allowed([auth], SLEEP, port=9081)
    assert not allowed([auth], NOTSLEEP, port=9080)


def test_rules_are_ored():
    spec = {
        "rules": [
            {"to": [{"operation": {"ports": ["1"]}}]},
            {"from": [{"source": {"namespaces": ["foo"]}}]},
        ]
    }
    assert allowed([spec], SLEEP, port=1)
    assert allowed([spec], FOO_APP, port=2)
    assert not allowed([spec], SLEEP, port=2)


@pytest.mark.parametrize(
    ("condition", "kwargs", "expected"),
    [
        ({"key": "source.ip", "values": ["10.0.0.0/24"]}, {"src": "10.0.0.1"}, True),
        ({"key": "source.ip", "values": ["10.0.0.0/24"]}, {"src": "10.1.0.1"}, False),
        ({"key": "source.ip", "notValues": ["10.0.0.0/24"]}, {"src": "10.0.0.1"}, False),
        ({"key": "source.namespace", "values": ["default"]}, {}, True),
        ({"key": "source.namespace", "values": ["foo"]}, {}, False),
        ({"key": "source.namespace", "notValues": ["default"]}, {}, False),
        ({"key": "source.principal", "values": ["*/sa/sleep"]}, {}, True),
        ({"key": "source.principal", "notValues": ["cluster.local/*"]}, {}, False),
        ({"key": "destination.ip", "values": ["10.0.1.0/24"]}, {"dst": "10.0.1.7"}, True),
        ({"key": "destination.ip", "values": ["10.0.1.0/24"]}, {"dst": "10.0.2.7"}, False),
        ({"key": "destination.ip", "notValues": ["10.0.1.7"]}, {"dst": "10.0.1.7"}, False),
        ({"key": "destination.port", "values": ["9080"]}, {"port": 9080}, True),
        ({"key": "destination.port", "values": ["9080"]}, {"port": 80}, False),
        ({"key": "destination.port", "notValues": ["9080"]}, {"port": 80}, True),
        (
            {"key": "destination.port", "values": ["9080", "80"], "notValues": ["80"]},
            {"port": 80},
            False,
        ),
    ],
)
def test_when_conditions(condition, kwargs, expected):
    spec = {"rules": [{"when": [condition]}]}
    assert the_condition(convert(policy(spec)))["reason"] == REASON_ACCEPTED
    assert allowed([spec], SLEEP, **kwargs) is expected


def test_every_when_condition_must_hold():
    spec = {
        "rules": [
            {
                "when": [
                    {"key": "source.namespace", "values": ["default"]},
                    {"key": "destination.port", "values": ["9080"]},
                ]
            }
        ]
    }
    assert len(authz(spec).rules[0].clauses) == 2
    assert allowed([spec], SLEEP, port=9080)
    assert not allowed([spec], SLEEP, port=80)
    assert not allowed([spec], FOO_APP, port=9080)


# -- HTTP attributes ---------------------------------------------------------------------------


L7_SOURCES = [
    {"requestPrincipals": ["issuer/subject"]},
    {"notRequestPrincipals": ["*"]},
    {"remoteIpBlocks": ["1.2.3.4"]},
    {"notRemoteIpBlocks": ["1.2.3.4"]},
]
L7_OPERATIONS = [
    {"methods": ["GET"]},
    {"notMethods": ["DELETE"]},
    {"paths": ["/api/*"]},
    {"notPaths": ["/admin"]},
    {"hosts": ["example.com"]},
    {"notHosts": ["example.com"]},
]


def l7_rules() -> list[dict[str, Any]]:
    return (
        [{"from": [{"source": s}]} for s in L7_SOURCES]
        + [{"to": [{"operation": o}]} for o in L7_OPERATIONS]
        + [{"when": [{"key": "request.headers[x-user]", "values": ["alice"]}]}]
    )


@pytest.mark.parametrize("rule", l7_rules())
def test_l7_only_allow_allows_nothing(rule):
    result = convert(policy({"action": "ALLOW", "rules": [rule]}))
    assert result.authorization is not None and result.authorization.rules == ()
    condition = the_condition(result)
    assert condition["status"] == "True" and condition["reason"] == REASON_UNSUPPORTED
    assert condition["message"].startswith("ztunnel does not support HTTP attributes (found: ")
    assert (
        "Within an ALLOW policy, rules matching HTTP attributes are omitted"
        in (condition["message"])
    )
    assert not allowed([result.authorization], SLEEP)


def test_allow_drops_only_its_l7_rules_and_lists_what_it_found():
    spec = {
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/"]}}],
            },
            {"from": [{"source": {"namespaces": ["foo"]}}]},
        ]
    }
    result = convert(policy(spec))
    assert the_condition(result)["message"].startswith(
        "ztunnel does not support HTTP attributes (found: methods, paths). "
        "In ambient mode you must use a waypoint proxy to enforce HTTP rules."
    )
    assert not allowed([result.authorization], SLEEP)  # its rule was dropped
    assert allowed([result.authorization], FOO_APP)


@pytest.mark.parametrize("rule", l7_rules())
def test_l7_only_deny_has_no_effect(rule):
    result = convert(policy({"action": "DENY", "rules": [rule]}))
    condition = the_condition(result)
    assert condition["status"] == "True" and condition["reason"] == REASON_UNSUPPORTED
    assert "this DENY policy has no enforceable rules at ztunnel" in condition["message"]
    assert allowed([result.authorization], SLEEP)
    assert allowed([result.authorization], PLAINTEXT)


def test_mixed_deny_is_broadened_to_the_whole_port():
    spec = {
        "action": "DENY",
        "rules": [{"to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}]}],
    }
    result = convert(policy(spec))
    assert (
        "DENY policy with HTTP attributes is enforced without the HTTP rules"
        in (the_condition(result)["message"])
    )
    auth = result.authorization
    assert auth.rules[0].clauses[0].matches[0] == Match(destination_ports=(8080,))
    assert not allowed([auth], SLEEP, port=8080)  # every connection, not just POSTs
    assert allowed([auth], SLEEP, port=9080)


def test_mixed_deny_source_is_broadened():
    spec = deny_from(namespaces=["foo"], requestPrincipals=["*"])
    auth = authz(spec)
    assert not allowed([auth], FOO_APP)  # with or without a JWT
    assert allowed([auth], SLEEP)


def test_deny_whose_operation_is_http_only_never_fires():
    # The `to` clause is left with one empty Match, which ztunnel skips, so the clause
    # and the rule never match, whatever `from` says.
    spec = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
                "to": [{"operation": {"methods": ["DELETE"]}}],
            }
        ],
    }
    result = convert(policy(spec))
    assert "will have no effect" in the_condition(result)["message"]
    assert allowed([result.authorization], SLEEP)


def test_trust_domains_are_not_enforced_by_ztunnel():
    result = convert(policy(allow_from(trustDomains=["cluster.local"])))
    assert "(found: trustDomains)" in the_condition(result)["message"]
    assert result.authorization.rules == ()


# -- scope -------------------------------------------------------------------------------------


def test_target_refs_policies_are_for_waypoints():
    for refs in (
        {"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}]},
        {"targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "wp"}},
    ):
        spec = {**refs, "action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}
        assert convert(policy(spec)) == Conversion(None, [])
    # An empty list targets nothing: a normal ztunnel policy.
    assert convert(policy({"targetRefs": []})).authorization is not None


def test_root_namespace_policy_without_selector_is_global():
    auth = authz(deny_from(namespaces=["foo"]), namespace="istio-system", name="mesh-deny")
    assert auth.scope is Scope.GLOBAL and auth.selector is None
    for namespace in ("default", "bar", "istio-system"):
        decision = decide([auth], FOO_APP, namespace=namespace)
        assert decision == Decision(
            False, "explicitly denied by: istio-system/mesh-deny", "istio-system/mesh-deny"
        )


def test_the_root_namespace_is_configurable():
    result = convert(policy({}, namespace="mesh-root"), root_namespace="mesh-root")
    assert result.authorization.scope is Scope.GLOBAL
    assert authz({}, namespace="istio-system").scope is Scope.GLOBAL
    assert convert(
        policy({}, namespace="istio-system"), root_namespace="x"
    ).authorization.scope is (Scope.NAMESPACE)


def test_namespace_policy_covers_only_its_namespace():
    auth = authz({}, namespace="default")
    assert auth.scope is Scope.NAMESPACE
    assert not allowed([auth], SLEEP, namespace="default")
    assert allowed([auth], SLEEP, namespace="other")


def test_selector_policy_covers_matching_workloads_of_its_namespace():
    auth = authz({"selector": {"matchLabels": {"app": "productpage"}}})
    assert not allowed([auth], SLEEP, labels={"app": "productpage", "version": "v1"})
    assert allowed([auth], SLEEP, labels={"app": "reviews"})
    assert allowed([auth], SLEEP, labels={})
    assert allowed([auth], SLEEP, namespace="other", labels={"app": "productpage"})


def test_selector_policy_in_the_root_namespace_covers_every_namespace():
    auth = authz({"selector": {"matchLabels": {"app": "productpage"}}}, namespace="istio-system")
    assert auth.scope is Scope.WORKLOAD_SELECTOR
    assert not allowed([auth], SLEEP, namespace="default", labels={"app": "productpage"})
    assert not allowed([auth], SLEEP, namespace="shop", labels={"app": "productpage"})
    assert allowed([auth], SLEEP, namespace="shop", labels={"app": "cart"})
    index = PolicyIndex([auth], root_namespace="elsewhere")
    conn = Connection.of("10.0.0.1", SLEEP, "10.0.0.2", 80)
    assert index.authorize("shop", {"app": "productpage"}, conn).allowed


def test_empty_selector_selects_every_workload_of_the_namespace():
    auth = authz({"selector": {}})
    assert auth.scope is Scope.WORKLOAD_SELECTOR and dict(auth.selector) == {}
    assert not allowed([auth], SLEEP, labels={"any": "thing"})


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_deny_is_reported_not_enforced():
    auth = authz(
        deny_from(principals=["*"]),
        name="would-deny",
        annotations={"istio.io/dry-run": "true"},
    )
    assert auth.dry_run
    decision = decide([auth], SLEEP)
    assert decision == Decision(True, "no allow policies exist", None, ("DENY default/would-deny",))
    assert decide([auth], PLAINTEXT).dry_run == ()


def test_dry_run_allow_does_not_count_as_an_allow_policy():
    auth = authz({}, name="would-allow-nothing", annotations={"istio.io/dry-run": "True"})
    assert allowed([auth], SLEEP)
    enforced = authz(allow_from(namespaces=["foo"]), name="real")
    shadow = authz({"rules": [{}]}, name="shadow", annotations={"istio.io/dry-run": "1"})
    decision = decide([enforced, shadow], SLEEP)
    assert not decision.allowed and decision.dry_run == ("ALLOW default/shadow",)


def test_dry_run_false_and_unparsable_annotations_enforce():
    assert not authz({}, annotations={"istio.io/dry-run": "false"}).dry_run
    result = convert(policy({}, annotations={"istio.io/dry-run": "maybe"}))
    assert result.authorization is not None and not result.authorization.dry_run
    condition = the_condition(result)
    assert condition["status"] == "False" and condition["reason"] == REASON_INVALID
    assert "metadata.annotations[istio.io/dry-run]" in condition["message"]


# -- plaintext sources ---------------------------------------------------------------------------


def test_plaintext_can_match_ip_blocks_and_ports():
    spec = {
        "rules": [
            {
                "from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}],
                "to": [{"operation": {"ports": ["9080"]}}],
            }
        ]
    }
    assert allowed([spec], PLAINTEXT, src="10.0.0.5", port=9080)
    assert not allowed([spec], PLAINTEXT, src="192.168.0.5", port=9080)


@pytest.mark.parametrize(
    "source",
    [
        {"principals": ["*"]},
        {"namespaces": ["*"]},
        {"serviceAccounts": ["sleep"]},
    ],
)
def test_plaintext_matches_no_identity_condition(source):
    assert not allowed([allow_from(**source)], PLAINTEXT)


def test_strict_mtls_as_deny_rejects_plaintext_only():
    # How istiod expresses STRICT PeerAuthentication for ztunnel (section 4).
    strict = Authorization(
        name="istio_converted_static_strict",
        namespace="istio-system",
        scope=Scope.GLOBAL,
        action=Action.DENY,
        rules=(Rule((Clause((Match(not_principals=(StringMatch.presence(),)),)),)),),
    )
    assert not allowed([strict], PLAINTEXT, namespace="anything")
    assert allowed([strict], SLEEP, namespace="anything")


# -- matching semantics on the model directly ------------------------------------------------------


def _auth(*rules: Rule, action: Action = Action.ALLOW) -> Authorization:
    return Authorization(name="m", namespace="default", scope=Scope.NAMESPACE, action=action,
                         rules=rules)  # fmt: skip


def test_model_matching_edge_cases():
    ports = Match(destination_ports=(9080,))
    cases = [
        (_auth(), False),  # no rule: nothing
        (_auth(Rule(())), True),  # no clause: everything
        (_auth(Rule((Clause(()),))), True),  # a clause without matches: everything
        (_auth(Rule((Clause((Match(),)),))), False),  # only an empty Match: nothing
        (_auth(Rule((Clause((Match(), ports)),))), True),  # empty Match skipped, next one counts
        (_auth(Rule((Clause((ports,)), Clause((Match(),))))), False),  # ANDed with "nothing"
    ]
    for auth, expected in cases:
        assert allowed([auth], SLEEP, port=9080) is expected, auth


# -- what is not supported -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["AUDIT", "CUSTOM"])
def test_audit_and_custom_are_rejected(action):
    result = convert(policy({"action": action, "provider": {"name": "ext"}, "rules": [{}]}))
    assert result.authorization is None
    assert the_condition(result) == {
        "type": "ZtunnelAccepted",
        "status": "False",
        "reason": REASON_UNSUPPORTED,
        "message": f"ztunnel does not support the {action} action",
        "observedGeneration": 1,
    }


def test_v1beta1_is_accepted():
    result = convert(policy({}, api_version="security.istio.io/v1beta1"))
    assert result.authorization is not None and result.accepted


def test_foreign_trust_domain_is_noted_but_accepted():
    result = convert(policy(allow_from(principals=["example.org/ns/default/sa/sleep"])))
    condition = the_condition(result)
    assert condition["status"] == "True" and condition["reason"] == REASON_ACCEPTED
    assert "example.org/ns/default/sa/sleep" in condition["message"]
    assert not allowed([result.authorization], SLEEP)
    assert "Note" not in the_condition(convert(policy(PRODUCTPAGE_VIEWER)))["message"]
    other = convert(policy(PRODUCTPAGE_VIEWER), trust_domain="example.org")
    assert "cluster.local/ns/default/sa/sleep" in the_condition(other)["message"]


# -- bad input: reported, never raised, and failing closed ---------------------------------------


def invalid(result: Conversion, *fields: str) -> dict[str, Any]:
    condition = the_condition(result)
    assert condition["status"] == "False", condition
    assert condition["reason"] == REASON_INVALID, condition
    for name in fields:
        assert name in condition["message"], (name, condition["message"])
    return condition


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ("not a policy", "policy"),
        (None, "policy"),
        ({"kind": "PeerAuthentication", "metadata": {"name": "a", "namespace": "b"}}, "kind"),
        ({"apiVersion": "v1", "metadata": {"name": "a", "namespace": "b"}}, "apiVersion"),
        ({"spec": {}}, "metadata"),
        ({"metadata": {"namespace": "default"}}, "metadata.name"),
        ({"metadata": {"name": "a", "namespace": 3}}, "metadata.namespace"),
        ({"metadata": {"name": "a", "namespace": "b"}, "spec": ["x"]}, "spec"),
        ({"metadata": {"name": "a", "namespace": "b"}, "spec": {"action": "DENNY"}}, "spec.action"),
        ({"metadata": {"name": "a", "namespace": "b"}, "spec": {"action": 1}}, "spec.action"),
        (
            {"metadata": {"name": "a", "namespace": "b"}, "spec": {"targetRefs": "productpage"}},
            "spec.targetRefs",
        ),
    ],
)
def test_unattributable_policies_send_nothing(obj, field):
    result = convert(obj)
    assert result.authorization is None
    invalid(result, field)


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"principals": ["cluster.local/ns/*/sa/sleep"]}, "source.principals[0]"),
        ({"principals": ["*a*"]}, "source.principals[0]"),
        ({"principals": [""]}, "source.principals[0]"),
        ({"principals": "cluster.local/ns/default/sa/sleep"}, "source.principals"),
        ({"namespaces": ["ok", 7]}, "source.namespaces[1]"),
        ({"serviceAccounts": ["ns/*"]}, "source.serviceAccounts[0]"),
        ({"serviceAccounts": ["a/b/c"]}, "source.serviceAccounts[0]"),
        ({"serviceAccounts": ["/sa"]}, "source.serviceAccounts[0]"),
        ({"ipBlocks": ["10.0.0.0/33"]}, "source.ipBlocks[0]"),
        ({"ipBlocks": ["10.0.0.300"]}, "source.ipBlocks[0]"),
        ({"ipBlocks": ["10.0.0.0/255.0.0.0"]}, "source.ipBlocks[0]"),
        ({"notIpBlocks": ["not-an-ip"]}, "source.notIpBlocks[0]"),
        ({"principal": ["cluster.local/ns/default/sa/sleep"]}, "source.principal"),
    ],
)
def test_bad_source_values(source, field):
    allow = convert(policy({"action": "ALLOW", "rules": [{"from": [{"source": source}]}]}))
    invalid(allow, f"spec.rules[0].from[0].{field}", "ALLOW rules holding invalid values")
    # ALLOW fails closed: the rule is gone, and the policy still makes the workload
    # default-deny instead of vanishing.
    assert allow.authorization.rules == ()
    for identity in (SLEEP, NOTSLEEP, PLAINTEXT):
        assert not allowed([allow.authorization], identity)

    deny = convert(policy({"action": "DENY", "rules": [{"from": [{"source": source}]}]}))
    invalid(deny, field, "DENY policy is read as matching everything")
    # DENY fails closed: the unreadable condition stands for "anything".
    for identity in (SLEEP, NOTSLEEP, PLAINTEXT):
        assert not allowed([deny.authorization], identity)


@pytest.mark.parametrize("bad", ["http", "-1", "65536", " 80", "8o", "", True, 3.5, None, -1])
def test_bad_ports(bad):
    for key in ("ports", "notPorts"):
        spec = {"action": "ALLOW", "rules": [{"to": [{"operation": {key: ["9080", bad]}}]}]}
        result = convert(policy(spec))
        invalid(result, f"spec.rules[0].to[0].operation.{key}[1]")
        assert not allowed([result.authorization], SLEEP, port=9080)


def test_bad_value_in_deny_widens_only_its_field():
    # principals unreadable, port readable: the deny covers every caller on that port.
    spec = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"principals": ["a*b"]}}],
                "to": [{"operation": {"ports": ["9080"]}}],
            }
        ],
    }
    result = convert(policy(spec))
    invalid(result, "spec.rules[0].from[0].source.principals[0]")
    assert not allowed([result.authorization], NOTSLEEP, port=9080)
    assert allowed([result.authorization], NOTSLEEP, port=9081)
    # Within one source, the readable fields are kept.
    partial = convert(policy(deny_from(namespaces=["foo"], ipBlocks=["bad"])))
    assert not allowed([partial.authorization], FOO_APP)
    assert allowed([partial.authorization], SLEEP)


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"key": "source.ip", "values": ["nope"]}, "when[0].values[0]"),
        ({"key": "destination.port", "notValues": ["x"]}, "when[0].notValues[0]"),
        ({"key": "source.principal", "values": ["a*b"]}, "when[0].values[0]"),
        ({"key": "source.namespace"}, "when[0]"),
        ({"key": "source.ip", "values": "10.0.0.1"}, "when[0].values"),
        ({"values": ["x"]}, "when[0].key"),
        ({"key": "source.ip", "value": ["10.0.0.1"]}, "when[0].value"),
        ("source.ip", "when[0]"),
    ],
)
def test_bad_when_conditions(condition, field):
    allow = convert(policy({"rules": [{"when": [condition]}]}))
    invalid(allow, f"spec.rules[0].{field}")
    assert not allowed([allow.authorization], SLEEP)
    deny = convert(policy({"action": "DENY", "rules": [{"when": [condition]}]}))
    invalid(deny, field)
    assert not allowed([deny.authorization], SLEEP)


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ("everything", "spec.rules"),
        ({"from": []}, "spec.rules"),
        (["x"], "spec.rules[0]"),
        ([{"from": {"source": {"namespaces": ["foo"]}}}], "spec.rules[0].from"),
        ([{"to": "9080"}], "spec.rules[0].to"),
        ([{"when": {"key": "source.ip"}}], "spec.rules[0].when"),
        ([{"from": ["x"]}], "spec.rules[0].from[0]"),
        ([{"from": [{"source": "foo"}]}], "spec.rules[0].from[0].source"),
        ([{"from": [{}]}], "spec.rules[0].from[0].source"),
        ([{"from": [{"source": {}}]}], "spec.rules[0].from[0].source"),
        ([{"to": [{"operation": {}}]}], "spec.rules[0].to[0].operation"),
        ([{"to": [{"operation": {"port": ["80"]}}]}], "spec.rules[0].to[0].operation.port"),
        ([{"form": [{"source": {"namespaces": ["foo"]}}]}], "spec.rules[0].form"),
    ],
)
def test_wrong_types_and_shapes(rules, field):
    allow = convert(policy({"action": "ALLOW", "rules": rules}))
    invalid(allow, field)
    for identity in (SLEEP, FOO_APP, PLAINTEXT):
        assert not allowed([allow.authorization], identity)
    deny = convert(policy({"action": "DENY", "rules": rules}))
    invalid(deny, field)
    for identity in (SLEEP, FOO_APP, PLAINTEXT):
        assert not allowed([deny.authorization], identity)


def test_unknown_keys_beside_a_source_widen_a_deny_and_drop_an_allow_rule():
    rules = [{"from": [{"source": {"namespaces": ["foo"]}, "extra": 1}]}]
    allow = convert(policy({"action": "ALLOW", "rules": rules}))
    invalid(allow, "spec.rules[0].from[0].extra")
    assert not allowed([allow.authorization], FOO_APP)
    deny = convert(policy({"action": "DENY", "rules": rules}))
    invalid(deny, "spec.rules[0].from[0].extra")
    assert not allowed([deny.authorization], FOO_APP)  # the readable part is kept
    assert allowed([deny.authorization], SLEEP)


@pytest.mark.parametrize(
    "selector",
    ["app=productpage", {"matchLabels": {"app": 1}}, {"matchExpressions": []}, {"matchLabels": []}],
)
def test_unreadable_selector_fails_closed(selector):
    allow = convert(policy({"selector": selector, "rules": [{}]}))
    invalid(allow, "spec.selector", "allows nothing")
    auth = allow.authorization
    assert auth.scope is Scope.WORKLOAD_SELECTOR and dict(auth.selector) == {}
    assert auth.rules == ()
    assert not allowed([auth], SLEEP, labels={"app": "anything"})

    deny = convert(policy({"selector": selector, "action": "DENY", "rules": [{}]}))
    invalid(deny, "spec.selector")
    assert not allowed([deny.authorization], SLEEP, labels={"app": "anything"})


def test_unknown_spec_fields_are_reported_without_changing_enforcement():
    result = convert(policy({**allow_from(namespaces=["foo"]), "rule": []}))
    invalid(result, "spec.rule")
    assert allowed([result.authorization], FOO_APP)
    assert not allowed([result.authorization], SLEEP)


def test_problems_are_listed_with_a_limit():
    rules = [{"from": [{"source": {"ipBlocks": [f"bad-{i}"]}}]} for i in range(15)]
    message = invalid(convert(policy({"rules": rules})))["message"]
    assert "spec.rules[9]" in message and "spec.rules[10]" not in message
    assert "and 5 more" in message


GARBAGE: list[Any] = [
    None, True, 0, -1, 1.5, "", "x", "*", [], [None], [[]], {}, {"": None}, {1: 2},
    ["a*b"], ["10.0.0.0/99"], [{"key": None}], [{"source": None}], [{"operation": []}],
    {"matchLabels": None}, [{"from": [{"source": {"ipBlocks": [None]}}]}],
]  # fmt: skip


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_anywhere_never_raises(garbage):
    skeleton = {
        "action": "DENY",
        "selector": {"matchLabels": {"app": "x"}},
        "rules": [
            {
                "from": [{"source": {"principals": ["*"], "ipBlocks": ["10.0.0.0/8"]}}],
                "to": [{"operation": {"ports": ["80"], "methods": ["GET"]}}],
                "when": [{"key": "source.ip", "values": ["10.0.0.1"]}],
            }
        ],
    }
    paths = [
        ("spec",),
        ("spec", "action"),
        ("spec", "selector"),
        ("spec", "selector", "matchLabels"),
        ("spec", "rules"),
        ("spec", "rules", 0),
        ("spec", "rules", 0, "from"),
        ("spec", "rules", 0, "from", 0),
        ("spec", "rules", 0, "from", 0, "source"),
        ("spec", "rules", 0, "from", 0, "source", "principals"),
        ("spec", "rules", 0, "from", 0, "source", "ipBlocks"),
        ("spec", "rules", 0, "to", 0, "operation", "ports"),
        ("spec", "rules", 0, "when"),
        ("spec", "rules", 0, "when", 0),
        ("spec", "rules", 0, "when", 0, "values"),
        ("spec", "targetRefs"),
        ("metadata",),
        ("metadata", "annotations"),
    ]
    for action in ("ALLOW", "DENY"):
        for path in paths:
            obj = json.loads(
                json.dumps({**policy(skeleton), "spec": {**skeleton, "action": action}})
            )
            node = obj
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = garbage
            result = convert(obj)
            assert isinstance(result, Conversion)
            assert isinstance(result.conditions, list)
            if result.authorization is not None:
                wire = json.loads(json.dumps(result.authorization.to_dict()))
                assert Authorization.from_dict(wire) == result.authorization
                decide([result.authorization], SLEEP, labels={"app": "x"})


# -- the wire form ---------------------------------------------------------------------------------


def everything() -> Authorization:
    match = Match(
        namespaces=(StringMatch.exact("default"), StringMatch.prefix("prod-")),
        not_namespaces=(StringMatch.suffix("-test"),),
        service_accounts=(("default", "sleep"),),
        not_service_accounts=(("foo", "bar"),),
        principals=(StringMatch.presence(),),
        not_principals=(StringMatch.exact("cluster.local/ns/x/sa/y"),),
        source_ips=("10.0.0.0/8", "fd00::/8"),
        not_source_ips=("10.1.2.3",),
        destination_ips=("192.168.0.0/16",),
        not_destination_ips=("192.168.1.1/32",),
        destination_ports=(80, 9080),
        not_destination_ports=(15000,),
    )
    return Authorization(
        name="everything",
        namespace="default",
        scope=Scope.WORKLOAD_SELECTOR,
        selector={"version": "v1", "app": "productpage"},
        action=Action.DENY,
        rules=(Rule((Clause((match, Match(destination_ports=(1,)))), Clause(()))), Rule(())),
        dry_run=True,
    )


def test_to_dict_is_json_safe_stable_and_round_trips():
    auth = everything()
    wire = auth.to_dict()
    text = json.dumps(wire)
    assert json.dumps(everything().to_dict()) == text
    assert list(wire) == ["name", "namespace", "scope", "selector", "action", "rules", "dryRun"]
    assert list(wire["selector"]) == ["app", "version"]
    match = wire["rules"][0]["clauses"][0]["matches"][0]
    assert match["principals"] == [{"presence": {}}]
    assert match["namespaces"] == [{"exact": "default"}, {"prefix": "prod-"}]
    assert match["serviceAccounts"] == [{"namespace": "default", "serviceAccount": "sleep"}]
    assert match["sourceIps"] == ["10.0.0.0/8", "fd00::/8"]
    assert match["notSourceIps"] == ["10.1.2.3/32"]
    assert wire["rules"][0]["clauses"][0]["matches"][1] == {"destinationPorts": [1]}
    back = Authorization.from_dict(json.loads(text))
    assert back == auth and hash(back) == hash(auth)
    assert back.to_dict() == wire


def test_converted_policies_round_trip():
    for spec in (PRODUCTPAGE_VIEWER, {}, {"rules": [{}]}, deny_from(notPrincipals=["*"])):
        auth = authz(spec)
        assert Authorization.from_dict(json.loads(json.dumps(auth.to_dict()))) == auth
    wire, conditions = convert_for_xds(policy(PRODUCTPAGE_VIEWER))
    assert wire == authz(PRODUCTPAGE_VIEWER).to_dict() and conditions[0]["status"] == "True"
    assert convert_for_xds(policy({"action": "AUDIT"}))[0] is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.update(extra=1),
        lambda w: w.update(scope="CLUSTER"),
        lambda w: w.update(action="AUDIT"),
        lambda w: w.update(name=""),
        lambda w: w.update(selector=None),
        lambda w: w.update(dryRun="yes"),
        lambda w: w.update(rules={}),
        lambda w: w["rules"][0].update(groups=[]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(principal=[]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(sourceIps=["x"]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(destinationPorts=[70000]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(principals=[{"regex": "."}]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(principals=[{"presence": 1}]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(serviceAccounts=[{}]),
        lambda w: w["rules"][0]["clauses"][0]["matches"][0].update(namespaces="default"),
    ],
)
def test_from_dict_refuses_malformed_messages(mutate):
    wire = json.loads(json.dumps(everything().to_dict()))
    mutate(wire)
    with pytest.raises(ValueError):
        Authorization.from_dict(wire)


# -- model details -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", StringMatch.exact("abc")),
        ("abc*", StringMatch.prefix("abc")),
        ("*abc", StringMatch.suffix("abc")),
        ("*", StringMatch.presence()),
    ],
)
def test_string_match_syntax(text, expected):
    assert StringMatch.parse(text) == expected
    assert str(expected) == text
    assert StringMatch.from_dict(expected.to_dict()) == expected


@pytest.mark.parametrize("text", ["", "a*b", "**", "*a*", "a**"])
def test_string_match_refuses_inner_wildcards(text):
    with pytest.raises(ValueError):
        StringMatch.parse(text)


def test_model_normalises_and_validates():
    match = Match(source_ips=["10.1.2.3/8"], destination_ports=[80])
    assert match.source_ips == (ipaddress.ip_network("10.0.0.0/8"),)
    assert match.destination_ports == (80,)
    assert Match().is_empty() and not match.is_empty()
    with pytest.raises(ValueError):
        Match(destination_ports=(True,))
    with pytest.raises(ValueError):
        Match(principals="*")
    with pytest.raises(ValueError):
        Authorization(name="a", namespace="b", scope=Scope.NAMESPACE, action=Action.ALLOW,
                      selector={"app": "x"})  # fmt: skip
    with pytest.raises(ValueError):
        Authorization(name="a", namespace="b", scope=Scope.WORKLOAD_SELECTOR, action="ALLOW")
    auth = Authorization(name="a", namespace="b", scope="NAMESPACE", action="DENY")
    assert auth.scope is Scope.NAMESPACE and auth.action is Action.DENY and auth.key == "b/a"


def test_peers_and_connections():
    peer = Peer("10.0.0.1", SLEEP)
    assert peer.principal == "cluster.local/ns/default/sa/sleep"
    assert (peer.namespace, peer.service_account) == ("default", "sleep")
    assert Peer("::1").principal is None
    for bad in ("cluster.local/ns/default/sa/sleep", "spiffe://cluster.local/sa/x", "spiffe://"):
        with pytest.raises(ValueError):
            Peer("10.0.0.1", bad)
    with pytest.raises(ValueError):
        Connection.of("10.0.0.1", None, "10.0.0.2", 70000)


def test_an_index_gives_the_same_answers_as_a_list():
    policies = [
        authz(PRODUCTPAGE_VIEWER, name="viewer"),
        authz(deny_from(namespaces=["foo"]), name="deny-foo"),
        authz({"rules": [{}]}, name="ns-allow-all", namespace="shop"),
        authz(deny_from(ipBlocks=["192.168.0.0/16"]), name="mesh-deny", namespace="istio-system"),
    ]
    index = PolicyIndex(policies)
    for namespace, labels in (("default", PRODUCTPAGE), ("shop", {}), ("other", {"app": "x"})):
        for identity in (SLEEP, NOTSLEEP, FOO_APP, PLAINTEXT):
            for src in ("10.0.0.1", "192.168.3.4"):
                conn = Connection.of(src, identity, "10.0.1.1", 9080)
                expected = authorize(policies, namespace, labels, conn)
                assert index.authorize(namespace, labels, conn) == expected
                assert authorize(index, namespace, labels, conn) == expected
