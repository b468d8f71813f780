"""The policy model ztunnel enforces: the ``istio.security.Authorization`` resource.

istiod turns each Kubernetes AuthorizationPolicy into one of these and streams it to
every ztunnel (istio/ztunnel proto/authorization.proto, ``Authorization``).  The nesting is the one
ztunnel's proto uses:

    Authorization -> rules (ORed) -> clauses (ANDed) -> matches (ORed) -> Match fields

istiod's own proto calls the same levels ``groups``, ``rules`` and ``matches``; the two
are wire-compatible, and this module uses ztunnel's names throughout.

Everything here is frozen and made of tuples, so a policy can be shared between
connections and threads without copying.  ``to_dict``/``from_dict`` give the JSON form
the reference control plane sends ztunnels: camelCase like the proto's JSON mapping,
empty fields omitted, keys in a fixed order, so the same policy always serialises to the
same text (the xDS layer compares resources by their serialised form).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PLAIN_PREFIX_LEN = re.compile(r"[0-9]{1,3}")


class Scope(StrEnum):
    """Which workloads a policy applies to (istio/ztunnel src/state.rs ``assert_rbac``,
    evaluation order).

    GLOBAL: every workload in the mesh (a policy without selector in the root namespace).
    NAMESPACE: every workload of the policy's namespace (no selector).
    WORKLOAD_SELECTOR: workloads whose labels include the selector, in the policy's
    namespace, or in every namespace when the policy lives in the root namespace.
    """

    GLOBAL = "GLOBAL"
    NAMESPACE = "NAMESPACE"
    WORKLOAD_SELECTOR = "WORKLOAD_SELECTOR"


class Action(StrEnum):
    """ztunnel only knows ALLOW and DENY; istiod rejects AUDIT and CUSTOM (section 4)."""

    ALLOW = "ALLOW"
    DENY = "DENY"


class MatchKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    PRESENCE = "presence"


@dataclass(frozen=True, slots=True)
class StringMatch:
    """One value of a principal or namespace condition.

    Istio writes these as ``abc`` (exact), ``abc*`` (prefix), ``*abc`` (suffix) and
    ``*`` (presence: any non-empty value) (istio/api
    security/v1beta1/authorization_policy.proto, string matching).  The proto keeps the
    four kinds apart; ``parse`` and ``str()`` convert between the two.
    """

    kind: MatchKind
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MatchKind(self.kind))
        if not isinstance(self.value, str):
            raise TypeError(f"StringMatch value must be a string, not {self.value!r}")
        if self.kind is MatchKind.PRESENCE and self.value:
            raise ValueError("a presence match carries no value")

    @classmethod
    def exact(cls, value: str) -> StringMatch:
        return cls(MatchKind.EXACT, value)

    @classmethod
    def prefix(cls, value: str) -> StringMatch:
        return cls(MatchKind.PREFIX, value)

    @classmethod
    def suffix(cls, value: str) -> StringMatch:
        return cls(MatchKind.SUFFIX, value)

    @classmethod
    def presence(cls) -> StringMatch:
        return cls(MatchKind.PRESENCE)

    @classmethod
    def parse(cls, pattern: str) -> StringMatch:
        """Istio's string syntax to a match; raises ``ValueError`` on anything else.

        istiod itself turns ``a*b`` into an exact match that can never equal a real
        identity; the reference refuses it instead, so ``convert`` can report the field
        and fail closed rather than quietly carry a condition that never fires.
        """
        if not isinstance(pattern, str):
            raise ValueError(f"expected a string, found {pattern!r}")
        if pattern == "":
            raise ValueError("empty value not allowed")
        if pattern == "*":
            return cls.presence()
        if pattern.startswith("*"):
            match = cls.suffix(pattern[1:])
        elif pattern.endswith("*"):
            match = cls.prefix(pattern[:-1])
        else:
            match = cls.exact(pattern)
        if "*" in match.value:
            raise ValueError(
                f"{pattern!r}: '*' is only allowed alone, as a prefix (*abc) or as a suffix (abc*)"
            )
        return match

    def matches(self, candidate: str) -> bool:
        """Whether ``candidate`` satisfies this match (presence: non-empty)."""
        if self.kind is MatchKind.EXACT:
            return candidate == self.value
        if self.kind is MatchKind.PREFIX:
            return candidate.startswith(self.value)
        if self.kind is MatchKind.SUFFIX:
            return candidate.endswith(self.value)
        return candidate != ""

    def __str__(self) -> str:
        if self.kind is MatchKind.PRESENCE:
            return "*"
        if self.kind is MatchKind.PREFIX:
            return f"{self.value}*"
        if self.kind is MatchKind.SUFFIX:
            return f"*{self.value}"
        return self.value

    def to_dict(self) -> dict[str, Any]:
        # The proto's oneof: exactly one key.  Presence is an empty message.
        return {str(self.kind): {} if self.kind is MatchKind.PRESENCE else self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StringMatch:
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ValueError(f"a StringMatch has exactly one key, found {data!r}")
        ((key, value),) = data.items()
        try:
            kind = MatchKind(key)
        except ValueError:
            raise ValueError(f"unknown StringMatch kind {key!r}") from None
        if kind is MatchKind.PRESENCE:
            if value not in ({}, None):
                raise ValueError(f"presence takes no value, found {value!r}")
            return cls.presence()
        if not isinstance(value, str):
            raise ValueError(f"StringMatch {key} must be a string, found {value!r}")
        return cls(kind, value)


def parse_network(value: Any) -> IPNetwork:
    """A CIDR (or a bare address, meaning a single host) as a network object."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str) or value == "" or "%" in value:
        raise ValueError(f"not an IP address or CIDR: {value!r}")
    _address, slash, length = value.partition("/")
    # Only "<address>/<bits>": Python would also take a netmask after the slash, which
    # Istio (Go's netip.ParsePrefix) rejects.
    if slash and not _PLAIN_PREFIX_LEN.fullmatch(length):
        raise ValueError(f"not an IP address or CIDR: {value!r}")
    try:
        # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as it does for istiod and ztunnel.
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {value!r}") from None


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"not a port number (0-65535): {value!r}")
    return value


def _service_account(value: Any) -> tuple[str, str]:
    if isinstance(value, Mapping):
        value = (value.get("namespace"), value.get("serviceAccount"))
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(part, str) and part for part in value)
    ):
        raise ValueError(f"a service account is a (namespace, name) pair, found {value!r}")
    return (value[0], value[1])


def _string_match(value: Any) -> StringMatch:
    if isinstance(value, StringMatch):
        return value
    if isinstance(value, Mapping):
        return StringMatch.from_dict(value)
    raise ValueError(f"expected a StringMatch, found {value!r}")


# Field name in Python, key in JSON, and how one value is checked and serialised.
_STRINGS = (_string_match, lambda m: m.to_dict())
_SERVICE_ACCOUNTS = (
    _service_account,
    lambda sa: {"namespace": sa[0], "serviceAccount": sa[1]},
)
_NETWORKS = (parse_network, str)
_PORTS = (_port, int)
_MATCH_FIELDS: tuple[tuple[str, str, tuple[Any, Any]], ...] = (
    ("namespaces", "namespaces", _STRINGS),
    ("not_namespaces", "notNamespaces", _STRINGS),
    ("service_accounts", "serviceAccounts", _SERVICE_ACCOUNTS),
    ("not_service_accounts", "notServiceAccounts", _SERVICE_ACCOUNTS),
    ("principals", "principals", _STRINGS),
    ("not_principals", "notPrincipals", _STRINGS),
    ("source_ips", "sourceIps", _NETWORKS),
    ("not_source_ips", "notSourceIps", _NETWORKS),
    ("destination_ips", "destinationIps", _NETWORKS),
    ("not_destination_ips", "notDestinationIps", _NETWORKS),
    ("destination_ports", "destinationPorts", _PORTS),
    ("not_destination_ports", "notDestinationPorts", _PORTS),
)
_MATCH_JSON_KEYS = {json_key: name for name, json_key, _ in _MATCH_FIELDS}


@dataclass(frozen=True, slots=True)
class Match:
    """One alternative of a clause: every non-empty field must hold (section 4, matching).

    Within a field the values are ORed; each ``not_*`` field requires that none of its
    values hold.  A Match with no field at all is *skipped* by ztunnel, i.e. it matches
    nothing; istiod relies on that when it strips HTTP attributes from a DENY policy.

    The constructor accepts any iterables (and CIDR strings, service-account pairs or
    StringMatch dicts) and stores normalised tuples; it raises ``ValueError`` on values
    that cannot be represented.
    """

    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    service_accounts: tuple[tuple[str, str], ...] = ()
    not_service_accounts: tuple[tuple[str, str], ...] = ()
    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    source_ips: tuple[IPNetwork, ...] = ()
    not_source_ips: tuple[IPNetwork, ...] = ()
    destination_ips: tuple[IPNetwork, ...] = ()
    not_destination_ips: tuple[IPNetwork, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name, _json_key, (check, _dump) in _MATCH_FIELDS:
            values = getattr(self, name)
            if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
                raise ValueError(f"Match.{name} must be a sequence, found {values!r}")
            object.__setattr__(self, name, tuple(check(v) for v in values))

    def is_empty(self) -> bool:
        """True when no field is set: ztunnel skips such a Match (it matches nothing)."""
        return not any(getattr(self, name) for name, _, _ in _MATCH_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, json_key, (_check, dump) in _MATCH_FIELDS:
            values = getattr(self, name)
            if values:
                result[json_key] = [dump(v) for v in values]
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Match:
        if not isinstance(data, Mapping):
            raise ValueError(f"a Match is an object, found {data!r}")
        unknown = sorted(set(data) - set(_MATCH_JSON_KEYS))
        if unknown:
            raise ValueError(f"unknown Match fields: {', '.join(map(str, unknown))}")
        return cls(**{_MATCH_JSON_KEYS[k]: v for k, v in data.items() if v is not None})


def _sequence(values: Any, what: str, item: Any) -> tuple[Any, ...]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValueError(f"{what} must be a sequence, found {values!r}")
    result = tuple(values)
    for v in result:
        if not isinstance(v, item):
            raise ValueError(f"{what} holds {v!r}, expected {item.__name__}")
    return result


@dataclass(frozen=True, slots=True)
class Clause:
    """Matches ORed.  No match at all: the clause holds for every connection."""

    matches: tuple[Match, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches", _sequence(self.matches, "Clause.matches", Match))

    def to_dict(self) -> dict[str, Any]:
        return {"matches": [m.to_dict() for m in self.matches]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Clause:
        items = _list_field(data, "matches", "Clause")
        return cls(tuple(Match.from_dict(m) for m in items))


@dataclass(frozen=True, slots=True)
class Rule:
    """Clauses ANDed.  istiod emits one clause for ``to``, one for ``from`` and one per
    ``when`` condition of an AuthorizationPolicy rule; a rule with no clause (from
    ``rules: [{}]``) matches every connection."""

    clauses: tuple[Clause, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "clauses", _sequence(self.clauses, "Rule.clauses", Clause))

    def to_dict(self) -> dict[str, Any]:
        return {"clauses": [c.to_dict() for c in self.clauses]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        items = _list_field(data, "clauses", "Rule")
        return cls(tuple(Clause.from_dict(c) for c in items))


def _list_field(data: Any, key: str, what: str) -> list[Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"a {what} is an object, found {data!r}")
    unknown = sorted(set(data) - {key})
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(map(str, unknown))}")
    items = data.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ValueError(f"{what}.{key} must be a list, found {items!r}")
    return items


_AUTHZ_KEYS = ("name", "namespace", "scope", "selector", "action", "rules", "dryRun")


@dataclass(frozen=True, slots=True)
class Authorization:
    """One policy as ztunnel receives it.

    ``selector`` is the workload label selector of a WORKLOAD_SELECTOR policy (``None``
    for the other scopes).  Real ztunnel never sees it: istiod resolves selectors itself
    and lists the matching policies on each Workload.  The reference keeps it on the
    policy so that the evaluator can answer "which policies apply here" on its own.

    ``rules`` empty means the policy matches nothing: an ALLOW ``spec: {}`` is therefore
    allow-nothing (section 4, matching).  A ``dry_run`` policy is evaluated and reported
    but never enforced.
    """

    name: str
    namespace: str
    scope: Scope
    action: Action
    rules: tuple[Rule, ...] = ()
    selector: Mapping[str, str] | None = field(default=None, hash=False)
    dry_run: bool = False

    def __post_init__(self) -> None:
        for attr in ("name", "namespace"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise ValueError(f"Authorization.{attr} must be a non-empty string")
        object.__setattr__(self, "scope", Scope(self.scope))
        object.__setattr__(self, "action", Action(self.action))
        object.__setattr__(self, "rules", _sequence(self.rules, "Authorization.rules", Rule))
        if not isinstance(self.dry_run, bool):
            raise ValueError(f"Authorization.dry_run must be a bool, found {self.dry_run!r}")
        if self.scope is Scope.WORKLOAD_SELECTOR:
            if not isinstance(self.selector, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.selector.items()
            ):
                raise ValueError("a WORKLOAD_SELECTOR policy needs a selector of string labels")
            # Sorted and read-only: the policy is shared, and its JSON must be stable.
            frozen = MappingProxyType(dict(sorted(self.selector.items())))
            object.__setattr__(self, "selector", frozen)
        elif self.selector is not None:
            raise ValueError(f"a {self.scope} policy has no selector")

    @property
    def key(self) -> str:
        """``namespace/name``, the name ztunnel uses in logs and denial reasons."""
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and stable: fixed key order, empty Match fields omitted."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "scope": str(self.scope),
            "selector": None if self.selector is None else dict(self.selector),
            "action": str(self.action),
            "rules": [r.to_dict() for r in self.rules],
            "dryRun": self.dry_run,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Authorization:
        """The inverse of ``to_dict``; raises ``ValueError`` on anything malformed.

        Unknown keys are refused rather than ignored: a field this version does not know
        could be a condition, and dropping a condition widens a policy.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"an Authorization is an object, found {data!r}")
        unknown = sorted(set(data) - set(_AUTHZ_KEYS))
        if unknown:
            raise ValueError(f"unknown Authorization fields: {', '.join(map(str, unknown))}")
        rules = data.get("rules")
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            raise ValueError(f"Authorization.rules must be a list, found {rules!r}")
        try:
            return cls(
                name=data.get("name"),  # type: ignore[arg-type]
                namespace=data.get("namespace"),  # type: ignore[arg-type]
                scope=Scope(data.get("scope")),
                action=Action(data.get("action")),
                rules=tuple(Rule.from_dict(r) for r in rules),
                selector=data.get("selector"),
                dry_run=data.get("dryRun", False),
            )
        except TypeError as exc:
            raise ValueError(str(exc)) from None
