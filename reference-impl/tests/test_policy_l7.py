"""A waypoint's L7 authorization: compiling, attaching and deciding.

The expected behaviour is the API's (istio/api security/v1beta1/authorization_policy.proto),
attached as istiod does (istio/istio pilot/pkg/model/policyattachment.go), and the
walkthrough's step 8 (conformance/suite/test_walkthrough.py in the harness).  Pure and
fast: dicts in, decisions out.
"""

from __future__ import annotations

from typing import Any

import pytest

from ambient_ref.policy.l7 import (
    DENIED_BODY,
    DENIED_STATUS,
    REASON_ACCEPTED,
    REASON_INVALID,
    REASON_UNSUPPORTED,
    L7Action,
    L7Policy,
    PathTemplate,
    Request,
    applies_to_waypoint,
    authorize_l7,
    compile_l7,
    for_service,
)

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
NOTSLEEP = "spiffe://cluster.local/ns/default/sa/notsleep"
PRODUCTPAGE = ("default", "productpage")
REVIEWS = ("default", "reviews")


def policy(
    spec: Any = None,
    *,
    name: str = "p",
    namespace: str = "default",
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 3}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta,
        "spec": {} if spec is None else spec,
    }


def compiled(spec: Any, **kwargs: Any) -> L7Policy:
    result, conditions = compile_l7(policy(spec, **kwargs))
    assert result is not None, conditions
    return result


def request(
    method: str = "GET",
    path: str = "/productpage",
    *,
    principal: str | None = SLEEP,
    host: str = "productpage:9080",
    port: int = 9080,
    headers: Any = (),
    source_ip: str | None = "10.0.0.5",
) -> Request:
    return Request(
        method=method,
        path=path,
        host=host,
        port=port,
        headers=headers,
        source_ip=source_ip,
        source_principal=principal,
    )


def allowed(spec: Any, req: Request, service: tuple[str, str] = PRODUCTPAGE) -> bool:
    return authorize_l7([compiled(spec)], req, service).allowed


def only(**operation: Any) -> dict[str, Any]:
    """An ALLOW policy for one operation."""
    return {"action": "ALLOW", "rules": [{"to": [{"operation": operation}]}]}


# The walkthrough's step 8 policy, in today's flavour (targetRefs on the Service).
STEP8 = {
    "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
    "action": "ALLOW",
    "rules": [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
            "to": [{"operation": {"methods": ["GET"]}}],
        }
    ],
}


class TestWalkthroughStep8:
    def test_condition_accepted(self) -> None:
        result, conditions = compile_l7(policy(STEP8, name="productpage-viewer"))
        assert result is not None and result.action is L7Action.ALLOW
        assert [c["reason"] for c in conditions] == [REASON_ACCEPTED]
        assert conditions[0]["type"] == "WaypointAccepted"
        assert conditions[0]["status"] == "True"
        assert conditions[0]["observedGeneration"] == 3

    def test_sleep_get_allowed(self) -> None:
        decision = authorize_l7([compiled(STEP8, name="v")], request("GET"), PRODUCTPAGE)
        assert decision.allowed and decision.policy == "default/v"

    def test_sleep_delete_denied(self) -> None:
        decision = authorize_l7([compiled(STEP8)], request("DELETE"), PRODUCTPAGE)
        assert not decision.allowed
        assert decision.reason == "allow policies exist, but none allowed"

    def test_notsleep_denied(self) -> None:
        assert not allowed(STEP8, request("GET", principal=NOTSLEEP))

    def test_plaintext_denied(self) -> None:
        assert not allowed(STEP8, request("GET", principal=None))

    def test_other_service_unaffected(self) -> None:
        # Targets the productpage Service only: reviews through the same waypoint is free.
        assert allowed(STEP8, request("DELETE", principal=NOTSLEEP), REVIEWS)

    def test_2022_selector_flavour(self) -> None:
        spec = {**STEP8, "selector": {"matchLabels": {"app": "productpage"}}}
        del spec["targetRefs"]
        p = policy(spec)
        assert applies_to_waypoint(
            p,
            waypoint_name="productpage",
            waypoint_namespace="default",
            service_keys={PRODUCTPAGE},
            flavour="selector",
            served_workload_labels=[{"app": "productpage", "version": "v1"}],
        )
        compiled_policy, _ = compile_l7(p)
        assert compiled_policy is not None
        assert authorize_l7([compiled_policy], request("GET"), PRODUCTPAGE).allowed
        assert not authorize_l7([compiled_policy], request("DELETE"), PRODUCTPAGE).allowed
        assert not authorize_l7([compiled_policy], request(principal=NOTSLEEP), PRODUCTPAGE).allowed

    def test_denied_response(self) -> None:
        assert DENIED_STATUS == 403
        assert DENIED_BODY == b"RBAC: access denied"


class TestPaths:
    @pytest.mark.parametrize(
        ("pattern", "path", "expected"),
        [
            ("/productpage", "/productpage", True),
            ("/productpage", "/productpage?u=normal", True),  # the query is not the path
            ("/productpage", "/productpage/", False),
            ("/api/*", "/api/v1/products", True),
            ("/api/*", "/ap", False),
            ("*.css", "/static/site.css", True),
            ("*.css", "/static/site.js", False),
            ("*", "/anything", True),
            ("/api/{*}/reviews", "/api/v1/reviews", True),
            ("/api/{*}/reviews", "/api/v1/x/reviews", False),
            ("/api/{*}/reviews", "/api//reviews", False),
            ("/api/{**}", "/api/v1/products/0", True),
            ("/api/{**}", "/api/", True),
            ("/api/{**}", "/api", False),
            ("/{*}/ratings/{**}", "/v1/ratings/0/x", True),
        ],
    )
    def test_path_matching(self, pattern: str, path: str, expected: bool) -> None:
        assert allowed(only(paths=[pattern]), request(path=path)) is expected

    def test_dot_segments_are_removed(self) -> None:
        spec = {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}
        assert not allowed(spec, request(path="/public/../admin/users"))
        assert allowed(spec, request(path="/public/./x"))

    def test_not_paths(self) -> None:
        spec = only(notPaths=["/health*"])
        assert allowed(spec, request(path="/productpage"))
        assert not allowed(spec, request(path="/healthz"))

    @pytest.mark.parametrize("bad", ["/a/{**}/b", "/a/x{*}", "/a/{x}", "/a/*/b", "a/{*}"])
    def test_bad_templates_fail_closed(self, bad: str) -> None:
        result, conditions = compile_l7(policy(only(paths=[bad])))
        assert result is not None and result.rules == ()  # the ALLOW rule is dropped
        assert conditions[0]["reason"] == REASON_INVALID
        assert "paths[0]" in conditions[0]["message"]

    def test_template_object(self) -> None:
        template = PathTemplate.parse("/a/{*}/{**}")
        assert template.matches("/a/b/c/d") and not template.matches("/a/b")
        assert str(template) == "/a/{*}/{**}"


class TestOperations:
    @pytest.mark.parametrize(
        ("pattern", "host", "expected"),
        [
            ("productpage", "productpage", True),
            ("productpage", "ProductPage:9080", True),
            (
                "PRODUCTPAGE.default.svc.cluster.local",
                "productpage.default.svc.cluster.local",
                True,
            ),
            ("productpage:9080", "productpage:9080", True),
            ("productpage:9080", "productpage", False),
            ("productpage:9080", "productpage:80", False),
            ("*.svc.cluster.local", "reviews.default.svc.cluster.local:9080", True),
            ("reviews*", "productpage", False),
            ("[::1]", "[::1]:9080", True),
        ],
    )
    def test_hosts(self, pattern: str, host: str, expected: bool) -> None:
        assert allowed(only(hosts=[pattern]), request(host=host)) is expected

    def test_not_hosts(self) -> None:
        spec = only(notHosts=["evil.example.com"])
        assert not allowed(spec, request(host="EVIL.example.com:443"))
        assert allowed(spec, request(host="productpage"))

    def test_methods_and_not_methods(self) -> None:
        assert allowed(only(methods=["GET", "HEAD"]), request("HEAD"))
        assert not allowed(only(methods=["GET"]), request("get"))  # methods are exact
        spec = only(notMethods=["DELETE", "PUT"])
        assert allowed(spec, request("GET"))
        assert not allowed(spec, request("DELETE"))

    def test_ports(self) -> None:
        assert allowed(only(ports=["9080"]), request(port=9080))
        assert not allowed(only(ports=["9080"]), request(port=80))
        assert not allowed(only(notPorts=[9080]), request(port=9080))

    def test_fields_anded_values_ored_operations_ored(self) -> None:
        spec = {
            "rules": [
                {
                    "to": [
                        {"operation": {"methods": ["GET"], "paths": ["/productpage"]}},
                        {"operation": {"methods": ["POST"], "paths": ["/login", "/logout"]}},
                    ]
                }
            ]
        }
        assert allowed(spec, request("GET", "/productpage"))
        assert allowed(spec, request("POST", "/logout"))
        assert not allowed(spec, request("GET", "/login"))
        assert not allowed(spec, request("POST", "/productpage"))


class TestSources:
    def test_namespaces(self) -> None:
        spec = {"rules": [{"from": [{"source": {"namespaces": ["default"]}}]}]}
        assert allowed(spec, request(principal=NOTSLEEP))
        assert not allowed(spec, request(principal="spiffe://cluster.local/ns/foo/sa/x"))
        assert not allowed(spec, request(principal=None))

    def test_not_namespaces_holds_without_identity(self) -> None:
        spec = {"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": ["default"]}}]}]}
        assert allowed(spec, request(principal=SLEEP))
        assert not allowed(spec, request(principal=None))

    def test_service_accounts(self) -> None:
        spec = {"rules": [{"from": [{"source": {"serviceAccounts": ["sleep", "foo/app"]}}]}]}
        assert allowed(spec, request(principal=SLEEP))
        assert allowed(spec, request(principal="cluster.local/ns/foo/sa/app"))
        assert not allowed(spec, request(principal=NOTSLEEP))

    def test_principal_prefix_and_not_principals(self) -> None:
        spec = {
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": ["cluster.local/ns/default/*"],
                                "notPrincipals": ["*/sa/notsleep"],
                            }
                        }
                    ]
                }
            ]
        }
        assert allowed(spec, request(principal=SLEEP))
        assert not allowed(spec, request(principal=NOTSLEEP))

    def test_ip_blocks(self) -> None:
        spec = {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/24"]}}]}]}
        assert allowed(spec, request(source_ip="10.0.0.9"))
        assert not allowed(spec, request(source_ip="10.0.1.9"))
        assert not allowed(spec, request(source_ip=None))
        deny = {"action": "DENY", "rules": [{"from": [{"source": {"notIpBlocks": ["10.0.0.5"]}}]}]}
        assert allowed(deny, request(source_ip="10.0.0.5"))
        assert not allowed(deny, request(source_ip="10.0.0.6"))

    def test_request_principals_never_match(self) -> None:
        # No JWT support: a rule needing a request principal never allows...
        spec = {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}
        assert not allowed(spec, request(headers={"authorization": "Bearer x"}))
        # ...and "deny requests without a JWT" denies every request.
        deny = {
            "action": "DENY",
            "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}],
        }
        assert not allowed(deny, request())


class TestWhen:
    def test_request_header(self) -> None:
        spec = {
            "rules": [{"when": [{"key": "request.headers[X-Version]", "values": ["v2", "v3*"]}]}]
        }
        assert allowed(spec, request(headers={"x-version": "v2"}))
        assert allowed(spec, request(headers=[("X-Version", "v3-beta")]))
        assert not allowed(spec, request(headers={"x-version": "v1"}))
        assert not allowed(spec, request())

    def test_header_not_values_and_presence(self) -> None:
        deny = {
            "action": "DENY",
            "rules": [{"when": [{"key": "request.headers[end-user]", "notValues": ["*"]}]}],
        }
        assert not allowed(deny, request())  # no end-user header: denied
        assert allowed(deny, request(headers={"end-user": "jason"}))

    def test_repeated_header_values_are_joined(self) -> None:
        spec = {"rules": [{"when": [{"key": "request.headers[x-a]", "values": ["1,2"]}]}]}
        assert allowed(spec, request(headers=[("x-a", "1"), ("X-A", "2")]))

    def test_source_and_destination_keys(self) -> None:
        spec = {
            "rules": [
                {
                    "when": [
                        {"key": "source.namespace", "values": ["default"]},
                        {"key": "source.principal", "notValues": ["*/sa/notsleep"]},
                        {"key": "source.ip", "values": ["10.0.0.0/8"]},
                        {"key": "destination.port", "values": ["9080"]},
                    ]
                }
            ]
        }
        assert allowed(spec, request())
        assert not allowed(spec, request(principal=NOTSLEEP))
        assert not allowed(spec, request(source_ip="192.168.0.1"))
        assert not allowed(spec, request(port=80))

    def test_request_auth_never_matches(self) -> None:
        spec = {"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["*"]}]}]}
        assert not allowed(spec, request())


class TestEvaluationOrder:
    def test_deny_before_allow(self) -> None:
        allow_all = compiled({"rules": [{}]}, name="all")
        deny_delete = compiled(
            {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]},
            name="no-delete",
        )
        decision = authorize_l7([allow_all, deny_delete], request("DELETE"), PRODUCTPAGE)
        assert not decision.allowed
        assert decision.reason == "explicitly denied by: default/no-delete"
        assert decision.policy == "default/no-delete"
        assert authorize_l7([allow_all, deny_delete], request("GET"), PRODUCTPAGE).allowed

    def test_no_policies_allow(self) -> None:
        decision = authorize_l7([], request(), PRODUCTPAGE)
        assert decision.allowed and decision.reason == "no allow policies exist"

    def test_allow_nothing(self) -> None:
        result, conditions = compile_l7(policy({}))
        assert result is not None and result.rules == ()
        assert conditions[0]["reason"] == REASON_ACCEPTED
        assert not authorize_l7([result], request(), PRODUCTPAGE).allowed

    def test_deny_without_rules_has_no_effect(self) -> None:
        assert allowed({"action": "DENY"}, request())

    def test_audit_ignored(self) -> None:
        audit = compiled({"action": "AUDIT", "rules": [{}]})
        assert audit.action is L7Action.AUDIT
        deny_only = compiled({"action": "DENY", "rules": [{"to": [{"operation": {"ports": [1]}}]}]})
        # AUDIT neither denies nor counts as an ALLOW policy.
        assert authorize_l7([audit, deny_only], request(), PRODUCTPAGE).allowed

    def test_custom_reported_not_enforced(self) -> None:
        result, conditions = compile_l7(
            policy({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]})
        )
        assert result is None
        assert conditions[0]["status"] == "False"
        assert conditions[0]["reason"] == REASON_UNSUPPORTED
        assert "CUSTOM" in conditions[0]["message"]
        assert authorize_l7([result], request(), PRODUCTPAGE).allowed

    def test_dry_run_reported_not_enforced(self) -> None:
        dry = compiled(
            {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "true"}, name="d"
        )
        decision = authorize_l7([dry], request(), PRODUCTPAGE)
        assert decision.allowed and decision.dry_run == ("DENY default/d",)

    def test_v1beta1_accepted(self) -> None:
        p = policy(STEP8)
        p["apiVersion"] = "security.istio.io/v1beta1"
        assert compile_l7(p)[0] is not None


WAYPOINT = {"waypoint_name": "waypoint", "waypoint_namespace": "default"}


def attached(spec: Any, namespace: str = "default", **kwargs: Any) -> bool:
    options = {**WAYPOINT, "service_keys": {PRODUCTPAGE}, **kwargs}
    return applies_to_waypoint(policy(spec, namespace=namespace), **options)


def refs(*items: dict[str, Any]) -> dict[str, Any]:
    return {"targetRefs": list(items), "rules": [{}]}


GATEWAY_REF = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}
CLASS_REF = {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}


class TestAttachmentToday:
    def test_gateway_by_name(self) -> None:
        assert attached(refs(GATEWAY_REF))
        assert not attached(refs({**GATEWAY_REF, "name": "other"}))
        assert not attached(refs(GATEWAY_REF), namespace="foo")  # same name, other namespace

    def test_service(self) -> None:
        assert attached(refs({"kind": "Service", "group": "", "name": "productpage"}))
        assert attached(refs({"kind": "Service", "group": "core", "name": "productpage"}))
        assert attached(refs({"kind": "Service", "name": "productpage"}))
        assert not attached(refs({"kind": "Service", "group": "", "name": "reviews"}))
        assert not attached(refs({"kind": "Service", "group": "apps", "name": "productpage"}))

    def test_single_target_ref(self) -> None:
        assert attached({"targetRef": GATEWAY_REF, "rules": [{}]})

    def test_gateway_class_only_from_root_namespace(self) -> None:
        assert attached(refs(CLASS_REF), namespace="istio-system")
        assert not attached(refs(CLASS_REF), namespace="default")
        assert attached(refs(CLASS_REF), namespace="mesh-root", root_namespace="mesh-root")
        assert not attached(refs({**CLASS_REF, "name": "istio"}), namespace="istio-system")

    def test_cross_namespace_ref_refused(self) -> None:
        assert not attached(refs({**GATEWAY_REF, "namespace": "other"}))

    def test_selector_and_namespace_policies_ignored(self) -> None:
        labels = [{"app": "productpage"}]
        selector = {"selector": {"matchLabels": {"app": "productpage"}}, "rules": [{}]}
        assert not attached(selector, served_workload_labels=labels)
        assert not attached({"rules": [{}]})
        assert not attached({"rules": [{}]}, namespace="istio-system")

    def test_service_targeted_policy_only_covers_its_service(self) -> None:
        service = compiled(refs({"kind": "Service", "name": "productpage"}))
        assert for_service(service, PRODUCTPAGE) and not for_service(service, REVIEWS)
        gateway = compiled(refs(GATEWAY_REF))
        assert for_service(gateway, REVIEWS)
        assert not for_service(gateway, REVIEWS, waypoint=("default", "other"))
        deny_all = compiled({**refs(GATEWAY_REF), "action": "DENY"})
        assert not authorize_l7([deny_all], request(), REVIEWS).allowed


FLAVOUR_2022 = {"flavour": "selector", "served_workload_labels": [{"app": "productpage"}]}


class TestAttachment2022:
    def test_matching_selector(self) -> None:
        spec = {"selector": {"matchLabels": {"app": "productpage"}}, "rules": [{}]}
        assert attached(spec, **FLAVOUR_2022)
        other = {"selector": {"matchLabels": {"app": "reviews"}}, "rules": [{}]}
        assert not attached(other, **FLAVOUR_2022)

    def test_namespace_and_root_policies(self) -> None:
        assert attached({"rules": [{}]}, **FLAVOUR_2022)
        assert attached({"rules": [{}]}, namespace="istio-system", **FLAVOUR_2022)
        assert not attached({"rules": [{}]}, namespace="foo", **FLAVOUR_2022)

    def test_target_refs_did_not_exist(self) -> None:
        assert not attached(refs(GATEWAY_REF), **FLAVOUR_2022)

    def test_unreadable_selector_selects_everything(self) -> None:
        assert attached({"selector": "app=productpage", "rules": [{}]}, **FLAVOUR_2022)
        # ...and an ALLOW with it allows nothing, so it cannot open anything.
        result = compiled({"selector": "app=productpage", "rules": [{}]})
        assert result.rules == ()


class TestBadInput:
    @pytest.mark.parametrize(
        "value",
        [
            None,
            "policy",
            [],
            {"metadata": "x"},
            {"metadata": {"name": "p"}},
            {"metadata": {"name": "p", "namespace": "default"}, "spec": []},
            {"kind": "Pod", "metadata": {"name": "p", "namespace": "default"}},
            {"apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}},
        ],
    )
    def test_unattributable(self, value: Any) -> None:
        result, conditions = compile_l7(value)
        assert result is None
        assert conditions[0]["status"] == "False" and conditions[0]["reason"] == REASON_INVALID
        for flavour in ("targetRefs", "selector"):
            assert not applies_to_waypoint(value, flavour=flavour, **WAYPOINT)

    def test_unknown_action(self) -> None:
        result, conditions = compile_l7(policy({"action": "MAYBE"}))
        assert result is None and "spec.action" in conditions[0]["message"]

    @pytest.mark.parametrize(
        "rules",
        [
            "all",
            [1],
            [{"from": "x"}],
            [{"from": [{"source": {}}]}],
            [{"from": [{"source": {"principals": ["a*b"]}}]}],
            [{"from": [{"source": {"ipBlocks": ["10.0.0.0/255.0.0.0"]}}]}],
            [{"to": [{"operation": {"ports": ["http"]}}]}],
            [{"to": [{"operation": {"methods": "GET"}}]}],
            [{"to": [{"operation": {"verbs": ["GET"]}}]}],
            [{"when": [{"key": "connection.sni", "values": ["x"]}]}],
            [{"when": [{"key": "source.ip"}]}],
            [{"unknown": 1}],
        ],
    )
    def test_fail_closed(self, rules: Any) -> None:
        allow, conditions = compile_l7(policy({"action": "ALLOW", "rules": rules}))
        assert conditions[0]["reason"] == REASON_INVALID
        assert allow is not None and allow.rules == ()  # allow-nothing
        assert not authorize_l7([allow], request(), PRODUCTPAGE).allowed
        deny, _ = compile_l7(policy({"action": "DENY", "rules": rules}))
        assert deny is not None
        assert not authorize_l7([deny], request(), PRODUCTPAGE).allowed  # denies more

    def test_deny_keeps_readable_fields(self) -> None:
        spec = {
            "action": "DENY",
            "rules": [{"to": [{"operation": {"methods": ["DELETE"], "paths": ["/a*b"]}}]}],
        }
        deny = compiled(spec)
        assert not authorize_l7([deny], request("DELETE"), PRODUCTPAGE).allowed
        assert authorize_l7([deny], request("GET"), PRODUCTPAGE).allowed

    def test_bad_target_refs_attach_nowhere(self) -> None:
        for spec in (
            {"targetRefs": "waypoint"},
            {"targetRefs": [1, {"kind": "Gateway", "name": "waypoint"}]},  # no group
            {"targetRefs": [{"kind": "Pod", "name": "waypoint"}]},
        ):
            assert not attached(spec)
            result, conditions = compile_l7(policy(spec))
            assert conditions[0]["reason"] == REASON_INVALID
            assert result is not None and not for_service(result, PRODUCTPAGE)

    def test_bad_request_principal_raises(self) -> None:
        with pytest.raises(ValueError):
            request(principal="spiffe://cluster.local/sleep")
