"""The route model: what routing compiles objects into, and matching a request against it.

This is the bottom layer of the routing package.  It holds the request routing looks at
(``HttpRequest``), the answer it gives (``RouteDecision``, with ``HeaderOps`` and
``Retry``), and the compiled form of VirtualService and HTTPRoute rules (``_Rule``,
``_Match``, ``_StringMatch``, ``_Target``, ``_Fault``) that both compilers produce and
``RouteTable`` evaluates.  Matching happens here (``_Match.matches``), at request time,
on already-validated data.  Nothing here reads Kubernetes objects and nothing imports the
compilers: they depend on this module, never the reverse.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

ServiceKey = tuple[str, str]
"""A Service as ``(namespace, name)``."""

STATUS_NO_ROUTE = 404
STATUS_BAD_ROUTE = 500


# --------------------------------------------------------------------------- header changes


@dataclass(frozen=True, slots=True)
class HeaderOps:
    """Request header changes: ``remove`` names, then ``set`` (replace), then ``add``.

    That order is Envoy's (``HeaderParser::evaluateHeaders`` removes before adding), so
    a header both removed and set ends up set.  Names are lowercase.
    """

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def then(self, other: HeaderOps) -> HeaderOps:
        """Both sets of changes (rule-level first, then destination-level)."""
        return HeaderOps(self.set + other.set, self.add + other.add, self.remove + other.remove)

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


NO_HEADER_OPS = HeaderOps()


def apply_header_ops(headers: Sequence[tuple[str, str]], ops: HeaderOps) -> list[tuple[str, str]]:
    """``headers`` (lowercase names) after ``ops``; the input is not modified."""
    drop = {name.lower() for name in ops.remove} | {name.lower() for name, _ in ops.set}
    out = [(n, v) for n, v in headers if n.lower() not in drop]
    seen_set: dict[str, str] = {}
    for name, value in ops.set:  # a later set of the same name replaces an earlier one
        seen_set[name.lower()] = value
    out.extend(seen_set.items())
    out.extend((name.lower(), value) for name, value in ops.add)
    return out


# --------------------------------------------------------------------------- request and decision


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The parts of a request routing looks at.  Header names must be lowercase."""

    method: str
    path: str
    headers: Sequence[tuple[str, str]] = ()
    authority: str = ""

    def header(self, name: str) -> str | None:
        """The header's value, repeated values joined with ``,`` (Envoy), or ``None``."""
        values = [v for n, v in self.headers if n == name]
        return ",".join(values) if values else None

    @property
    def path_only(self) -> str:
        """The path without its query string: what URI matches see."""
        return self.path.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (first value of each)."""
        if "?" not in self.path:
            return {}
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.path.split("?", 1)[1], keep_blank_values=True):
            out.setdefault(k, v)
        return out


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry policy: up to ``1 + attempts`` tries, each bounded by ``per_try_timeout``."""

    attempts: int
    per_try_timeout: float | None
    retry_on: tuple[str, ...]


DEFAULT_RETRY = Retry(2, None, ("connect-failure", "refused-stream", "unavailable", "cancelled"))
"""The mesh default retry policy (istio/api networking/v1alpha3/virtual_service.proto,
``HTTPRetry``)."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """What the waypoint does with the request.

    * ``forward``: send to an endpoint of ``destination`` on ``port`` whose workload
      labels include ``subset_labels`` (``None``: any endpoint), after ``delay`` seconds,
      with ``header_ops`` applied.
    * ``abort``: fault injection; answer ``abort_status`` (after ``delay``).
    * ``error``: the route is unusable; answer ``abort_status`` (404 no route, 500 bad
      destination); ``reason`` says why.
    """

    kind: Literal["forward", "abort", "error"]
    destination: ServiceKey | None
    port: int
    subset_labels: dict[str, str] | None = None
    delay: float = 0.0
    abort_status: int | None = None
    timeout: float | None = None
    retries: Retry | None = None
    header_ops: HeaderOps = NO_HEADER_OPS
    route_name: str | None = None
    reason: str = ""


# --------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class _StringMatch:
    """One string condition.  ``segment_prefix`` is Gateway API ``PathPrefix``."""

    kind: Literal["exact", "prefix", "regex", "present", "segment_prefix"]
    value: str = ""
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None

    def matches(self, s: str | None) -> bool:
        if s is None:
            return False
        if self.kind == "present":
            return True
        if self.kind == "regex":
            assert self.pattern is not None
            return self.pattern.fullmatch(s) is not None
        value, subject = self.value, s
        if self.ignore_case:
            value, subject = value.lower(), subject.lower()
        if self.kind == "exact":
            return subject == value
        if self.kind == "prefix":
            return subject.startswith(value)
        # PathPrefix matches whole path elements: /foo matches /foo and /foo/x, not /foox.
        base = value.rstrip("/")
        return base == "" or subject == base or subject.startswith(base + "/")


@dataclass(frozen=True, slots=True)
class _Match:
    """One match entry: every present condition must hold."""

    path: _StringMatch | None = None
    method: _StringMatch | None = None
    authority: _StringMatch | None = None
    headers: tuple[tuple[str, _StringMatch], ...] = ()
    without_headers: tuple[tuple[str, _StringMatch], ...] = ()
    query: tuple[tuple[str, _StringMatch], ...] = ()
    port: int | None = None
    never: bool = False  # uses an unmodelled condition: fail safe

    def matches(self, req: HttpRequest, port: int) -> bool:
        if self.never:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.path is not None and not self.path.matches(req.path_only):
            return False
        if self.method is not None and not self.method.matches(req.method):
            return False
        if self.authority is not None and not self.authority.matches(req.authority):
            return False
        if not all(m.matches(req.header(n)) for n, m in self.headers):
            return False
        if any(m.matches(req.header(n)) for n, m in self.without_headers):
            return False
        q = req.query if self.query else {}
        return all(m.matches(q.get(n)) for n, m in self.query)


MATCH_ALL = _Match()


@dataclass(frozen=True, slots=True)
class _Target:
    """A weighted destination.  ``error`` set: choosing it answers 500."""

    service: ServiceKey | None
    host: str
    port: int | None
    weight: int
    subset: str | None = None
    header_ops: HeaderOps = NO_HEADER_OPS
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Fault:
    """An injected delay or abort, applied to ``percent`` (0-100) of the requests."""

    percent: float
    delay: float = 0.0
    status: int | None = None

    def fires(self, rng: random.Random) -> bool:
        """Whether this request gets the fault (one draw from ``rng``)."""
        return rng.random() * 100 < self.percent


@dataclass(frozen=True, slots=True)
class _Rule:
    """A route rule, from a VirtualService ``http[]`` entry or an HTTPRoute rule."""

    name: str
    matches: tuple[_Match, ...]
    targets: tuple[_Target, ...]
    single_gets_all: bool = False  # VirtualService: one destination ignores its weight
    delay: _Fault | None = None
    abort: _Fault | None = None
    timeout: float | None = None
    retries: Retry | None = DEFAULT_RETRY
    header_ops: HeaderOps = NO_HEADER_OPS
    ports: frozenset[int] | None = None  # HTTPRoute parentRef port restriction
    unsupported: str | None = None


# --------------------------------------------------------------------------- compiled objects


@dataclass(slots=True)
class _Compiled:
    """A compiled route object plus what to report about it."""

    namespace: str
    name: str
    created: str
    services: set[ServiceKey]
    wildcard: bool
    rules: list[_Rule]
    warnings: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _ServiceRoutes:
    """The ordered rules for one Service, each with its port restriction (``None``: any)."""

    source: Literal["HTTPRoute", "VirtualService"]
    rules: tuple[tuple[_Rule, frozenset[int] | None], ...]
