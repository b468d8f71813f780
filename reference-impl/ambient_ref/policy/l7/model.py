"""What a waypoint's L7 authorization works on: the request, and a compiled policy.

The waypoint twin of ``policy/model.py``.  It holds the plain data the other modules of
this package pass around (``L7Policy`` and its ``L7Rule``/``Condition``/``TargetRef``
parts, ``L7Action``) and ``Request``, the HTTP request being authorized.  Unlike at L4,
where ``evaluate`` compiles the model into matchers, each part here matches itself
against a ``Request``: a policy is read once per configuration change and is small, so
the model is the matcher, and ``Request`` lives here because the model needs it.

Matching (istio/api security/v1beta1/authorization_policy.proto): rules are ORed; a rule
matches when one of its ``from`` sources, one of its ``to`` operations and all of its
``when`` conditions match, a missing section matching anything.  Within a source or
operation the fields are ANDed and each field's values ORed; a ``not*`` field holds when
none of its values match. Strings are Istio's ``abc`` / ``abc*`` / ``*abc`` / ``*``
(``StringMatch``).

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

Depends only on the L4 model (``StringMatch``, IP networks) and ``identity``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...identity import SPIFFE_PREFIX, Identity
from ..model import IPNetwork, StringMatch


class L7Action(StrEnum):
    """The four actions of the API.  Only ALLOW and DENY decide (``evaluate``); AUDIT never
    changes a decision and CUSTOM is not enforced (``convert`` compiles it to nothing)."""

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

