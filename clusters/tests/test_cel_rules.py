"""CEL rules of custom resources (x-kubernetes-validations): the pure checks, and the
local API refusing what a rule forbids with the real server's message, through kubectl.

The rules are of the kinds the Gateway API and Istio CRDs carry (one-of, list
predicates, immutability through oldSelf, messageExpression, fieldPath, reason).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.local.apiserver import celrules

SCHEMA = {
    "type": "object",
    "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) <= 1",
             "message": "only one of targetRef or selector can be set"},
            {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"},
        ],
        "properties": {
            "mode": {"type": "string"},
            "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "targetRef": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "hosts": {"type": "array", "items": {"type": "string"},
                      "x-kubernetes-validations": [
                          {"rule": "self.all(h, !h.startsWith('*'))",
                           "messageExpression": "'no wildcards: ' + self.join(', ')",
                           "fieldPath": "", "reason": "FieldValueForbidden"}]},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object",
                                "properties": {"name": {"type": "string"},
                                               "port": {"type": "integer"}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.port > 0 && self.port < 65536",
                                     "fieldPath": ".port"}]}},
        },
    }},
}


def spec(**fields):
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": fields}


def test_rules_that_hold_give_nothing():
    assert celrules.check(spec(mode="a", hosts=["x.com"], ports=[{"name": "p", "port": 80}]),
                          SCHEMA).causes == []


def test_a_false_rule_gives_the_real_servers_cause():
    assert celrules.check(spec(selector={}, targetRef={}), SCHEMA).causes == [{
        "field": "spec", "reason": "FieldValueInvalid",
        "message": 'Invalid value: "object": only one of targetRef or selector can be set'}]


def test_message_expression_field_path_and_reason():
    causes = celrules.check(spec(hosts=["*.com", "a.com"], ports=[{"name": "p", "port": 0}]),
                            SCHEMA).causes
    assert causes == [
        {"field": "spec.hosts", "reason": "FieldValueForbidden",
         "message": 'Invalid value: "array": no wildcards: *.com, a.com'},
        {"field": "spec.ports[0].port", "reason": "FieldValueInvalid",
         "message": 'Invalid value: "object": failed rule: self.port > 0 && '
                    'self.port < 65536'},
    ]


def test_transition_rules_run_on_updates_only():
    assert celrules.check(spec(mode="a"), SCHEMA).causes == []  # a create: no oldSelf
    assert celrules.check(spec(mode="a"), SCHEMA, spec(mode="a")).causes == []
    [cause] = celrules.check(spec(mode="b"), SCHEMA, spec(mode="a")).causes
    assert cause["message"] == 'Invalid value: "object": mode is immutable'


def test_a_rule_that_cannot_run_says_so():
    broken = {"type": "object", "x-kubernetes-validations": [{"rule": "self.missing > 1"}]}
    [cause] = celrules.check({"a": 1}, broken).causes
    assert "evaluation error" in cause["message"] and "self.missing > 1" in cause["message"]


def test_a_rule_calling_a_function_this_cel_lacks_is_skipped_not_judged():
    schema = {"type": "string", "x-kubernetes-validations": [{"rule": "isIP(self)"}]}
    verdict = celrules.check("not-an-ip", schema)
    assert verdict.causes == [] and verdict.skipped == ["<root>: isIP(self)"]


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": SCHEMA}}]},
}


@pytest.mark.slow
@pytest.mark.kubectl
def test_kubectl_is_refused_what_a_rule_forbids(kubectl, ns):
    kubectl("apply", "-f", "-", input=json.dumps(CRD))
    try:
        kubectl("wait", "--for=condition=Established", "crd/widgets.example.com")
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(spec(mode="a")))
        both = kubectl("apply", "-n", ns, "-f", "-",
                       input=json.dumps(spec(mode="a", selector={}, targetRef={})), check=False)
        assert both.returncode != 0
        assert ('The Widget "w" is invalid: spec: Invalid value: "object": only one of '
                "targetRef or selector can be set") in both.stderr
        changed = kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(spec(mode="b")),
                          check=False)
        assert changed.returncode != 0 and "mode is immutable" in changed.stderr
    finally:
        kubectl("delete", "crd", "widgets.example.com")


@pytest.mark.parametrize(("rule", "value", "holds"), [
    ("self.split('.').size() == 3", "a.b.c", True),
    ("self.lowerAscii() == self", "Mixed", False),
    ("self.substring(0, 4) == 'http'", "https://x", True),
    ("self.indexOf('/') == 5", "host:/p", True),
    ("self.isSorted()", [1, 2, 3], True),
    ("self.sum() == 6", [1, 2, 3], True),
    ("self.find('[0-9]+') == '42'", "v42x", True),
])
def test_the_kubernetes_library_functions_rules_use(rule, value, holds):
    schema = {"type": "string", "x-kubernetes-validations": [{"rule": rule}]}
    verdict = celrules.check(value, schema)
    assert verdict.skipped == [] and (verdict.causes == []) is holds


REFERENCE_CRDS = Path(__file__).resolve().parents[2] / \
    "reference-impl/ambient_ref/manifests/crds.yaml"


@contextlib.contextmanager
def reference_crds(kubectl, *established: str) -> Iterator[None]:
    """The reference's CRDs, applied until the block ends (the session's cluster is
    shared: later tests install Istio's own)."""
    kubectl("apply", "-f", str(REFERENCE_CRDS))
    try:
        kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in established))
        yield
    finally:
        kubectl("delete", "-f", str(REFERENCE_CRDS), "--wait=false")


@pytest.mark.slow
@pytest.mark.kubectl
def test_the_reference_crds_describe_and_check_the_security_kinds(kubectl, ns):
    with reference_crds(kubectl, "authorizationpolicies.security.istio.io",
                        "peerauthentications.security.istio.io"):
        explained = kubectl("explain", "authorizationpolicy.spec.action").stdout
        assert "What a match does" in explained and "ALLOW" in explained

        def apply(kind: str, spec: dict) -> subprocess.CompletedProcess:
            return kubectl("apply", "-n", ns, "-f", "-", check=False, input=json.dumps({
                "apiVersion": "security.istio.io/v1", "kind": kind,
                "metadata": {"name": "p"}, "spec": spec}))

        assert apply("AuthorizationPolicy", {"action": "DENY", "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]}
        ).returncode == 0
        bogus = apply("AuthorizationPolicy", {"action": "BOGUS"})
        assert 'spec.action: Unsupported value: "BOGUS"' in bogus.stderr
        misspelt = apply("AuthorizationPolicy", {"action": "DENY", "rule": []})
        assert 'unknown field "spec.rule"' in misspelt.stderr
        both = apply("AuthorizationPolicy", {"selector": {"matchLabels": {"a": "b"}},
                                             "targetRefs": [{"kind": "Service", "name": "s"}]})
        assert "only one of targetRefs or selector can be set" in both.stderr
        ports = apply("PeerAuthentication", {"portLevelMtls": {"8080": {"mode": "STRICT"}}})
        assert "portLevelMtls requires selector" in ports.stderr
        assert apply("PeerAuthentication", {"mtls": {"mode": "STRICT"}}).returncode == 0


# Objects as Istio's and the Gateway API's docs write them (the 90/10 split of the
# walkthrough, a DestinationRule with subsets and a traffic policy, an ingress Gateway
# and its HTTPRoute; istio.io "Traffic Management" tasks, gateway-api.sigs.k8s.io).
NETWORKING = [
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "reviews"},
     "spec": {"hosts": ["reviews"], "http": [
         {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
          "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
         {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}],
          "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
     "metadata": {"name": "reviews"},
     "spec": {"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
              "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                          {"name": "v2", "labels": {"version": "v2"},
                           "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 10}}}}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
     "metadata": {"name": "bookinfo-gateway"},
     "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
         {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
     "metadata": {"name": "bookinfo-gateway"},
     "spec": {"gatewayClassName": "istio", "listeners": [
         {"name": "http", "port": 80, "protocol": "HTTP",
          "allowedRoutes": {"namespaces": {"from": "Same"}}}]}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
     "metadata": {"name": "bookinfo"},
     "spec": {"parentRefs": [{"name": "bookinfo-gateway"}], "rules": [
         {"matches": [{"path": {"type": "Exact", "value": "/productpage"}}],
          "backendRefs": [{"name": "productpage", "port": 9080}]}]}},
    # the 2022 preview's waypoint: v1alpha2, class istio-mesh, no listeners
    {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "Gateway",
     "metadata": {"name": "productpage",
                  "annotations": {"istio.io/service-account": "bookinfo-productpage"}},
     "spec": {"gatewayClassName": "istio-mesh"}},
]


@pytest.mark.slow
@pytest.mark.kubectl
def test_the_reference_crds_describe_and_check_the_networking_kinds(kubectl, ns):
    """Istio's networking kinds and the Gateway API's carry their APIs' schemas: what
    the docs write is accepted (and defaulted as the real server defaults it), a
    misspelt field, a bad enum value, a broken bound or CEL rule is refused."""
    with reference_crds(kubectl, "virtualservices.networking.istio.io",
                        "httproutes.gateway.networking.k8s.io"):
        explained = kubectl("explain", "virtualservice.spec.http.route").stdout
        assert "destination" in explained and "weight" in explained
        explained = kubectl("explain", "httproute.spec.rules.backendRefs").stdout
        assert "weight" in explained and "port" in explained

        def apply(obj: dict, **spec: object) -> subprocess.CompletedProcess:
            obj = {**obj, "spec": {**obj["spec"], **spec}}
            return kubectl("apply", "-n", ns, "-f", "-", check=False, input=json.dumps(obj))

        for obj in NETWORKING:
            done = apply(obj)
            assert done.returncode == 0, (obj["kind"], done.stderr)
        route = json.loads(kubectl("get", "httproute", "bookinfo", "-n", ns, "-o",
                                   "json").stdout)
        # the schema's defaults, as the real server stores them
        assert route["spec"]["parentRefs"][0]["group"] == "gateway.networking.k8s.io"
        assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"
        assert route["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1
        vs, dr, _, gw, hr, _ = NETWORKING
        misspelt = apply(vs, htpp=[])
        assert 'unknown field "spec.htpp"' in misspelt.stderr
        lb = apply(dr, trafficPolicy={"loadBalancer": {"simple": "FASTEST"}})
        assert 'Unsupported value: "FASTEST"' in lb.stderr
        # a Gateway API Gateway must listen (v1), and a Service backend needs a port
        # (the HTTPRoute CRD's CEL rule)
        assert "spec.listeners: Required value" in apply(gw, listeners=None).stderr
        portless = apply(hr, rules=[{"backendRefs": [{"name": "productpage"}]}])
        assert "Must have port for Service reference" in portless.stderr, portless.stderr
        too_high = apply(gw, listeners=[{"name": "http", "port": 99999, "protocol": "HTTP"}])
        assert "spec.listeners[0].port" in too_high.stderr, too_high.stderr
