"""L7 AuthorizationPolicy as a waypoint enforces it.

A waypoint is an Envoy: istiod turns the AuthorizationPolicies attached to it into RBAC
filters, and Envoy checks every HTTP request against them.  This module is that check,
written to be read (bookinfo-policy.md section 3, istio-ambient.md section 5).

Three steps, one function each:

* ``compile_l7``: a Kubernetes AuthorizationPolicy (a dict) to an ``L7Policy``, plus one
  status condition of type ``WaypointAccepted``.
* ``applies_to_waypoint``: whether a policy is attached to a given waypoint.  Today's
  waypoints only take ``targetRefs`` (Gateway, Service, GatewayClass ``istio-waypoint``
  in the root namespace) and ignore selector policies; the 2022 preview
  (``gatewayClassName: istio-mesh``) applied the selector and namespace policies of the
  workloads it served.
* ``authorize_l7``: the decision for one request.  A matching DENY denies; with no ALLOW
  policy the request is allowed; a matching ALLOW allows; otherwise it is denied, and the
  client sees ``DENIED_STATUS`` with ``DENIED_BODY``.  AUDIT never changes the outcome;
  CUSTOM (an external authorizer) is not supported and not enforced.

Matching (bookinfo-policy.md section 3): rules are ORed; a rule matches when one of its
``from`` sources, one of its ``to`` operations and all of its ``when`` conditions match,
a missing section matching anything.  Within a source or operation the fields are ANDed
and each field's values ORed; a ``not*`` field holds when none of its values match.
Strings are Istio's ``abc`` / ``abc*`` / ``*abc`` / ``*`` (``StringMatch``).

Choices a reader should know about, each written down where Istio leaves a gap:

* No JWT authentication here, so a request never has a request principal.
  ``requestPrincipals`` and ``when`` ``request.auth.*`` values never match (an ALLOW rule
  that needs them never fires, a DENY rule that needs them never denies), and their
  ``not*`` forms always hold, like a missing identity at L4.
* ``remoteIpBlocks`` is read as the source IP: the waypoint trusts no X-Forwarded-For.
* ``hosts`` compare case-insensitively.  The request's host may carry a port: a policy
  host without one matches the host with or without the port, a policy host with a port
  needs that exact ``host:port``.
* ``paths`` are matched against the path without query or fragment, after removing
  ``.``/``..`` segments (Envoy's default normalisation), so ``/a/../admin`` is ``/admin``.
* A header sent several times is matched as its values joined by ``,`` (Envoy's rule).
* A source without identity (plaintext) matches no principal, namespace or service
  account condition and every ``not*`` one.

Bad input never raises and fails closed, in the spirit of the L4 ``convert``: in an
ALLOW, a rule holding anything unreadable is dropped (it can only allow less); in a
DENY, an unreadable field, source, operation or condition is read as matching anything
(it can only deny more).  A policy that cannot be attributed at all (not an object, no
name, unknown action) compiles to ``None`` with a condition naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..identity import SPIFFE_PREFIX, Identity
from .common import (
    API_VERSIONS,
    REASON_ACCEPTED,
    REASON_INVALID,
    REASON_UNSUPPORTED,
    ROOT_NAMESPACE,
    dry_run_annotation,
    listed_problems,
    make_condition,
    parse_port,
    parse_service_account,
    policy_generation,
    read_envelope,
    read_selector,
    unknown_spec_keys,
)
from .common import DRY_RUN_ANNOTATION as DRY_RUN_ANNOTATION
from .common import type_name as _type_name
from .evaluate import (
    Decision,
    ordered_decision,
)
from .model import IPNetwork, StringMatch, parse_network

__all__ = [
    "DENIED_BODY",
    "DENIED_STATUS",
    "Condition",
    "Decision",
    "L7Action",
    "L7Policy",
    "L7Rule",
    "PathTemplate",
    "Request",
    "TargetRef",
    "applies_to_waypoint",
    "authorize_l7",
    "compile_l7",
    "for_service",
]

#: What Envoy's RBAC filter answers a denied request with (bookinfo-policy.md section 3).
DENIED_STATUS = 403
DENIED_BODY = b"RBAC: access denied"

WAYPOINT_GATEWAY_CLASS = "istio-waypoint"

CONDITION_TYPE = "WaypointAccepted"

GATEWAY_GROUP = "gateway.networking.k8s.io"
NETWORKING_GROUP = "networking.istio.io"
CORE_GROUPS = frozenset({"", "core"})

_HEADER_KEY = re.compile(r"request\.headers\[([^\[\]]+)\]")


class L7Action(StrEnum):
    """The four actions of the API.  Only ALLOW and DENY decide; see the module docstring."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


# -- the request --------------------------------------------------------------------------


def _normalise_path(path: str) -> str:
    """The path Envoy authorizes: no query or fragment, no ``.``/``..`` segments.

    Without this ``/public/../admin`` would slip past a DENY on ``/admin*`` while the
    backend serves ``/admin``.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return path  # an authority-form or asterisk-form target: matched verbatim
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _strip_port(host: str) -> str | None:
    """``host:port`` -> ``host`` (IPv6 literals keep their brackets); None without a port."""
    head, colon, port = host.rpartition(":")
    if colon and port.isdigit() and head and (":" not in head or head.endswith("]")):
        return head
    return None


@dataclass(frozen=True)
class Request:
    """What the waypoint knows of one HTTP request when it authorizes it.

    ``port`` is the destination (service) port.  ``headers`` are a dict or a list of
    ``(name, value)`` pairs; names are compared lowercased (HTTP/2 sends them so).
    ``source_principal`` is the peer certificate's SPIFFE URI (the ``spiffe://`` prefix
    may be left out), or None for a peer without identity; a malformed one raises
    ``ValueError``, because no verified certificate can carry it.  The namespace and
    service account are derived from it, never given separately, so they cannot
    disagree.
    """

    method: str
    path: str
    host: str
    port: int
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = ()
    source_ip: str | None = None
    source_principal: str | None = None
    destination_ip: str | None = None
    principal: str | None = field(init=False, default=None)
    source_namespace: str | None = field(init=False, default=None)
    source_service_account: str | None = field(init=False, default=None)
    trust_domain: str | None = field(init=False, default=None)
    header_values: Mapping[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.source_principal is not None:
            uri = self.source_principal
            if not uri.startswith(SPIFFE_PREFIX):
                uri = SPIFFE_PREFIX + uri
            identity = Identity.parse(uri)  # IdentityError is a ValueError
            object.__setattr__(self, "principal", identity.principal)
            object.__setattr__(self, "source_namespace", identity.namespace)
            object.__setattr__(self, "source_service_account", identity.service_account)
            object.__setattr__(self, "trust_domain", identity.trust_domain)
        pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        joined: dict[str, list[str]] = {}
        for name, value in pairs:
            joined.setdefault(str(name).lower(), []).append(str(value))
        object.__setattr__(self, "header_values", {k: ",".join(v) for k, v in joined.items()})

    @property
    def normalised_path(self) -> str:
        return _normalise_path(self.path)

    def attribute(self, name: str) -> Any:
        """The value a ``Condition`` on ``name`` is matched against; None when absent."""
        if name.startswith("request.headers["):
            return self.header_values.get(name[len("request.headers[") : -1])
        if name == "source.account":
            if self.source_service_account is None:
                return None
            return (self.source_namespace, self.source_service_account)
        if name in ("source.ip", "destination.ip"):
            raw = self.source_ip if name == "source.ip" else self.destination_ip
            try:
                return ipaddress.ip_address(raw) if raw is not None else None
            except ValueError:
                return None
        return {
            "request.method": self.method,
            "request.path": self.normalised_path,
            "request.host": self.host.lower() if self.host else None,
            "destination.port": self.port,
            "source.principal": self.principal,
            "source.namespace": self.source_namespace,
            "source.trust_domain": self.trust_domain,
        }.get(name)  # request.auth.* and anything else: absent


# -- matchers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathTemplate:
    """An Istio path template: ``{*}`` is one path segment, ``{**}`` any remainder.

    Both must be whole segments and ``{**}`` may only come last (Istio's validation);
    ``parse`` raises ``ValueError`` otherwise.  ``{**}`` matches zero or more characters,
    slashes included, so ``/api/{**}`` matches ``/api/`` and ``/api/v1/x`` but not ``/api``.
    """

    template: str
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, template: str) -> PathTemplate:
        if not template.startswith("/"):
            raise ValueError(f"{template!r}: a path template starts with '/'")
        segments = template.split("/")[1:]
        parts: list[str] = []
        for index, segment in enumerate(segments):
            if segment == "{*}":
                parts.append("[^/]+")
            elif segment == "{**}":
                if index != len(segments) - 1:
                    raise ValueError(f"{template!r}: '{{**}}' must be the last segment")
                parts.append(".*")
            elif any(c in segment for c in "{}*"):
                raise ValueError(
                    f"{template!r}: '{{*}}' and '{{**}}' must be whole path segments, "
                    "and '*' is not allowed elsewhere in a template"
                )
            else:
                parts.append(re.escape(segment))
        return cls(template, re.compile("/" + "/".join(parts)))

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None

    def __str__(self) -> str:
        return self.template


@dataclass(frozen=True)
class HostMatch:
    """A ``hosts`` value: a lowercased ``StringMatch``, tried with and without the port."""

    pattern: StringMatch

    def matches(self, host: str) -> bool:
        if self.pattern.matches(host):
            return True
        bare = _strip_port(host)
        return bare is not None and self.pattern.matches(bare)

    def __str__(self) -> str:
        return str(self.pattern)


Matcher = StringMatch | PathTemplate | HostMatch | int | tuple[str, str] | IPNetwork


def _match_one(matcher: Matcher, value: Any) -> bool:
    if isinstance(matcher, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) and (
            value in matcher
        )
    if isinstance(matcher, StringMatch | PathTemplate | HostMatch):
        return isinstance(value, str) and matcher.matches(value)
    return value == matcher


@dataclass(frozen=True)
class Condition:
    """One field of a source or operation, or one ``when`` entry's values/notValues.

    ``attribute`` names the request value (``Request.attribute``), ``values`` are ORed,
    and ``negate`` turns it into a ``not*`` field: none of the values may match.  An
    absent attribute matches no value, so a ``not*`` field holds for it.
    """

    attribute: str
    values: tuple[Matcher, ...]
    negate: bool = False

    def matches(self, request: Request) -> bool:
        value = request.attribute(self.attribute)
        hit = value is not None and any(_match_one(m, value) for m in self.values)
        return hit != self.negate


@dataclass(frozen=True)
class L7Rule:
    """``from`` alternatives (each a tuple of ANDed conditions), ``to`` alternatives, and
    ``when`` conditions.  ``None`` for a section means it was not given: it matches
    anything.  An empty tuple of alternatives matches nothing (only fail-closed ALLOWs
    could produce it, and they drop the rule instead)."""

    sources: tuple[tuple[Condition, ...], ...] | None = None
    operations: tuple[tuple[Condition, ...], ...] | None = None
    when: tuple[Condition, ...] = ()

    def matches(self, request: Request) -> bool:
        for alternatives in (self.sources, self.operations):
            if alternatives is not None and not any(
                all(c.matches(request) for c in alt) for alt in alternatives
            ):
                return False
        return all(c.matches(request) for c in self.when)


@dataclass(frozen=True)
class TargetRef:
    """One ``targetRefs`` entry, normalised: the group of a core Service is ``""``."""

    group: str
    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class L7Policy:
    """A compiled AuthorizationPolicy as a waypoint holds it.

    ``rules`` empty means the policy matches nothing: an ALLOW ``spec: {}`` allows nothing
    (and its existence makes every other request denied), a DENY without rules has no
    effect.  ``targets`` are the readable ``targetRefs``; ``has_target_refs`` says whether
    the policy had any at all, so a policy whose refs are all unreadable is not mistaken
    for a selector policy.  ``selector`` is None without a selector and ``{}`` for an
    unreadable one (read as selecting everything).
    """

    name: str
    namespace: str
    action: L7Action
    rules: tuple[L7Rule, ...] = ()
    targets: tuple[TargetRef, ...] = ()
    has_target_refs: bool = False
    selector: Mapping[str, str] | None = None
    dry_run: bool = False

    @property
    def key(self) -> str:
        """``namespace/name``, the name used in denial reasons."""
        return f"{self.namespace}/{self.name}"

    def matches(self, request: Request) -> bool:
        return any(rule.matches(request) for rule in self.rules)


# -- compiling ----------------------------------------------------------------------------


def _condition(status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    return make_condition(CONDITION_TYPE, status, reason, message, generation)


class _Invalid(Exception):
    """A value that cannot be read; carries the field path for the condition."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what}")


_SOURCE_FIELDS: dict[str, tuple[str, str, bool]] = {
    # key: (attribute, kind of value, negate)
    "principals": ("source.principal", "string", False),
    "notPrincipals": ("source.principal", "string", True),
    "namespaces": ("source.namespace", "string", False),
    "notNamespaces": ("source.namespace", "string", True),
    "serviceAccounts": ("source.account", "account", False),
    "notServiceAccounts": ("source.account", "account", True),
    "ipBlocks": ("source.ip", "ip", False),
    "notIpBlocks": ("source.ip", "ip", True),
    "remoteIpBlocks": ("source.ip", "ip", False),
    "notRemoteIpBlocks": ("source.ip", "ip", True),
    "requestPrincipals": ("request.auth.principal", "string", False),
    "notRequestPrincipals": ("request.auth.principal", "string", True),
    "trustDomains": ("source.trust_domain", "string", False),
    "notTrustDomains": ("source.trust_domain", "string", True),
}
_OPERATION_FIELDS: dict[str, tuple[str, str, bool]] = {
    "hosts": ("request.host", "host", False),
    "notHosts": ("request.host", "host", True),
    "ports": ("destination.port", "port", False),
    "notPorts": ("destination.port", "port", True),
    "methods": ("request.method", "string", False),
    "notMethods": ("request.method", "string", True),
    "paths": ("request.path", "path", False),
    "notPaths": ("request.path", "path", True),
}
_WHEN_KEYS: dict[str, tuple[str, str]] = {
    "source.ip": ("source.ip", "ip"),
    "remote.ip": ("source.ip", "ip"),
    "source.namespace": ("source.namespace", "string"),
    "source.principal": ("source.principal", "string"),
    "destination.ip": ("destination.ip", "ip"),
    "destination.port": ("destination.port", "port"),
}


class _Compiler:
    def __init__(self, root_namespace: str) -> None:
        self.root_namespace = root_namespace
        self.namespace = ""
        self.action = L7Action.ALLOW
        self.generation: int | None = None
        self.problems: list[str] = []

    def reject(self, reason: str, message: str) -> tuple[None, list[dict[str, Any]]]:
        return None, [_condition("False", reason, message, self.generation)]

    def compile(self, policy: Any) -> tuple[L7Policy | None, list[dict[str, Any]]]:
        self.generation = policy_generation(policy)
        envelope = read_envelope(policy, found="not", api_version_problem="is not supported")
        if isinstance(envelope, str):
            return self.reject(REASON_INVALID, envelope)
        name, namespace, spec = envelope.name, envelope.namespace, envelope.spec
        self.namespace = namespace

        action = spec.get("action", "ALLOW")
        try:
            self.action = L7Action(action)
        except ValueError:
            return self.reject(
                REASON_INVALID,
                f"spec.action: unknown action {action!r} (expected ALLOW, DENY, AUDIT or CUSTOM)",
            )
        if self.action is L7Action.CUSTOM:
            return self.reject(
                REASON_UNSUPPORTED,
                "spec.action: CUSTOM (external authorization) is not supported by this "
                "waypoint; the policy is not enforced",
            )

        dry_run = self.dry_run(envelope.meta)
        self.problems.extend(unknown_spec_keys(spec))
        targets, problems = _target_refs(spec, namespace)
        self.problems.extend(problems)
        has_refs = spec.get("targetRefs") not in (None, []) or spec.get("targetRef") is not None
        selector, selector_problem = _selector(spec.get("selector"))
        if selector_problem:
            self.problems.append(f"spec.selector: {selector_problem}")
        rules = self.rules(spec.get("rules"))
        if selector_problem and self.action is L7Action.ALLOW:
            rules = []  # read as selecting everything: an ALLOW must not open workloads

        compiled = L7Policy(
            name=name,
            namespace=namespace,
            action=self.action,
            rules=tuple(rules),
            targets=tuple(targets),
            has_target_refs=has_refs,
            selector=selector,
            dry_run=dry_run,
        )
        return compiled, [self.status()]

    def status(self) -> dict[str, Any]:
        notes = []
        if self.action is L7Action.AUDIT:
            notes.append("AUDIT policies are evaluated but never change a decision.")
        if self.problems:
            outcome = (
                "ALLOW rules holding invalid values never match."
                if self.action is not L7Action.DENY
                else "each invalid part of this DENY policy is read as matching everything."
            )
            message = (
                f"invalid AuthorizationPolicy for the waypoint: {listed_problems(self.problems)}. "
                f"Enforced fail-closed: {outcome}"
            )
            return _condition("False", REASON_INVALID, " ".join([message, *notes]), self.generation)
        message = " ".join(["attached to the waypoint", *notes]) if notes else "accepted"
        return _condition("True", REASON_ACCEPTED, message, self.generation)

    def dry_run(self, meta: Mapping[str, Any]) -> bool:
        annotations = meta.get("annotations")
        if not isinstance(annotations, Mapping):
            return False
        dry_run, problem = dry_run_annotation(annotations)
        if problem:
            self.problems.append(problem)
        return dry_run

    # -- rules -----------------------------------------------------------------------

    def match_all(self) -> list[L7Rule]:
        """What an unreadable rule becomes: nothing for ALLOW, everything for DENY."""
        return [L7Rule()] if self.action is L7Action.DENY else []

    def rules(self, value: Any) -> list[L7Rule]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(f"spec.rules: expected a list, not {_type_name(value)}")
            return self.match_all()
        result: list[L7Rule] = []
        for index, item in enumerate(value):
            result.extend(self.rule(item, f"spec.rules[{index}]"))
        return result

    def rule(self, rule: Any, path: str) -> list[L7Rule]:
        if not isinstance(rule, Mapping):
            self.problems.append(f"{path}: expected an object, not {_type_name(rule)}")
            return self.match_all()
        invalid = False
        for key in sorted(set(rule) - {"from", "to", "when"}, key=str):
            self.problems.append(f"{path}.{key}: unknown field")
            invalid = True
        sections: dict[str, tuple[tuple[Condition, ...], ...] | None] = {}
        for key, wrapper, fields in (
            ("from", "source", _SOURCE_FIELDS),
            ("to", "operation", _OPERATION_FIELDS),
        ):
            items = rule.get(key)
            sections[key] = None
            if items is None:
                continue
            if not isinstance(items, list):
                self.problems.append(f"{path}.{key}: expected a list, not {_type_name(items)}")
                invalid = True
                continue
            alternatives = []
            anything = False
            for i, item in enumerate(items):
                conditions, bad = self.entry(item, f"{path}.{key}[{i}]", wrapper, fields)
                invalid |= bad
                if bad and not conditions:
                    anything = True  # DENY: an unreadable entry matches anything
                alternatives.append(conditions)
            if alternatives and not anything:
                sections[key] = tuple(alternatives)
        when: list[Condition] = []
        conditions = rule.get("when")
        if conditions is not None and not isinstance(conditions, list):
            self.problems.append(f"{path}.when: expected a list, not {_type_name(conditions)}")
            invalid = True
            conditions = None
        for i, item in enumerate(conditions or ()):
            try:
                when.extend(self.when(item, f"{path}.when[{i}]"))
            except _Invalid as exc:
                self.problems.append(str(exc))
                invalid = True  # DENY: the condition is left out, i.e. read as true
        if invalid and self.action is not L7Action.DENY:
            return []
        return [L7Rule(sections["from"], sections["to"], tuple(when))]

    def entry(
        self, item: Any, path: str, wrapper: str, fields: Mapping[str, tuple[str, str, bool]]
    ) -> tuple[tuple[Condition, ...], bool]:
        """One ``{source: ...}``/``{operation: ...}``: its readable conditions, and whether
        anything was unreadable."""
        if not isinstance(item, Mapping) or not isinstance(item.get(wrapper), Mapping):
            self.problems.append(f"{path}.{wrapper}: expected an object")
            return (), True
        invalid = False
        for extra in sorted(set(item) - {wrapper}, key=str):
            self.problems.append(f"{path}.{extra}: unknown field")
            invalid = True
        result: list[Condition] = []
        for key, value in item[wrapper].items():
            where = f"{path}.{wrapper}.{key}"
            if key not in fields:
                self.problems.append(f"{where}: unknown field")
                invalid = True
                continue
            if value is None:
                continue
            attribute, kind, negate = fields[key]
            try:
                values = self.values(value, where, kind)
            except _Invalid as exc:
                self.problems.append(str(exc))
                invalid = True
                continue
            if values:
                result.append(Condition(attribute, values, negate))
        if not result and not invalid:
            # Istio's validation refuses an empty source or operation.
            self.problems.append(f"{path}.{wrapper}: must not be empty")
            invalid = True
        return tuple(result), invalid

    def when(self, item: Any, path: str) -> list[Condition]:
        if not isinstance(item, Mapping):
            raise _Invalid(path, f"expected an object, not {_type_name(item)}")
        extras = sorted(set(item) - {"key", "values", "notValues"}, key=str)
        if extras:
            raise _Invalid(f"{path}.{extras[0]}", "unknown field")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise _Invalid(f"{path}.key", "expected a non-empty string")
        header = _HEADER_KEY.fullmatch(key)
        if header:
            attribute, kind = f"request.headers[{header.group(1).lower()}]", "string"
        elif key.startswith("request.auth."):
            attribute, kind = "request.auth", "string"  # no JWT: never present
        elif key in _WHEN_KEYS:
            attribute, kind = _WHEN_KEYS[key]
        else:
            raise _Invalid(f"{path}.key", f"unsupported key {key!r}")
        result = []
        for name, negate in (("values", False), ("notValues", True)):
            value = item.get(name)
            if value is not None:
                values = self.values(value, f"{path}.{name}", kind)
                if values:
                    result.append(Condition(attribute, values, negate))
        if not result:
            raise _Invalid(path, f"{key!r} needs values or notValues")
        return result

    # -- values ----------------------------------------------------------------------

    def values(self, value: Any, path: str, kind: str) -> tuple[Matcher, ...]:
        if not isinstance(value, list):
            raise _Invalid(path, f"expected a list, not {_type_name(value)}")
        result: list[Matcher] = []
        for i, item in enumerate(value):
            try:
                result.append(self.value(item, kind))
            except ValueError as exc:
                raise _Invalid(f"{path}[{i}]", str(exc)) from None
        return tuple(result)

    def value(self, item: Any, kind: str) -> Matcher:
        if kind == "ip":
            return parse_network(item)
        if kind == "port":
            return parse_port(item)
        if kind == "account":
            return parse_service_account(item, self.namespace)
        if kind == "path" and isinstance(item, str) and ("{" in item or "}" in item):
            return PathTemplate.parse(item)
        if kind == "host":
            if not isinstance(item, str):
                raise ValueError(f"expected a string, not {item!r}")
            return HostMatch(StringMatch.parse(item.lower()))
        return StringMatch.parse(item)


def _selector(selector: Any) -> tuple[dict[str, str] | None, str | None]:
    """``(labels, problem)``; an unreadable selector reads as ``{}`` (selects all)."""
    return read_selector(selector, found="not", falsy_labels_empty=True)


_TARGET_KINDS = {
    "Gateway": frozenset({GATEWAY_GROUP}),
    "GatewayClass": frozenset({GATEWAY_GROUP}),
    "Service": CORE_GROUPS,
    "ServiceEntry": frozenset({NETWORKING_GROUP}),
}


def _target_refs(spec: Mapping[str, Any], namespace: str) -> tuple[list[TargetRef], list[str]]:
    """The readable ``targetRefs`` (or the older single ``targetRef``), and problems.

    A ref must name a supported kind in its group and may not point into another
    namespace (Istio's validation); anything else is reported and left out, so it
    attaches the policy nowhere.
    """
    refs: list[tuple[str, Any]] = []
    problems: list[str] = []
    many, one = spec.get("targetRefs"), spec.get("targetRef")
    if many is not None:
        if isinstance(many, list):
            refs.extend((f"spec.targetRefs[{i}]", ref) for i, ref in enumerate(many))
        else:
            problems.append(f"spec.targetRefs: expected a list, not {_type_name(many)}")
    if one is not None:
        refs.append(("spec.targetRef", one))
    result = []
    for path, ref in refs:
        if not isinstance(ref, Mapping):
            problems.append(f"{path}: expected an object, not {_type_name(ref)}")
            continue
        kind, name = ref.get("kind"), ref.get("name")
        group = ref.get("group", "")
        group = "" if group in (None, "core") else group
        ref_namespace = ref.get("namespace") or namespace
        if kind not in _TARGET_KINDS or group not in _TARGET_KINDS[kind]:
            problems.append(f"{path}: unsupported target group {group!r} kind {kind!r}")
        elif not isinstance(name, str) or not name:
            problems.append(f"{path}.name: expected a non-empty string")
        elif ref_namespace != namespace:
            problems.append(f"{path}.namespace: cross-namespace references are not allowed")
        else:
            result.append(TargetRef(group, kind, name, namespace))
    return result, problems


def compile_l7(
    policy: Any, root_namespace: str = ROOT_NAMESPACE
) -> tuple[L7Policy | None, list[dict[str, Any]]]:
    """Compile a security.istio.io v1/v1beta1 AuthorizationPolicy (a dict) for a waypoint.

    Returns the policy, or None when it is not enforced at all (unattributable input,
    unknown action, CUSTOM), and its ``WaypointAccepted`` status condition.  Never
    raises; see the module docstring for how bad input fails closed.
    """
    try:
        return _Compiler(root_namespace).compile(policy)
    except Exception as exc:  # pragma: no cover - a bug here must not take the proxy down
        return None, [_condition("False", REASON_INVALID, f"not compiled: {exc!r}", None)]


# -- attachment ---------------------------------------------------------------------------


def applies_to_waypoint(
    policy: Any,
    *,
    waypoint_name: str,
    waypoint_namespace: str,
    service_keys: Iterable[tuple[str, str]] = (),
    root_namespace: str = ROOT_NAMESPACE,
    flavour: str = "targetRefs",
    served_workload_labels: Sequence[Mapping[str, str]] | None = None,
) -> bool:
    """Whether a waypoint enforces ``policy`` (an AuthorizationPolicy dict).

    ``flavour="targetRefs"`` (today, istio-ambient.md section 5): only ``targetRefs``
    count: the waypoint's own Gateway, a Service (or ServiceEntry) in ``service_keys``
    (``(namespace, name)`` of the services it serves), or the GatewayClass
    ``istio-waypoint`` from the root namespace.  Selector and namespace-wide policies
    are the destination ztunnel's, never the waypoint's.

    ``flavour="selector"`` (the 2022 preview, ``gatewayClassName: istio-mesh``): the
    waypoint served the workloads of one service account and applied their policies as
    a sidecar would: namespace-wide ones of the waypoint's namespace, mesh-wide ones of
    the root namespace, and selector ones (from either) whose labels match one of
    ``served_workload_labels``.  ``targetRefs`` did not exist yet, so such policies are
    ignored.  An unreadable selector reads as selecting every workload.

    Never raises: unreadable input attaches nowhere.
    """
    if not isinstance(policy, Mapping):
        return False
    if policy.get("kind", "AuthorizationPolicy") != "AuthorizationPolicy" or (
        policy.get("apiVersion") is not None and policy.get("apiVersion") not in API_VERSIONS
    ):
        return False
    meta, spec = policy.get("metadata"), policy.get("spec")
    spec = {} if spec is None else spec
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return False
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        return False
    has_refs = spec.get("targetRefs") not in (None, []) or spec.get("targetRef") is not None
    if flavour == "targetRefs":
        if not has_refs:
            return False
        targets, _ = _target_refs(spec, namespace)
        services = set(service_keys)
        return any(
            _attaches(ref, waypoint_name, waypoint_namespace, services, root_namespace)
            for ref in targets
        )
    if flavour != "selector" or has_refs:
        return False
    if namespace not in (waypoint_namespace, root_namespace):
        return False
    selector, _problem = _selector(spec.get("selector"))
    if selector is None or not selector:
        return True
    return any(
        all(labels.get(k) == v for k, v in selector.items())
        for labels in served_workload_labels or ()
    )


def _attaches(
    ref: TargetRef,
    waypoint_name: str,
    waypoint_namespace: str,
    services: set[tuple[str, str]],
    root_namespace: str,
) -> bool:
    if ref.kind == "Gateway":
        return (ref.namespace, ref.name) == (waypoint_namespace, waypoint_name)
    if ref.kind == "GatewayClass":
        return ref.name == WAYPOINT_GATEWAY_CLASS and ref.namespace == root_namespace
    return (ref.namespace, ref.name) in services


def for_service(
    policy: L7Policy, service_key: tuple[str, str], waypoint: tuple[str, str] | None = None
) -> bool:
    """Whether an attached ``policy`` governs a request for ``service_key``.

    A policy attached through a Service (or ServiceEntry) ref only covers requests for
    that service; one attached through a Gateway or GatewayClass covers every request
    through the waypoint, as does a 2022 selector policy.  ``waypoint`` is the
    ``(namespace, name)`` of the waypoint, so that a Gateway ref naming another waypoint
    does not widen a Service-targeted policy; None trusts that the caller attached the
    policy with ``applies_to_waypoint`` and counts any Gateway ref.
    """
    if not policy.has_target_refs:
        return True
    for ref in policy.targets:
        if ref.kind in ("Service", "ServiceEntry"):
            covers = (ref.namespace, ref.name) == tuple(service_key)
        elif ref.kind == "Gateway":
            covers = waypoint is None or (ref.namespace, ref.name) == tuple(waypoint)
        else:  # GatewayClass: every waypoint of the class
            covers = True
        if covers:
            return True
    return False


# -- the decision -------------------------------------------------------------------------


def authorize_l7(
    policies: Iterable[L7Policy | None],
    request: Request,
    service_key: tuple[str, str],
    *,
    waypoint: tuple[str, str] | None = None,
) -> Decision:
    """Decide one request for ``service_key`` through a waypoint.

    ``policies`` are those attached to the waypoint (``applies_to_waypoint``), compiled;
    ``None`` entries (policies that compile to nothing) are skipped.  Each one is then
    narrowed to the request's service (``for_service``).  Order: a matching DENY denies;
    with no ALLOW policy the request is allowed; a matching ALLOW allows; otherwise it is
    denied.  AUDIT policies are ignored; dry-run policies are evaluated and listed in
    ``Decision.dry_run`` as ``"<ACTION> <namespace/name>"`` but never decide.
    """
    deny: list[L7Policy] = []
    allow: list[L7Policy] = []
    dry_run: list[str] = []
    for policy in policies:
        if policy is None or not for_service(policy, service_key, waypoint):
            continue
        if policy.action not in (L7Action.ALLOW, L7Action.DENY):
            continue
        if policy.dry_run:
            if policy.matches(request):
                dry_run.append(f"{policy.action} {policy.key}")
        elif policy.action is L7Action.DENY:
            deny.append(policy)
        else:
            allow.append(policy)
    return ordered_decision(deny, allow, tuple(dry_run), lambda p: p.matches(request))
