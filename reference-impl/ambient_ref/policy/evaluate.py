"""ztunnel's authorization decision for one inbound connection (istio/ztunnel src/rbac.rs).

Which policies apply to the destination workload:

* GLOBAL ones (no selector, root namespace) apply everywhere;
* NAMESPACE ones apply to the workloads of their namespace;
* WORKLOAD_SELECTOR ones apply to workloads whose labels include the selector, in the
  policy's namespace, or in every namespace when the policy lives in the root namespace
  (istiod attaches root-namespace selector policies to workloads of all namespaces).

Then, in order: a matching DENY denies; with no ALLOW policy the connection is allowed;
a matching ALLOW allows; otherwise it is denied.  Dry-run policies are evaluated and
reported in ``Decision.dry_run`` but never change the outcome, nor count as "an ALLOW
policy exists".

Matching follows ztunnel's ``rbac.rs``: no rule matches nothing; rules are ORed,
clauses ANDed, a clause's matches ORed; an empty Match is skipped (matches nothing);
a clause without matches matches everything; within a Match, field types are ANDed,
values ORed, and each ``not_*`` field requires that none of its values match.

Identity: principals are compared with ``spiffe://`` stripped
(``cluster.local/ns/default/sa/sleep``); namespaces and service accounts come from the
``ns/<ns>/sa/<sa>`` part.  A source without identity (plaintext on 15006) fails every
positive principal, namespace and service-account condition, and passes every ``not_*``
one (none of its values can match).  That last part is how ztunnel denies plaintext
under STRICT mTLS: a DENY with ``not_principals: [presence]``.

This runs for every connection, so policies are compiled once: ``PolicyIndex`` buckets
them by scope and namespace and turns each Match into sets and tuples, and a rule that
can never fire is dropped at compile time.  Keep one index per policy snapshot and call
``PolicyIndex.authorize``; ``authorize`` with a plain list compiles on every call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..identity import Identity
from .common import ROOT_NAMESPACE
from .model import Authorization, IPNetwork, Match, MatchKind, Scope, StringMatch

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REASON_DENIED = "explicitly denied by: {policy}"
REASON_NO_ALLOW = "no allow policies exist"
REASON_ALLOWED = "allowed by: {policy}"
REASON_NONE_ALLOWED = "allow policies exist, but none allowed"


@dataclass(frozen=True, slots=True)
class Peer:
    """The source of a connection: its IP and, over HBONE, its verified identity.

    ``identity`` is the peer certificate's SPIFFE URI,
    ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``, or ``None`` for
    plaintext.  Any other shape raises ``ValueError``: ztunnel cannot parse it either
    (section 1, TLS), so such a peer never reaches authorization.
    """

    ip: IPAddress
    identity: str | None = None
    principal: str | None = field(init=False, default=None)
    namespace: str | None = field(init=False, default=None)
    service_account: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", ipaddress.ip_address(self.ip))
        if self.identity is None:
            return
        # The same reading as HBONE's of the certificate (IdentityError is a ValueError).
        identity = Identity.parse(self.identity)
        object.__setattr__(self, "principal", identity.principal)
        object.__setattr__(self, "namespace", identity.namespace)
        object.__setattr__(self, "service_account", identity.service_account)


@dataclass(frozen=True, slots=True)
class Connection:
    """What ztunnel knows of an inbound connection when it authorizes it."""

    source: Peer
    destination_ip: IPAddress
    destination_port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "destination_ip", ipaddress.ip_address(self.destination_ip))
        port = self.destination_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"not a port number: {port!r}")

    @classmethod
    def of(
        cls,
        source_ip: IPAddress | str,
        source_identity: str | None,
        destination_ip: IPAddress | str,
        destination_port: int,
    ) -> Connection:
        """Build from flat values: ``Connection.of("10.0.0.1", None, "10.0.0.2", 80)``."""
        return cls(Peer(source_ip, source_identity), destination_ip, destination_port)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, with ztunnel's log wording in ``reason``.

    ``policy`` is the ``namespace/name`` of the policy that decided (the matching DENY or
    ALLOW), ``None`` when no single policy did.  ``dry_run`` lists the dry-run policies
    that matched, as ``"<ACTION> <namespace/name>"``, in evaluation order.
    """

    allowed: bool
    reason: str
    policy: str | None = None
    dry_run: tuple[str, ...] = ()


class _Strings:
    """A compiled list of StringMatch: one set lookup and two str methods."""

    __slots__ = ("exact", "prefixes", "presence", "suffixes")

    def __init__(self, matches: Iterable[StringMatch]) -> None:
        matches = tuple(matches)
        self.exact = frozenset(m.value for m in matches if m.kind is MatchKind.EXACT)
        self.prefixes = tuple(m.value for m in matches if m.kind is MatchKind.PREFIX)
        self.suffixes = tuple(m.value for m in matches if m.kind is MatchKind.SUFFIX)
        self.presence = any(m.kind is MatchKind.PRESENCE for m in matches)

    def any(self, value: str | None) -> bool:
        if value is None:  # no identity: no principal or namespace condition holds
            return False
        return (
            (self.presence and value != "")
            or value in self.exact
            or (bool(self.prefixes) and value.startswith(self.prefixes))
            or (bool(self.suffixes) and value.endswith(self.suffixes))
        )


def _in(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip in net for net in networks)


class _CompiledMatch:
    """One non-empty Match; unset fields are ``None`` and cost nothing."""

    __slots__ = (
        "destination_ips",
        "destination_ports",
        "namespaces",
        "not_destination_ips",
        "not_destination_ports",
        "not_namespaces",
        "not_principals",
        "not_service_accounts",
        "not_source_ips",
        "principals",
        "service_accounts",
        "source_ips",
    )

    def __init__(self, m: Match) -> None:
        self.destination_ips = m.destination_ips or None
        self.not_destination_ips = m.not_destination_ips or None
        self.source_ips = m.source_ips or None
        self.not_source_ips = m.not_source_ips or None
        self.destination_ports = frozenset(m.destination_ports) or None
        self.not_destination_ports = frozenset(m.not_destination_ports) or None
        self.service_accounts = frozenset(m.service_accounts) or None
        self.not_service_accounts = frozenset(m.not_service_accounts) or None
        self.principals = _Strings(m.principals) if m.principals else None
        self.not_principals = _Strings(m.not_principals) if m.not_principals else None
        self.namespaces = _Strings(m.namespaces) if m.namespaces else None
        self.not_namespaces = _Strings(m.not_namespaces) if m.not_namespaces else None

    def matches(self, conn: Connection, account: tuple[str, str] | None) -> bool:
        src = conn.source
        # Cheap checks first; every field type must hold.
        if self.destination_ports is not None and conn.destination_port not in (
            self.destination_ports
        ):
            return False
        if self.not_destination_ports is not None and conn.destination_port in (
            self.not_destination_ports
        ):
            return False
        if self.principals is not None and not self.principals.any(src.principal):
            return False
        if self.not_principals is not None and self.not_principals.any(src.principal):
            return False
        if self.namespaces is not None and not self.namespaces.any(src.namespace):
            return False
        if self.not_namespaces is not None and self.not_namespaces.any(src.namespace):
            return False
        if self.service_accounts is not None and account not in self.service_accounts:
            return False
        if self.not_service_accounts is not None and account in self.not_service_accounts:
            return False
        if self.source_ips is not None and not _in(src.ip, self.source_ips):
            return False
        if self.not_source_ips is not None and _in(src.ip, self.not_source_ips):
            return False
        if self.destination_ips is not None and not _in(conn.destination_ip, self.destination_ips):
            return False
        return not (
            self.not_destination_ips is not None
            and _in(conn.destination_ip, self.not_destination_ips)
        )


class CompiledAuthorization:
    """An Authorization prepared for matching.

    ``rules`` keeps only rules that can fire; each is a tuple of clauses, each clause a
    tuple of compiled (non-empty) matches.  Clauses without matches (always true) are
    left out, and a rule with a clause made only of empty Matches (never true) is
    dropped, so the hot loop has no special cases.
    """

    __slots__ = ("authorization", "key", "rules")

    def __init__(self, authorization: Authorization) -> None:
        self.authorization = authorization
        self.key = authorization.key
        rules = []
        for rule in authorization.rules:
            clauses = []
            for clause in rule.clauses:
                if not clause.matches:
                    continue  # no match at all: always true
                compiled = tuple(_CompiledMatch(m) for m in clause.matches if not m.is_empty())
                if not compiled:
                    break  # only empty Matches: never true, nor is the rule
                clauses.append(compiled)
            else:
                rules.append(tuple(clauses))
        self.rules: tuple[tuple[tuple[_CompiledMatch, ...], ...], ...] = tuple(rules)

    def matches(self, conn: Connection) -> bool:
        src = conn.source
        account = (src.namespace, src.service_account) if src.service_account is not None else None
        return any(
            all(any(m.matches(conn, account) for m in clause) for clause in rule)
            for rule in self.rules
        )


class PolicyIndex:
    """Compiled policies, bucketed so a workload's applicable set is found by lookup."""

    def __init__(
        self, policies: Iterable[Authorization], root_namespace: str = ROOT_NAMESPACE
    ) -> None:
        self.root_namespace = root_namespace
        self._global: list[CompiledAuthorization] = []
        self._namespace: dict[str, list[CompiledAuthorization]] = {}
        self._selector: dict[str, list[CompiledAuthorization]] = {}
        for policy in policies:
            compiled = CompiledAuthorization(policy)
            if policy.scope is Scope.GLOBAL:
                self._global.append(compiled)
            elif policy.scope is Scope.NAMESPACE:
                self._namespace.setdefault(policy.namespace, []).append(compiled)
            else:
                self._selector.setdefault(policy.namespace, []).append(compiled)

    def applicable(
        self, workload_namespace: str, workload_labels: Mapping[str, str]
    ) -> list[CompiledAuthorization]:
        """The policies that apply to a workload, in ztunnel's order (namespace, global,
        selector)."""
        result = list(self._namespace.get(workload_namespace, ()))
        result.extend(self._global)
        selector_namespaces = [workload_namespace]
        if workload_namespace != self.root_namespace:
            selector_namespaces.append(self.root_namespace)
        for namespace in selector_namespaces:
            for policy in self._selector.get(namespace, ()):
                selector = policy.authorization.selector or {}
                if all(workload_labels.get(k) == v for k, v in selector.items()):
                    result.append(policy)
        return result

    def authorize(
        self, workload_namespace: str, workload_labels: Mapping[str, str], conn: Connection
    ) -> Decision:
        """Decide one connection to a workload (see the module docstring for the order)."""
        applicable = self.applicable(workload_namespace, workload_labels)
        return decide(
            ((p, p.authorization.action, p.authorization.dry_run) for p in applicable),
            lambda p: p.matches(conn),
        )


def decide(
    policies: Iterable[tuple[Any, str, bool]], matches: Callable[[Any], bool]
) -> Decision:
    """The decision over the applicable policies, shared by ztunnel (L4) and waypoints (L7).

    Each policy comes as ``(policy, action, dry_run)``, ``action`` being ``"ALLOW"`` or
    ``"DENY"``.  Dry-run policies are evaluated and listed in ``Decision.dry_run`` as
    ``"<ACTION> <namespace/name>"``, in order, but never decide, nor count as "an ALLOW
    policy exists"; the others are weighed by ``ordered_decision``.
    """
    deny: list[Any] = []
    allow: list[Any] = []
    dry_run: list[str] = []
    for policy, action, is_dry_run in policies:
        if is_dry_run:
            if matches(policy):
                dry_run.append(f"{action} {policy.key}")
        elif action == "DENY":
            deny.append(policy)
        else:
            allow.append(policy)
    return ordered_decision(deny, allow, tuple(dry_run), matches)


def ordered_decision(deny: Sequence[Any], allow: Sequence[Any], dry_run: tuple[str, ...],
                     matches: Callable[[Any], bool]) -> Decision:
    """Istio's order, shared by ztunnel (L4) and waypoints (L7): a matching DENY denies;
    with no ALLOW policy everything is allowed; a matching ALLOW allows; else deny.
    Each policy has a ``key``; ``matches(policy)`` says whether it matches the traffic."""
    for policy in deny:
        if matches(policy):
            return Decision(False, REASON_DENIED.format(policy=policy.key), policy.key, dry_run)
    if not allow:
        return Decision(True, REASON_NO_ALLOW, None, dry_run)
    for policy in allow:
        if matches(policy):
            return Decision(True, REASON_ALLOWED.format(policy=policy.key), policy.key, dry_run)
    return Decision(False, REASON_NONE_ALLOWED, None, dry_run)


def authorize(
    policies: PolicyIndex | Iterable[Authorization],
    workload_namespace: str,
    workload_labels: Mapping[str, str],
    conn: Connection,
    *,
    root_namespace: str = ROOT_NAMESPACE,
) -> Decision:
    """Whether ztunnel lets ``conn`` reach a workload of ``workload_namespace`` with
    ``workload_labels``.

    ``policies`` is every Authorization the ztunnel holds (the applicable ones are picked
    here), or a ``PolicyIndex`` built from them, which is the fast path.
    ``root_namespace`` only matters for plain iterables: it extends root-namespace
    selector policies to all namespaces.
    """
    index = policies if isinstance(policies, PolicyIndex) else PolicyIndex(policies, root_namespace)
    return index.authorize(workload_namespace, workload_labels, conn)
