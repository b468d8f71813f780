"""L4 AuthorizationPolicy at the destination's ztunnel, as a matrix of cases.

Each case applies policies for productpage and checks which of sleep and notsleep
get through (curl exit 56 when ztunnel resets the connection).  Semantics follow
Istio's conversion for ztunnel (reference/istio-ambient.md, section 4): an ALLOW
rule with L7 fields is dropped (so an L7-only ALLOW allows nothing), a DENY loses
its L7 fields (an L7-only DENY has no effect, a mixed one gets broader), and
``targetRefs`` policies never reach ztunnel.

Knowing when a policy is in force without sleeping: after the case's policies, a
*canary* policy for the same destination (DENY the ``canary`` client) is applied;
configuration is applied in order, so once the canary is denied the case's policies
are in force too, whether or not they change anything visible.  Removal works the
same way in reverse.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import features as F
from conformance.apps import CANARY, AppNamespace, canary_client, principal

pytestmark = [pytest.mark.feature(F.L4_POLICY), pytest.mark.xdist_group("l4-policy")]

URL = "http://productpage:9080/"
def policy(ns: str, name: str, spec: dict[str, Any], *, selector: bool = True) -> dict[str, Any]:
    spec = dict(spec)
    if selector and "targetRefs" not in spec:
        spec["selector"] = {"matchLabels": {"app": "productpage"}}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def canary_policy(ns: str) -> dict[str, Any]:
    return policy(ns, "zz-canary", {"action": "DENY", "rules": [
        {"from": [{"source": {"principals": [principal(ns, CANARY)]}}]}]})


@pytest.fixture(scope="module")
def apps(namespaces) -> AppNamespace:
    return namespaces("l4", extra=canary_client())


def reaches(ns: AppNamespace, client: str) -> bool:
    r = ns.request(client, URL)
    if r.exit_code not in (0, 56):
        raise AssertionError(f"{client}: neither an answer nor a reset: {r}")
    return r.exit_code == 0 and r.status == 200


def in_force(ns: AppNamespace, objects: list[dict[str, Any]]) -> None:
    ns.apply_in_force(objects, canary_policy(ns.name), URL, lambda r: r.exit_code == 56)


def removed(ns: AppNamespace, objects: list[dict[str, Any]]) -> None:
    ns.delete_in_force(objects, canary_policy(ns.name), URL, lambda r: r.exit_code == 0)


def _cases(ns: str, sleep_ip: str) -> dict[str, tuple[list[dict[str, Any]], bool, bool]]:
    """name -> (policies, sleep gets through, notsleep gets through)"""
    def allow(*rules: dict[str, Any]) -> dict[str, Any]:
        return {"action": "ALLOW", "rules": list(rules)}

    def deny(*rules: dict[str, Any]) -> dict[str, Any]:
        return {"action": "DENY", "rules": list(rules)}

    def src(**kw: Any) -> dict[str, Any]:
        return {"from": [{"source": kw}]}

    def op(**kw: Any) -> dict[str, Any]:
        return {"to": [{"operation": kw}]}

    sleep, notsleep = principal(ns, "sleep"), principal(ns, "notsleep")
    one = {
        "allow-principal-exact": (allow(src(principals=[sleep])), True, False),
        "allow-principal-suffix-wildcard": (allow(src(principals=["*/sa/sleep"])), True, False),
        "allow-principal-prefix-wildcard": (allow(src(principals=[f"cluster.local/ns/{ns}/*"])),
                                            True, True),
        "deny-principal": (deny(src(principals=[notsleep])), True, False),
        "deny-not-principals": (deny(src(notPrincipals=[sleep])), True, False),
        "allow-namespace": (allow(src(namespaces=[ns])), True, True),
        "allow-other-namespace": (allow(src(namespaces=["elsewhere"])), False, False),
        "deny-not-namespaces": (deny(src(notNamespaces=["elsewhere"])), False, False),
        "allow-service-account": (allow(src(serviceAccounts=[f"{ns}/sleep"])), True, False),
        "allow-ip-block": (allow(src(ipBlocks=[f"{sleep_ip}/32"])), True, False),
        "deny-not-ip-blocks": (deny(src(notIpBlocks=[f"{sleep_ip}/32"])), True, False),
        "allow-port": (allow(op(ports=["9080"])), True, True),
        "allow-other-port": (allow(op(ports=["9999"])), False, False),
        "deny-port": (deny(op(ports=["9080"])), False, False),
        "allow-not-ports": (allow(op(notPorts=["9080"])), False, False),
        "allow-nothing": ({}, False, False),
        "allow-with-l7-fields-allows-nothing": (allow({**src(principals=[sleep]),
                                                       **op(methods=["GET"])}), False, False),
        "deny-l7-only-has-no-effect": (deny(op(methods=["GET"])), True, True),
        # methods are dropped from the operation, its port kept: notsleep denied on 9080
        "deny-mixed-l7-gets-broader": (deny({**src(principals=[notsleep]),
                                             **op(ports=["9080"], methods=["POST"])}),
                                       True, False),
        "target-refs-not-enforced-by-ztunnel": (
            {"action": "DENY", "targetRefs": [{"kind": "Service", "group": "",
                                               "name": "productpage"}],
             "rules": [src(principals=[sleep])]}, True, True),
    }
    cases = {name: ([policy(ns, "case", spec)], s, n) for name, (spec, s, n) in one.items()}
    cases["deny-wins-over-allow"] = ([policy(ns, "case-allow", allow(src(namespaces=[ns]))),
                                      policy(ns, "case-deny", deny(src(principals=[notsleep])))],
                                     True, False)
    return cases


CASE_NAMES = list(_cases("ns", "198.18.0.1"))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_l4_policy_matrix(apps, case):
    sleep_ip = apps.pod("sleep")["status"]["podIP"]
    objects, sleep_ok, notsleep_ok = _cases(apps.name, sleep_ip)[case]
    in_force(apps, objects)
    try:
        seen = {"sleep": reaches(apps, "sleep"), "notsleep": reaches(apps, "notsleep")}
        assert seen == {"sleep": sleep_ok, "notsleep": notsleep_ok}, \
            f"{case}: expected sleep {'allowed' if sleep_ok else 'reset'}, notsleep " \
            f"{'allowed' if notsleep_ok else 'reset'}"
    finally:
        removed(apps, objects)
