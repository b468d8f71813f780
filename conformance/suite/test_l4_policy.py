"""L4 AuthorizationPolicy at the destination's ztunnel: one case per branch of Istio's
semantics, each with an outcome that differs from its neighbours'.

Where the rules come from (istio/istio and istio/ztunnel):

* conversion, ``pilot/pkg/serviceregistry/ambient/authorization.go``:
  ``convertAuthorizationPolicy`` (``targetRefs`` policies are not sent to ztunnel; no
  selector is NAMESPACE scope, GLOBAL in the root namespace), ``handleRule`` (one
  clause for ``to``, one for ``from``, one per ``when``; an ALLOW rule with HTTP
  attributes is dropped; a DENY keeps the rest, and what is left of an HTTP-only
  operation or ``when`` is an empty Match that never matches), ``stringToMatch`` (``*``
  presence, ``*x`` suffix, ``x*`` prefix, anything else exact, a ``*`` inside too),
  ``stringToServiceAccountMatch`` (a bare name is in the *policy's* namespace),
  ``stringToIP`` (a bare address is a /32);
* attachment, ``pilot/pkg/serviceregistry/ambient/workloads.go`` ``buildWorkloadPolicies``
  (selector policies of the workload's own namespace or of the root namespace) and
  ztunnel ``src/state.rs`` ``assert_rbac`` (plus the namespace's and the global ones;
  a matching DENY denies, no ALLOW allows, a matching ALLOW allows, else deny);
* matching, ztunnel ``src/rbac.rs``: ``Authorization::matches`` (no rules match
  nothing; rules ORed, clauses ANDed, a clause's matches ORed, an empty Match skipped,
  an empty clause true), ``matches_internal`` (field types ANDed, values ORed, a
  ``not*`` field holds when none of its values match), ``StringMatch::matches``,
  ``matches_principal`` and ``ServiceAccountMatch::matches`` (a source without identity
  matches no principal, namespace or service account);
* the API, istio/api ``security/v1beta1/authorization_policy.proto`` (rules unset: the
  policy matches nothing; a rule ``{}`` matches everything).

The clients are built so that the branches disagree.  Namespace A holds ``sleep``,
``notsleep``, ``sleepy`` and ``asleep`` (exact, prefix, suffix and substring matches of
``.../sa/sleep`` each pick a different set); namespace B's name is A's plus a suffix,
so a namespace prefix match takes B in and an exact one does not, and B has its own
``sleep`` (the same service-account name in another namespace); namespace C is not
in the mesh, so its ``sleep`` sends plaintext and has no identity at all.  ``sleepy``,
``asleep`` and B's ``sleep`` run on one node: one ztunnel holds all their
certificates, and the destination must still tell each by its own identity (a ztunnel
presenting a neighbour's certificate, or one certificate for the whole node, fails
the cases that separate them).

Cases run in rounds: a round applies several cases at once, each on a workload of its
own (``productpage``, ``details``, ``ratings``, ``reviews``; selector policies, so
every other workload is a bystander), and every client requests every workload of the
round with one curl.  Knowing when a round is in force without sleeping: a *canary*
policy per workload (DENY the ``canary`` client) is applied after the round's
policies; once the canary is refused everywhere the round's policies are in force
too.  Assumed, and only this: AuthorizationPolicies for one workload take effect in
the order written (``conformance/apps.py``, ``CANARY``); every object a round applies
is an AuthorizationPolicy, so it holds for cases whose effect is "nothing changes"
(a ``targetRefs`` policy ztunnel never gets, a rule that matches nobody).  Both the
reference and Istio's istiod and ztunnel pass with it.  An ALLOW policy refuses the
canary as well, so a case puts at most one ALLOW that does not admit the canary, as
its last object.
Removal works the same way in reverse.  Scope cases (which workloads a policy
reaches: selectors, namespace-wide, the root namespace) share one round whose policies
each name a different client, so their effects cannot mix.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.apps import (
    CANARY,
    AppNamespace,
    bookinfo_objects,
    canary_client,
    client_workload,
    principal,
)
from conformance.curl import CURL_EXIT_RECV_ERROR, Outcome
from conformance.waiting import eventually
from profiles import features as F

pytestmark = [pytest.mark.feature(F.L4_POLICY), pytest.mark.xdist_group("l4-policy")]

REFUSED = frozenset({CURL_EXIT_RECV_ERROR, 52})
"""A connection ztunnel refuses is reset (curl 56), or closed before any reply (52)."""

CLIENTS = ("sleep", "notsleep", "sleepy", "asleep", "b-sleep", "outsider")
"""Judged clients: A's four, B's ``sleep``, C's (out-of-mesh) ``sleep``."""
A_CLIENTS = frozenset({"sleep", "notsleep", "sleepy", "asleep"})
MESHED = A_CLIENTS | {"b-sleep"}
EVERYONE = frozenset(CLIENTS)
NOBODY: frozenset[str] = frozenset()

A_SLOTS = ("productpage", "details", "ratings", "reviews")
"""Workloads of A a case can take; selector policies, so each is the others' bystander."""
APP_OF = {"productpage": "productpage", "productpage-80": "productpage", "details": "details",
          "ratings": "ratings", "reviews": "reviews", "reviews-v1": "reviews",
          "reviews-v2": "reviews", "b-details": "details"}


# -- the clients and workloads ---------------------------------------------------------------

@dataclass
class World:
    a: AppNamespace
    b: AppNamespace
    c: AppNamespace
    root: str
    ip: dict[str, str]
    """Pod IPs of the clients, and of ``reviews-v1/v2/v3``."""

    def ns(self, dest: str) -> str:
        return self.b.name if dest.startswith("b-") else self.a.name

    def url(self, dest: str) -> str:
        if dest.startswith("reviews-"):
            return f"http://{self.ip[dest]}:9080/health"
        if dest == "productpage-80":
            return f"http://productpage-80.{self.a.name}/health"
        return f"http://{dest.removeprefix('b-')}.{self.ns(dest)}:9080/health"

    def canary_urls(self, dest: str) -> list[str]:
        """Where the canary must be refused for ``dest``'s workload to be in force: each
        pod of it (reviews has three, on any node)."""
        if APP_OF[dest] == "reviews":
            return [self.url(f"reviews-{v}") for v in ("v1", "v2", "v3")]
        return [self.url(dest)]

    def client(self, name: str) -> tuple[AppNamespace, str]:
        """A judged client's namespace and Deployment."""
        return {"b-sleep": (self.b, "sleep"), "outsider": (self.c, "sleep")}.get(name,
                                                                                (self.a, name))

    def p(self, name: str) -> str:
        """The principal of a meshed client."""
        ns, deploy = self.client(name)
        return principal(ns.name, deploy)


@pytest.fixture(scope="module")
def world(namespaces, adapter, cluster) -> World:
    # One node for sleepy, asleep and B's sleep: one ztunnel holds their certificates.
    node = sorted(cluster.kubectl("get", "nodes", "-o", "name").stdout.split())[0]
    node = node.removeprefix("node/")
    with ThreadPoolExecutor(2) as pool:
        outside = pool.submit(namespaces, "l4out", enroll=False, bookinfo=False, clients=False,
                              extra=client_workload("sleep"))
        a = namespaces("l4", extra=[*canary_client(), productpage_on_port_80(),
                                    *client_workload("sleepy", node=node),
                                    *client_workload("asleep", node=node)])
        # B's name starts with A's: AppNamespace names are "<prefix>-<random>".
        b = namespaces(a.name, bookinfo=False, clients=False,
                       extra=[*client_workload("sleep", node=node),
                              *bookinfo_objects("details", "bookinfo-details", "details-v1")])
        c = outside.result()
    assert b.name.startswith(a.name) and not a.name.endswith(b.name[len(a.name):])
    w = World(a, b, c, adapter.root_namespace(), {})
    for name in CLIENTS:
        ns, deploy = w.client(name)
        w.ip[name] = ns.pod(deploy)["status"]["podIP"]
    for v in ("v1", "v2", "v3"):
        [pod] = a.pods(f"app=reviews,version={v}")
        w.ip[f"reviews-{v}"] = pod["status"]["podIP"]
    # The canary must be answered before the first round, or a refusal for another
    # reason (a mesh still starting up) could pass for the first round's canary.
    urls = [u for d in (*A_SLOTS, "b-details") for u in w.canary_urls(d)]
    eventually(lambda: a.request_each(CANARY, urls),
               lambda seen: all(o.answered and o.status == 200 for o in seen),
               what="the canary reaches every workload before any policy")
    return w


def productpage_on_port_80() -> dict[str, Any]:
    """A second Service for productpage, port 80 to the pod's 9080: ztunnel sees the
    pod's port, so ``ports`` names 9080 whichever Service the client used."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "productpage-80"},
            "spec": {"ports": [{"port": 80, "targetPort": 9080, "name": "http"}],
                     "selector": {"app": "productpage"}}}


# -- building policies -----------------------------------------------------------------------

def authz(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def allow(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"action": "ALLOW", "rules": list(rules)}


def deny(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"action": "DENY", "rules": list(rules)}


def src(*sources: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``from`` with one source of ``fields``, or the given sources (ORed)."""
    return {"from": [{"source": s} for s in (sources or (fields,))]}


def op(**fields: Any) -> dict[str, Any]:
    return {"to": [{"operation": fields}]}


def when(*conditions: tuple[str, str, list[str]]) -> dict[str, Any]:
    """``when`` from (key, "values" | "notValues", values) triples."""
    return {"when": [{"key": key, kind: values} for key, kind, values in conditions]}


@dataclass(frozen=True)
class Slot:
    """Where a matrix case is placed: a workload of A (or B's details) and its selector."""

    world: World
    dest: str

    def policy(self, spec: dict[str, Any], part: str = "") -> dict[str, Any]:
        spec = dict(spec)
        if "targetRefs" not in spec:
            spec["selector"] = {"matchLabels": {"app": APP_OF[self.dest]}}
        return authz(self.world.ns(self.dest), f"case-{APP_OF[self.dest]}{part}", spec)


PolicyBuilder = Callable[[World, Slot], list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """One branch: the policies (built for the slot the case lands on) and the clients
    that get through there (all of CLIENTS are judged)."""

    name: str
    build: PolicyBuilder
    reach: frozenset[str]
    slot: str | None = None
    """A fixed slot, or None: any of A_SLOTS."""
    via: str | None = None
    """The destination requested, when it is not the slot itself (``productpage-80``)."""


def one(spec: Callable[[World], dict[str, Any]]) -> PolicyBuilder:
    return lambda w, s: [s.policy(spec(w))]


def _matrix() -> list[Case]:
    cases: list[Case] = []

    def case(name: str, spec: Callable[[World], dict[str, Any]], reach: frozenset[str] | set[str],
             **kw: Any) -> None:
        cases.append(Case(name, one(spec), frozenset(reach), **kw))

    # Principals: stringToMatch + StringMatch::matches on "cluster.local/ns/<ns>/sa/<sa>".
    case("principal-exact", lambda w: allow(src(principals=[w.p("sleep")])), {"sleep"})
    case("principal-prefix", lambda w: allow(src(principals=[
        f"cluster.local/ns/{w.a.name}/sa/slee*"])), {"sleep", "sleepy"})
    case("principal-suffix", lambda w: allow(src(principals=["*/sa/sleep"])),
         {"sleep", "b-sleep"})
    case("principal-suffix-is-not-segment-bound", lambda w: allow(src(principals=["*sleep"])),
         {"sleep", "notsleep", "asleep", "b-sleep"})
    case("principal-prefix-namespace-segment", lambda w: allow(src(principals=[
        f"cluster.local/ns/{w.a.name}/*"])), A_CLIENTS)
    case("principal-prefix-is-not-segment-bound", lambda w: allow(src(principals=[
        f"cluster.local/ns/{w.a.name}*"])), MESHED)
    case("principal-presence-needs-an-identity", lambda w: allow(src(principals=["*"])),
         MESHED)
    case("principal-inner-wildcard-is-literal", lambda w: allow(src(principals=[
        f"cluster.local/ns/{w.a.name}/sa/*sleep"])), NOBODY)
    case("deny-principal", lambda w: deny(src(principals=[w.p("notsleep")])),
         EVERYONE - {"notsleep"})
    case("deny-not-principals", lambda w: deny(src(notPrincipals=[w.p("sleep")])), {"sleep"})
    # PeerAuthentication STRICT's conversion (architecture/ambient/peer-authentication.md).
    case("deny-not-principals-presence-refuses-plaintext",
         lambda w: deny(src(notPrincipals=["*"])), MESHED)
    # Namespaces: the same StringMatch on the identity's namespace.
    case("namespace-exact", lambda w: allow(src(namespaces=[w.a.name])), A_CLIENTS)
    case("namespace-prefix", lambda w: allow(src(namespaces=[f"{w.a.name}*"])), MESHED)
    case("namespace-suffix", lambda w: allow(src(namespaces=[
        "*" + w.b.name[len(w.a.name):]])), {"b-sleep"})
    case("deny-not-namespaces", lambda w: deny(src(notNamespaces=[w.a.name])), A_CLIENTS)
    # Service accounts: namespace and name, both exact.
    case("service-account-names-its-namespace", lambda w: allow(src(serviceAccounts=[
        f"{w.a.name}/sleep"])), {"sleep"})
    case("service-account-bare-name-is-in-the-policys-namespace",
         lambda w: allow(src(serviceAccounts=["sleep"])), {"b-sleep"}, slot="b-details")
    case("deny-not-service-accounts", lambda w: deny(src(notServiceAccounts=[
        f"{w.b.name}/sleep"])), {"b-sleep"})
    # Source addresses: no identity needed.
    case("ip-block-bare-address", lambda w: allow(src(ipBlocks=[w.ip["sleep"]])), {"sleep"})
    case("ip-block-admits-plaintext", lambda w: allow(src(ipBlocks=[f"{w.ip['outsider']}/32"])),
         {"outsider"})
    case("deny-not-ip-blocks", lambda w: deny(src(notIpBlocks=[f"{w.ip['sleep']}/32"])),
         {"sleep"})
    # Ports: the connection's destination port, i.e. the pod's.
    case("port", lambda w: allow(op(ports=["9080"])), EVERYONE)
    case("other-port", lambda w: allow(op(ports=["9999"])), NOBODY)
    case("port-is-the-pods-not-the-services", lambda w: allow(op(ports=["80"])), NOBODY,
         slot="productpage", via="productpage-80")
    case("port-through-another-service-port", lambda w: allow(op(ports=["9080"])), EVERYONE,
         slot="productpage", via="productpage-80")
    case("deny-port", lambda w: deny(op(ports=["9080"])), NOBODY)
    case("allow-not-ports", lambda w: allow(op(notPorts=["9080"])), NOBODY)
    case("deny-not-ports", lambda w: deny(op(notPorts=["9999"])), NOBODY)
    # How fields, sources, rules and conditions combine.
    case("fields-of-a-source-are-anded", lambda w: allow(src(principals=["*/sa/sleep"],
                                                             namespaces=[w.b.name])),
         {"b-sleep"})
    case("sources-are-ored", lambda w: allow(src({"principals": [w.p("sleepy")]},
                                                 {"namespaces": [w.b.name]})),
         {"sleepy", "b-sleep"})
    case("values-are-ored", lambda w: allow(src(principals=[w.p("sleep"), w.p("asleep")])),
         {"sleep", "asleep"})
    case("positive-and-not-fields-are-anded", lambda w: allow(src(
        namespaces=[w.a.name], notPrincipals=[w.p("sleep")])), {"notsleep", "sleepy", "asleep"})
    case("from-and-to-are-anded-rules-ored", lambda w: allow(
        {**src(principals=[w.p("sleep")]), **op(ports=["9999"])},
        {**src(principals=[w.p("asleep")]), **op(ports=["9080"])}), {"asleep"})
    case("when-conditions-are-anded", lambda w: allow(when(
        ("source.namespace", "values", [w.a.name]),
        ("source.principal", "values", ["*sleep"]))), {"sleep", "notsleep", "asleep"})
    case("when-not-values", lambda w: allow(when(
        ("source.principal", "notValues", [w.p("sleep")]))), EVERYONE - {"sleep"})
    # Rules absent, empty, present.
    case("allow-nothing", lambda w: {}, NOBODY)
    case("allow-empty-rule-allows-all", lambda w: allow({}), EVERYONE)
    case("deny-empty-rule-denies-all", lambda w: deny({}), NOBODY)
    case("deny-without-rules-has-no-effect", lambda w: {"action": "DENY"}, EVERYONE)
    # HTTP attributes ztunnel cannot see.
    case("allow-with-l7-fields-allows-nothing", lambda w: allow(
        {**src(principals=[w.p("sleep")]), **op(methods=["GET"])}), NOBODY)
    case("allow-drops-only-the-http-rule", lambda w: allow(
        {**src(principals=[w.p("sleep")]), **op(methods=["GET"])},
        src(principals=[w.p("sleepy")])), {"sleepy"})
    case("allow-http-when-key-drops-the-rule", lambda w: allow(
        {**src(principals=[w.p("sleep")]), **when(("request.headers[x-test]", "values", ["1"]))},
        src(principals=[w.p("asleep")])), {"asleep"})
    case("deny-http-only-operation-disarms-the-rule", lambda w: deny(
        {**src(principals=[w.p("notsleep")]), **op(methods=["GET"])}), EVERYONE)
    case("deny-mixed-l7-gets-broader", lambda w: deny(
        {**src(principals=[w.p("notsleep")]), **op(ports=["9080"], methods=["POST"])}),
         EVERYONE - {"notsleep"})
    case("deny-http-when-disarms-the-rule", lambda w: deny(
        {**src(principals=[w.p("asleep")]),
         **when(("request.headers[x-test]", "values", ["1"]))}), EVERYONE)
    case("deny-mixed-source-gets-broader", lambda w: deny(src(
        principals=[w.p("sleepy")], requestPrincipals=["*"])), EVERYONE - {"sleepy"})
    case("target-refs-not-enforced-by-ztunnel", lambda w: {
        "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
        **deny(src(principals=[w.p("sleep")]))}, EVERYONE, slot="productpage")

    # Several policies on one workload: evaluation order (state.rs assert_rbac).  The
    # first ALLOW admits the canary, so the canary cannot be refused before both apply.
    cases.append(Case("deny-wins-over-allow", lambda w, s: [
        s.policy(deny(src(principals=[w.p("notsleep")])), "-deny"),
        s.policy(allow(src(namespaces=[w.a.name])), "-allow")],
        frozenset({"sleep", "sleepy", "asleep"})))
    cases.append(Case("allow-policies-are-ored", lambda w, s: [
        s.policy(allow(src(principals=[w.p("sleep"), principal(w.a.name, CANARY)])), "-1"),
        s.policy(allow(src(principals=[w.p("sleepy")])), "-2")],
        frozenset({"sleep", "sleepy"})))
    return cases


MATRIX = _matrix()


# -- scope: which workloads a policy reaches ---------------------------------------------------

@dataclass(frozen=True)
class ScopeCase:
    name: str
    build: Callable[[World], dict[str, Any]]
    expect: dict[tuple[str, str], bool]
    """(client, destination) -> gets through; each case names a client of its own."""


def _scope() -> list[ScopeCase]:
    everywhere = ("productpage", "details", "ratings", "reviews-v1", "reviews-v2", "b-details")
    return [
        ScopeCase("selector-needs-every-label", lambda w: authz(w.a.name, "scope-reviews-v1", {
            "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
            **deny(src(principals=[w.p("sleepy")]))}),
            {("sleepy", "reviews-v1"): False, ("sleepy", "reviews-v2"): True}),
        ScopeCase("selector-spares-the-other-workloads", lambda w: authz(
            w.a.name, "scope-ratings", {"selector": {"matchLabels": {"app": "ratings"}},
                                        **deny(src(principals=[w.p("b-sleep")]))}),
            {("b-sleep", d): d != "ratings" for d in everywhere}),
        ScopeCase("namespace-wide-without-selector", lambda w: authz(
            w.a.name, "scope-namespace", deny(src(principals=[w.p("notsleep")]))),
            {("notsleep", d): d == "b-details" for d in everywhere}),
        ScopeCase("namespace-wide-stays-in-its-namespace", lambda w: authz(
            w.b.name, "scope-namespace", deny(src(ipBlocks=[f"{w.ip['outsider']}/32"]))),
            {("outsider", d): d != "b-details" for d in everywhere}),
        ScopeCase("selector-selects-only-in-its-namespace", lambda w: authz(
            w.b.name, "scope-productpage", {"selector": {"matchLabels": {"app": "productpage"}},
                                            **deny(src(principals=[w.p("sleepy")]))}),
            {("sleepy", "productpage"): True}),
        ScopeCase("root-namespace-policy-is-mesh-wide", lambda w: authz(
            w.root, f"conformance-{w.a.name}-mesh", deny(src(principals=[w.p("asleep")]))),
            {("asleep", d): False for d in everywhere}),
        ScopeCase("root-namespace-selector-in-every-namespace", lambda w: authz(
            w.root, f"conformance-{w.a.name}-details", {
                "selector": {"matchLabels": {"app": "details"}},
                **deny(src(principals=[w.p("sleep")]))}),
            {("sleep", d): d not in ("details", "b-details") for d in everywhere}),
    ]


SCOPE = _scope()


def _check_scope_cases_are_independent() -> None:
    claimed: dict[tuple[str, str], str] = {}
    for case in SCOPE:
        for pair in case.expect:
            assert pair not in claimed, f"{case.name} and {claimed[pair]} both judge {pair}"
            claimed[pair] = case.name


_check_scope_cases_are_independent()


# -- rounds ------------------------------------------------------------------------------------

def _pack(cases: list[Case]) -> list[dict[str, Case]]:
    """Matrix cases into rounds of one case per slot: those with a fixed slot first,
    then the others in declaration order."""
    rounds: list[dict[str, Case]] = []
    for case in sorted(cases, key=lambda c: c.slot is None):
        for slots in rounds:
            free = [case.slot] if case.slot else [s for s in A_SLOTS if s not in slots]
            if free and free[0] not in slots:
                slots[free[0]] = case
                break
        else:
            rounds.append({case.slot or A_SLOTS[0]: case})
    return rounds


ROUNDS = _pack(MATRIX)
ROUND_OF = {case.name: i for i, slots in enumerate(ROUNDS) for case in slots.values()}
SCOPE_ROUND = len(ROUNDS)


@dataclass
class Round:
    """What one round asks for: objects in apply order, and destinations to observe."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    dests: list[str] = field(default_factory=list)


def _round(w: World, index: int) -> Round:
    r = Round()
    if index == SCOPE_ROUND:
        r.objects = [case.build(w) for case in SCOPE]
        r.dests = sorted({d for case in SCOPE for _, d in case.expect})
        return r
    for slot, case in ROUNDS[index].items():
        r.objects += case.build(w, Slot(w, slot))
        r.dests.append(case.via or slot)
    return r


def canary_policies(w: World, dests: list[str]) -> list[dict[str, Any]]:
    workloads = sorted({(w.ns(d), APP_OF[d]) for d in dests})
    return [authz(ns, f"zz-canary-{app}", {
        "selector": {"matchLabels": {"app": app}},
        **deny(src(principals=[principal(w.a.name, CANARY)]))}) for ns, app in workloads]


class Rounds:
    """Runs each round once, on first use, and keeps what every client saw (or why the
    round could not be observed)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: dict[int, dict[tuple[str, str], Outcome] | Exception] = {}

    def observed(self, index: int) -> dict[tuple[str, str], Outcome]:
        if index not in self.seen:
            try:
                self.seen[index] = self._run(index)
            except Exception as exc:  # every case of the round reports it
                self.seen[index] = exc
        result = self.seen[index]
        if isinstance(result, Exception):
            raise AssertionError(f"round {index} could not be observed: {result}") from result
        return result

    def _run(self, index: int) -> dict[tuple[str, str], Outcome]:
        w = self.world
        r = _round(w, index)
        canaries = canary_policies(w, r.dests)
        canary_urls = [u for d in dict.fromkeys(r.dests) for u in w.canary_urls(d)]
        cluster = w.a.cluster
        # Every canary here is enforced by ztunnels: once one never was, this round
        # fails at once with that reason instead of waiting out its own timeout.
        [point] = {w.a.canary_usable(c) for c in canaries}
        cluster.apply([*r.objects, *canaries])
        try:
            w.a.await_canary(point, lambda: w.a.request_each(CANARY, canary_urls),
                             lambda seen: all(o.exit_code in REFUSED for o in seen),
                             f"the canary is refused at {', '.join(dict.fromkeys(r.dests))}: "
                             "the round's policies are in force", "never enforced")
            urls = [w.url(d) for d in r.dests]

            def look(client: str) -> list[Outcome]:
                ns, deploy = w.client(client)
                return ns.request_each(deploy, urls)

            with ThreadPoolExecutor(len(CLIENTS)) as pool:
                seen = dict(zip(CLIENTS, pool.map(look, CLIENTS), strict=True))
            return {(c, d): seen[c][i] for c in CLIENTS for i, d in enumerate(r.dests)}
        finally:
            cluster.delete([*r.objects, *canaries])
            w.a.await_canary(point, lambda: w.a.request_each(CANARY, canary_urls),
                             lambda seen: all(o.answered and o.status == 200 for o in seen),
                             "the round's policies and the canary are gone", "never lifted")


@pytest.fixture(scope="module")
def rounds(world) -> Rounds:
    return Rounds(world)


def gets_through(client: str, dest: str, outcome: Outcome) -> bool:
    if outcome.answered and outcome.status == 200:
        return True
    if outcome.exit_code in REFUSED:
        return False
    raise AssertionError(f"{client} -> {dest}: neither an answer nor a refusal: {outcome}")


def _verdict(name: str, seen: dict[tuple[str, str], Outcome],
             expect: dict[tuple[str, str], bool]) -> None:
    got = {pair: gets_through(*pair, seen[pair]) for pair in expect}
    wrong = {f"{c} -> {d}": ("gets through" if got[(c, d)] else "refused")
             for (c, d), want in expect.items() if got[(c, d)] != want}
    assert not wrong, f"{name}: contrary to Istio's semantics, {wrong}"


@pytest.mark.parametrize("case", [c.name for c in MATRIX])
def test_l4_policy_matrix(rounds, case):
    [c] = [m for m in MATRIX if m.name == case]
    index = ROUND_OF[case]
    dest = next(c.via or slot for slot, m in ROUNDS[index].items() if m is c)
    seen = rounds.observed(index)
    _verdict(case, seen, {(client, dest): client in c.reach for client in CLIENTS})


@pytest.mark.parametrize("case", [c.name for c in SCOPE])
def test_l4_policy_scope(rounds, case):
    [c] = [s for s in SCOPE if s.name == case]
    _verdict(case, rounds.observed(SCOPE_ROUND), c.expect)
