"""Routing on a waypoint: where one HTTP request addressed to one Service goes.

Sources: bookinfo-policy.md sections 1.6, 1.7 and 4, istio-ambient.md section 5
("Routing on waypoints") and WALKTHROUGH.md step 9.  Everything here is pure: build a
``RouteTable`` from Kubernetes objects (dicts), then ask ``RouteTable.route`` for one
``RouteDecision`` per request.  Randomness (weights, fault percentages) comes only from
the ``random.Random`` the caller passes, so a seeded generator gives repeatable runs.

Which configuration applies to a Service, in order:

1. **HTTPRoute** (``gateway.networking.k8s.io`` v1/v1beta1) whose ``parentRefs`` name the
   Service (``group`` ``""`` or ``core``, ``kind: Service``, ``namespace`` defaulting to
   the route's, optional ``port``/``sectionName`` restricting the port).  If any HTTPRoute
   targets the Service, VirtualServices for it are ignored.  *Decision*: the Gateway API
   producer route is the newer, Service-attached API that istiod translates into its
   internal VirtualService for the waypoint, and a mix is a configuration mistake; letting
   the explicitly attached object win keeps the outcome independent of creation order.
2. **VirtualService** with no ``gateways`` (or one listing ``mesh``) whose ``hosts`` name
   the Service: a short name resolves in the VirtualService's namespace, ``name.ns``,
   ``name.ns.svc`` and ``name.ns.svc.cluster.local`` are qualified; ``*`` and
   ``*.suffix`` wildcards match by FQDN suffix and are used only when no VirtualService
   names the Service exactly (a VirtualService listing both kinds keeps only its exact
   hosts).  Several VirtualServices for one Service are merged, their
   ``http`` rules concatenated oldest first (``creationTimestamp``, then namespace/name),
   as waypoints do since istio/istio#59484.
3. Nothing: the **default route** to the Service itself, any endpoint, the request's port.

Matching.  VirtualService ``http`` rules are ordered and the first match wins; ``match[]``
entries are ORed and the fields inside one entry ANDed; a rule without ``match`` matches
everything.  HTTPRoute (rule, match) pairs are sorted by Gateway API precedence (exact
path, then regular expression, then longest prefix; then a method match; then more
header matches; then more query matches; then the older route, namespace/name, and rule
order) and the first match wins; a rule without ``matches`` is ``PathPrefix /``.  No
match at all is Envoy's ``404 NR``.  Paths are matched without their query string.
``ignoreUriCase`` applies to exact and prefix URIs only (Envoy ignores ``case_sensitive``
for regular expressions).  Regular expressions use ``re.fullmatch`` (close to RE2 for
the patterns used in practice).  ``withoutHeaders`` matches when the header is absent or
its value does not match.  A header's repeated values are joined with ``,`` as Envoy does.

Destinations.  ``route[]``/``backendRefs`` weights choose one destination per request
(share = weight / sum); a single VirtualService destination gets everything whatever
its weight; weight 0 gets nothing; a backendRef weight defaults to 1.  A VirtualService
subset is looked up in the DestinationRule(s) for the destination host (all
DestinationRules for one host are merged, the first definition of a subset winning); the
decision carries the subset ``labels`` and the waypoint picks an endpoint of the Service
whose workload labels include them.

Errors (``kind="error"``, status in ``abort_status``).  Every way a chosen destination
cannot be reached is reported as **500** with a reason: an undefined subset, an unknown
host or Service backend, a Service without the requested port, a cross-namespace
backendRef (ReferenceGrant is not modelled, so it is treated as not permitted), a rule
whose weights are all 0, and a matched rule using a feature this module does not model
(``redirect``, ``directResponse``, ``delegate``, ``URLRewrite`` ...).  Gateway API
mandates 500 for an invalid backend (``TestWaypointWithInvalidBackend``); real Envoy
answers an undefined VirtualService subset with ``503 NC`` (no cluster), which this
reference folds into the same 500 so callers have one status meaning "the route points
nowhere".  An unknown Service is 500 as well; no route matching is 404.

Faults (VirtualService only).  ``fault.delay`` and ``fault.abort`` inject only with a
``percentage`` (``percentage.value``, 0-100); without one nothing is injected.  The
delay is drawn first, then the abort, then the weighted destination (Envoy's fault
filter runs before the router); an aborted request still carries its delay.

Other fields.  ``timeout`` (0 disables), ``retries`` (``attempts: 0`` or a missing
``attempts`` disables them; otherwise the mesh default ``retryOn`` unless given) and
``headers.request`` set/add/remove from the rule and the chosen destination; HTTPRoute
``RequestHeaderModifier`` filters on the rule and on the backendRef and
``timeouts.request``.  Routes without explicit retries carry ``DEFAULT_RETRY``, the mesh
default.

Bad objects never raise.  An object the API server's validation would reject (missing
name, a malformed match, a regex that does not compile, an unparsable duration, a
negative weight ...) is skipped entirely and reported in ``RouteTable.problems``; a
valid object using an unmodelled feature is kept, the affected rule or match is made
fail-safe (the rule answers 500, the match entry never matches) and a problem with
``skipped=False`` says so.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

ServiceKey = tuple[str, str]
"""A Service as ``(namespace, name)``."""

DOMAIN_SUFFIX = "svc.cluster.local"
MESH_GATEWAY = "mesh"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
ISTIO_NETWORKING_GROUP = "networking.istio.io"

STATUS_NO_ROUTE = 404
STATUS_BAD_ROUTE = 500


# --------------------------------------------------------------------------- helpers

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: object) -> float:
    """Seconds in a duration such as ``"1.5s"``, ``"100ms"``, ``"2m"`` or ``"1m30s"``.

    Accepts protobuf JSON durations (``"1.5s"``) and Go/Gateway API ones (``"1h2m"``),
    because VirtualService and HTTPRoute use different spellings of the same idea.  A bare
    ``"0"`` is zero.  Anything else, including a negative or unit-less value, raises
    ``ValueError`` naming the text: a silently misread timeout is worse than an error.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string like '1.5s', got {text!r}")
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("duration is empty")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {text!r}: expected <number><unit> parts with unit "
                "ns, us, ms, s, m or h (e.g. '1.5s', '100ms', '2m')"
            )
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


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


# --------------------------------------------------------------------------- public types


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
"""The mesh default retry policy (bookinfo-policy.md section 4)."""


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


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input object.  ``skipped``: the whole object was ignored."""

    kind: str
    namespace: str
    name: str
    field: str
    message: str
    skipped: bool = True

    def __str__(self) -> str:
        what = "skipped" if self.skipped else "kept"
        return f"{self.kind} {self.namespace}/{self.name}: {self.field}: {self.message} ({what})"


# --------------------------------------------------------------------------- compiled model


class _Invalid(Exception):
    """A field the API server would reject; the object is skipped."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


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
    percent: float
    delay: float = 0.0
    status: int | None = None


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


@dataclass(frozen=True, slots=True)
class _Subsets:
    labels: dict[str, dict[str, str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- object reading


def _meta(obj: object) -> tuple[str, str, str]:
    """(namespace, name, creationTimestamp) of an object, or ``_Invalid``."""
    if not isinstance(obj, Mapping):
        raise _Invalid("(object)", "not an object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise _Invalid("metadata", "missing or not an object")
    name, ns = meta.get("name"), meta.get("namespace", "default")
    if not isinstance(name, str) or not name:
        raise _Invalid("metadata.name", "missing or not a string")
    if not isinstance(ns, str) or not ns:
        raise _Invalid("metadata.namespace", "not a string")
    created = meta.get("creationTimestamp", "")
    return ns, name, created if isinstance(created, str) else ""


def _ident(obj: object) -> tuple[str, str]:
    """Best-effort namespace/name for a problem report about an unreadable object."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return "?", "?"
    return str(meta.get("namespace", "default")), str(meta.get("name", "?"))


def _obj(value: object, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid(path, "must be an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(path, "must be a list")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(path, "must be a string")
    return value


def _int(value: object, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(path, "must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Invalid(path, f"{value} out of range [{lo}, {hi}]")
    return value


def _duration(value: object, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise _Invalid(path, str(e)) from None


def _regex(value: str, path: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as e:
        raise _Invalid(path, f"regex does not compile: {e}") from None


def _string_match(value: object, path: str, *, ignore_case: bool = False) -> _StringMatch:
    """A VirtualService StringMatch; ``{}`` means "present"."""
    spec = _obj(value, path, required=True)
    kinds = [k for k in ("exact", "prefix", "regex") if k in spec]
    if not kinds:
        if spec:
            raise _Invalid(path, f"unknown StringMatch field(s) {sorted(spec)}")
        return _StringMatch("present")
    if len(kinds) > 1:
        raise _Invalid(path, f"only one of exact/prefix/regex allowed, got {kinds}")
    kind = kinds[0]
    text = _str(spec[kind], f"{path}.{kind}")
    if kind == "regex":
        return _StringMatch("regex", text, pattern=_regex(text, f"{path}.regex"))
    return _StringMatch(kind, text, ignore_case=ignore_case)  # type: ignore[arg-type]


def _fqdn(service: ServiceKey) -> str:
    return f"{service[1]}.{service[0]}.{DOMAIN_SUFFIX}"


def resolve_host(
    host: str, namespace: str, services: Mapping[ServiceKey, object]
) -> ServiceKey | None:
    """The known Service a host names, read relative to ``namespace``, or ``None``.

    ``reviews`` is ``(namespace, reviews)``; ``reviews.ns``, ``reviews.ns.svc`` and
    ``reviews.ns.svc.cluster.local`` are qualified.  Any other name is external.
    """
    h = host.strip().rstrip(".").lower()
    for suffix in ("." + DOMAIN_SUFFIX, ".svc"):
        if h.endswith(suffix):
            h = h[: -len(suffix)]
            if h.count(".") != 1:
                return None
            break
    parts = h.split(".")
    if len(parts) == 1:
        key = (namespace, parts[0])
    elif len(parts) == 2:
        key = (parts[1], parts[0])
    else:
        return None
    return key if key in services else None


def _service_ports(obj: object) -> dict[int, str] | None:
    """Port number to port name of a Service object, or ``None`` if it does not say."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    if not isinstance(ports, list):
        return None
    out: dict[int, str] = {}
    for p in ports:
        if isinstance(p, Mapping) and isinstance(p.get("port"), int):
            out[p["port"]] = str(p.get("name", ""))
    return out or None


def _header_ops_vs(value: object, path: str) -> HeaderOps:
    """VirtualService ``headers.request`` (``set``/``add`` maps, ``remove`` list)."""
    spec = _obj(value, path)
    req = _obj(spec.get("request"), f"{path}.request")

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        m = _obj(req.get(key), f"{path}.request.{key}")
        return tuple((str(k).lower(), _str(v, f"{path}.request.{key}.{k}")) for k, v in m.items())

    remove = tuple(
        _str(n, f"{path}.request.remove[{i}]").lower()
        for i, n in enumerate(_list(req.get("remove"), f"{path}.request.remove"))
    )
    return HeaderOps(pairs("set"), pairs("add"), remove)


def _header_ops_gw(value: object, path: str) -> HeaderOps:
    """Gateway API ``RequestHeaderModifier`` (``set``/``add`` lists of name/value)."""
    spec = _obj(value, path, required=True)

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        out = []
        for i, item in enumerate(_list(spec.get(key), f"{path}.{key}")):
            p = f"{path}.{key}[{i}]"
            item = _obj(item, p, required=True)
            out.append((_str(item.get("name"), f"{p}.name").lower(), _str(item.get("value"), p)))
        return tuple(out)

    remove = tuple(
        _str(n, f"{path}.remove[{i}]").lower()
        for i, n in enumerate(_list(spec.get("remove"), f"{path}.remove"))
    )
    return HeaderOps(pairs("set"), pairs("add"), remove)


def _percent(fault: Mapping[str, Any], path: str) -> float | None:
    """``percentage.value`` (0-100) or ``None`` when absent (then nothing is injected)."""
    if "percentage" not in fault:
        return None
    pct = _obj(fault["percentage"], f"{path}.percentage", required=True)
    value = pct.get("value", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise _Invalid(f"{path}.percentage.value", "must be a number in [0, 100]")
    return float(value)


# --------------------------------------------------------------------------- VirtualService


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


def _applies_to_mesh(spec: Mapping[str, Any]) -> bool:
    gateways = _list(spec.get("gateways"), "spec.gateways")
    return not gateways or MESH_GATEWAY in gateways


def _compile_vs(obj: Mapping[str, Any], services: Mapping[ServiceKey, object]) -> _Compiled | None:
    ns, name, created = _meta(obj)
    spec = _obj(obj.get("spec"), "spec", required=True)
    if not _applies_to_mesh(spec):
        return None  # an ingress VirtualService: not a waypoint's concern
    hosts = _list(spec.get("hosts"), "spec.hosts")
    if not hosts:
        raise _Invalid("spec.hosts", "at least one host is required")
    exact: set[ServiceKey] = set()
    wildcard: set[ServiceKey] = set()
    for i, host in enumerate(hosts):
        host = _str(host, f"spec.hosts[{i}]").lower()
        if host.startswith("*"):
            suffix = host[1:]
            wildcard |= {s for s in services if _fqdn(s).endswith(suffix)}
        elif (key := resolve_host(host, ns, services)) is not None:
            exact.add(key)
    warnings: list[tuple[str, str]] = []
    rules = [
        _compile_vs_rule(r, f"spec.http[{i}]", ns, name, i, services, warnings)
        for i, r in enumerate(_list(spec.get("http"), "spec.http"))
    ]
    use_wild = not exact
    return _Compiled(ns, name, created, exact or wildcard, use_wild, rules, warnings)


_VS_MATCH_KNOWN = {
    "name",
    "uri",
    "method",
    "authority",
    "headers",
    "withoutHeaders",
    "port",
    "ignoreUriCase",
    "queryParams",
}
_VS_RULE_UNSUPPORTED = ("redirect", "directResponse", "delegate")


def _compile_vs_match(
    spec: Mapping[str, Any], path: str, warnings: list[tuple[str, str]]
) -> _Match:
    ignore_case = bool(spec.get("ignoreUriCase", False))
    uri = spec.get("uri")
    uri_match = None
    if uri is not None:
        uri_match = _string_match(uri, f"{path}.uri", ignore_case=ignore_case)
        if uri_match.kind == "present":
            raise _Invalid(f"{path}.uri", "needs exact, prefix or regex")

    def header_map(key: str) -> tuple[tuple[str, _StringMatch], ...]:
        m = _obj(spec.get(key), f"{path}.{key}")
        out = []
        for h, sm in m.items():
            h = str(h).lower()
            compiled = _string_match(sm, f"{path}.{key}.{h}")
            if h in ("uri", "scheme", "method", "authority"):
                continue  # pseudo-header keys are ignored (virtual_service.proto)
            out.append((h, compiled))
        return tuple(out)

    method = spec.get("method")
    authority = spec.get("authority")
    port = spec.get("port")
    unknown = sorted(set(spec) - _VS_MATCH_KNOWN)
    if unknown:
        warnings.append((path, f"unmodelled match field(s) {unknown}: entry never matches"))
    return _Match(
        path=uri_match,
        method=_string_match(method, f"{path}.method") if method is not None else None,
        authority=(_string_match(authority, f"{path}.authority") if authority else None),
        headers=header_map("headers"),
        without_headers=header_map("withoutHeaders"),
        query=header_map("queryParams"),
        port=_int(port, f"{path}.port", 1, 65535) if port is not None else None,
        never=bool(unknown),
    )


def _compile_vs_rule(
    spec: object,
    path: str,
    ns: str,
    vs_name: str,
    index: int,
    services: Mapping[ServiceKey, object],
    warnings: list[tuple[str, str]],
) -> _Rule:
    spec = _obj(spec, path, required=True)
    rule_name = spec.get("name")
    label = f"{ns}/{vs_name}/{rule_name if isinstance(rule_name, str) else index}"
    matches = tuple(
        _compile_vs_match(
            _obj(m, f"{path}.match[{j}]", required=True), f"{path}.match[{j}]", warnings
        )
        for j, m in enumerate(_list(spec.get("match"), f"{path}.match"))
    ) or (MATCH_ALL,)

    targets = []
    for j, d in enumerate(_list(spec.get("route"), f"{path}.route")):
        p = f"{path}.route[{j}]"
        d = _obj(d, p, required=True)
        dest = _obj(d.get("destination"), f"{p}.destination", required=True)
        host = _str(dest.get("host"), f"{p}.destination.host")
        subset = dest.get("subset")
        if subset is not None:
            subset = _str(subset, f"{p}.destination.subset")
        port_spec = _obj(dest.get("port"), f"{p}.destination.port")
        port = port_spec.get("number")
        port = _int(port, f"{p}.destination.port.number", 1, 65535) if port is not None else None
        weight = _int(d.get("weight", 0), f"{p}.weight", 0)
        svc = resolve_host(host, ns, services)
        targets.append(
            _Target(
                service=svc,
                host=host,
                port=port,
                weight=weight,
                subset=subset,
                header_ops=_header_ops_vs(d.get("headers"), f"{p}.headers"),
                error=None if svc else f"destination host {host!r} is not a known Service",
            )
        )
    if len(targets) > 1 and sum(t.weight for t in targets) == 0:
        raise _Invalid(f"{path}.route", "total destination weight is 0")

    unsupported = [k for k in _VS_RULE_UNSUPPORTED if k in spec]
    if not targets and not unsupported:
        raise _Invalid(path, "a route, redirect, directResponse or delegate is required")
    if unsupported:
        warnings.append((path, f"unmodelled {unsupported}: the rule answers 500"))

    fault = _obj(spec.get("fault"), f"{path}.fault")
    delay = abort = None
    if "delay" in fault:
        p = f"{path}.fault.delay"
        d = _obj(fault["delay"], p, required=True)
        seconds = _duration(d.get("fixedDelay"), f"{p}.fixedDelay")
        pct = _percent(d, p)
        delay = _Fault(pct, delay=seconds) if pct is not None else None
    if "abort" in fault:
        p = f"{path}.fault.abort"
        a = _obj(fault["abort"], p, required=True)
        if "httpStatus" not in a:
            warnings.append((p, "only httpStatus aborts are modelled: abort ignored"))
        else:
            status = _int(a["httpStatus"], f"{p}.httpStatus", 200, 599)
            pct = _percent(a, p)
            abort = _Fault(pct, status=status) if pct is not None else None

    timeout = None
    if spec.get("timeout") is not None:
        timeout = _duration(spec["timeout"], f"{path}.timeout") or None
    retries: Retry | None = DEFAULT_RETRY
    if spec.get("retries") is not None:
        r = _obj(spec["retries"], f"{path}.retries", required=True)
        attempts = _int(r.get("attempts", 0), f"{path}.retries.attempts", 0)
        per_try = r.get("perTryTimeout")
        retry_on = r.get("retryOn")
        retries = (
            Retry(
                attempts,
                _duration(per_try, f"{path}.retries.perTryTimeout") if per_try else None,
                tuple(
                    x.strip()
                    for x in _str(retry_on, f"{path}.retries.retryOn").split(",")
                    if x.strip()
                )
                if retry_on
                else DEFAULT_RETRY.retry_on,
            )
            if attempts > 0
            else None
        )

    return _Rule(
        name=label,
        matches=matches,
        targets=tuple(targets),
        single_gets_all=True,
        delay=delay,
        abort=abort,
        timeout=timeout,
        retries=retries,
        header_ops=_header_ops_vs(spec.get("headers"), f"{path}.headers"),
        unsupported=f"unmodelled {unsupported}" if unsupported else None,
    )


# --------------------------------------------------------------------------- HTTPRoute


_GW_UNSUPPORTED_FILTERS = {"RequestRedirect", "URLRewrite", "RequestMirror", "ExtensionRef"}


def _is_service_parent(ref: Mapping[str, Any]) -> bool:
    return ref.get("group", GATEWAY_API_GROUP) in ("", "core") and ref.get("kind") == "Service"


def _compile_gw_match(spec: Mapping[str, Any], path: str) -> tuple[_Match, tuple[int, ...]]:
    """A Gateway API match and its precedence key (smaller sorts first)."""
    p = _obj(spec.get("path"), f"{path}.path")
    ptype = p.get("type", "PathPrefix") if p else "PathPrefix"
    pvalue = _str(p.get("value", "/"), f"{path}.path.value") if p else "/"
    if ptype == "Exact":
        path_match = _StringMatch("exact", pvalue)
        key: tuple[int, ...] = (0, 0)
    elif ptype == "PathPrefix":
        if not pvalue.startswith("/"):
            raise _Invalid(f"{path}.path.value", "must start with '/'")
        path_match = _StringMatch("segment_prefix", pvalue)
        key = (2, -len(pvalue.rstrip("/")))
    elif ptype == "RegularExpression":
        path_match = _StringMatch("regex", pvalue, pattern=_regex(pvalue, f"{path}.path.value"))
        key = (1, -len(pvalue))
    else:
        raise _Invalid(f"{path}.path.type", f"unknown type {ptype!r}")

    def named(key_name: str) -> tuple[tuple[str, _StringMatch], ...]:
        out = []
        for i, h in enumerate(_list(spec.get(key_name), f"{path}.{key_name}")):
            hp = f"{path}.{key_name}[{i}]"
            h = _obj(h, hp, required=True)
            n = _str(h.get("name"), f"{hp}.name")
            v = _str(h.get("value"), f"{hp}.value")
            t = h.get("type", "Exact")
            if t == "Exact":
                sm = _StringMatch("exact", v)
            elif t == "RegularExpression":
                sm = _StringMatch("regex", v, pattern=_regex(v, f"{hp}.value"))
            else:
                raise _Invalid(f"{hp}.type", f"unknown type {t!r}")
            out.append((n.lower() if key_name == "headers" else n, sm))
        return tuple(out)

    method = spec.get("method")
    headers, query = named("headers"), named("queryParams")
    match = _Match(
        path=path_match,
        method=_StringMatch("exact", _str(method, f"{path}.method")) if method else None,
        headers=headers,
        query=query,
    )
    return match, (*key, 0 if method else 1, -len(headers), -len(query))


_GwEntry = tuple[tuple[int, ...], int, _Rule]
"""An HTTPRoute (rule, match) pair: precedence key, rule index, compiled rule."""


def _compile_httproute(
    obj: Mapping[str, Any], services: Mapping[ServiceKey, object]
) -> tuple[_Compiled, list[_GwEntry], dict[ServiceKey, frozenset[int] | None]] | None:
    """The route's Service parents (with their port restriction) and its entries."""
    ns, name, created = _meta(obj)
    api = obj.get("apiVersion", f"{GATEWAY_API_GROUP}/v1")
    if not isinstance(api, str) or not api.startswith(GATEWAY_API_GROUP + "/"):
        raise _Invalid("apiVersion", f"not a Gateway API version: {api!r}")
    spec = _obj(obj.get("spec"), "spec", required=True)
    parents: dict[ServiceKey, frozenset[int] | None] = {}
    for i, ref in enumerate(_list(spec.get("parentRefs"), "spec.parentRefs")):
        p = f"spec.parentRefs[{i}]"
        ref = _obj(ref, p, required=True)
        if not _is_service_parent(ref):
            continue  # a Gateway parent: not a waypoint's Service route
        key = (_str(ref.get("namespace", ns), f"{p}.namespace"), _str(ref.get("name"), f"{p}.name"))
        if key not in services:
            continue
        ports: frozenset[int] | None = None
        if ref.get("port") is not None:
            ports = frozenset({_int(ref["port"], f"{p}.port", 1, 65535)})
        elif ref.get("sectionName") is not None:
            section = _str(ref["sectionName"], f"{p}.sectionName")
            known = _service_ports(services[key]) or {}
            ports = frozenset(n for n, pname in known.items() if pname == section)
        if key in parents:  # two refs to one Service: the union of their ports
            old = parents[key]
            ports = None if old is None or ports is None else old | ports
        parents[key] = ports
    if not parents:
        return None

    warnings: list[tuple[str, str]] = []
    entries: list[_GwEntry] = []
    for i, rule in enumerate(_list(spec.get("rules"), "spec.rules")):
        rp = f"spec.rules[{i}]"
        rule = _obj(rule, rp, required=True)
        rule_name = rule.get("name")
        label = f"{ns}/{name}/{rule_name if isinstance(rule_name, str) else i}"
        ops, unsupported = NO_HEADER_OPS, []
        for j, f in enumerate(_list(rule.get("filters"), f"{rp}.filters")):
            fp = f"{rp}.filters[{j}]"
            f = _obj(f, fp, required=True)
            ftype = f.get("type")
            if ftype == "RequestHeaderModifier":
                ops = ops.then(
                    _header_ops_gw(f.get("requestHeaderModifier"), f"{fp}.requestHeaderModifier")
                )
            elif ftype == "ResponseHeaderModifier":
                warnings.append((fp, "response headers are not modelled: filter ignored"))
            elif ftype in _GW_UNSUPPORTED_FILTERS:
                unsupported.append(ftype)
            else:
                raise _Invalid(f"{fp}.type", f"unknown filter type {ftype!r}")
        if unsupported:
            warnings.append((rp, f"unmodelled filter(s) {unsupported}: the rule answers 500"))
        targets = [
            _compile_backend(b, f"{rp}.backendRefs[{j}]", ns, services, warnings)
            for j, b in enumerate(_list(rule.get("backendRefs"), f"{rp}.backendRefs"))
        ]
        timeouts = _obj(rule.get("timeouts"), f"{rp}.timeouts")
        timeout = None
        if timeouts.get("request") is not None:
            timeout = _duration(timeouts["request"], f"{rp}.timeouts.request") or None
        matches = [
            _compile_gw_match(_obj(m, f"{rp}.matches[{j}]", required=True), f"{rp}.matches[{j}]")
            for j, m in enumerate(_list(rule.get("matches"), f"{rp}.matches"))
        ] or [_compile_gw_match({}, f"{rp}.matches")]
        for match, key in matches:
            entries.append(
                (
                    key,
                    i,
                    _Rule(
                        name=label,
                        matches=(match,),
                        targets=tuple(targets),
                        timeout=timeout,
                        header_ops=ops,
                        unsupported=f"unmodelled filter(s) {unsupported}" if unsupported else None,
                    ),
                )
            )
    compiled = _Compiled(ns, name, created, set(parents), False, [e[2] for e in entries], warnings)
    return compiled, entries, parents


def _compile_backend(
    spec: object,
    path: str,
    ns: str,
    services: Mapping[ServiceKey, object],
    warnings: list[tuple[str, str]],
) -> _Target:
    b = _obj(spec, path, required=True)
    name = _str(b.get("name"), f"{path}.name")
    bns = _str(b.get("namespace", ns), f"{path}.namespace")
    weight = _int(b.get("weight", 1), f"{path}.weight", 0, 1_000_000)
    port = b.get("port")
    port = _int(port, f"{path}.port", 1, 65535) if port is not None else None
    ops = NO_HEADER_OPS
    for j, f in enumerate(_list(b.get("filters"), f"{path}.filters")):
        f = _obj(f, f"{path}.filters[{j}]", required=True)
        if f.get("type") == "RequestHeaderModifier":
            ops = ops.then(
                _header_ops_gw(
                    f.get("requestHeaderModifier"), f"{path}.filters[{j}].requestHeaderModifier"
                )
            )
        else:
            warnings.append(
                (f"{path}.filters[{j}]", "only RequestHeaderModifier is modelled: ignored")
            )
    error = None
    if b.get("group", "") not in ("", "core") or b.get("kind", "Service") != "Service":
        error = f"backendRef {name!r} is not a core Service"
    elif bns != ns:
        error = f"backendRef {bns}/{name} is in another namespace (ReferenceGrant not modelled)"
    elif (bns, name) not in services:
        error = f"backendRef Service {bns}/{name} does not exist"
    elif port is None:
        error = f"backendRef Service {bns}/{name} has no port"
    return _Target(
        service=None if error else (bns, name),
        host=f"{bns}/{name}",
        port=port,
        weight=weight,
        header_ops=ops,
        error=error,
    )


# --------------------------------------------------------------------------- the table


_UNREADABLE = (_Invalid, TypeError, ValueError, AttributeError, KeyError)
"""What compiling a malformed object may raise; all of it becomes a ``Problem``."""


@dataclass(frozen=True, slots=True)
class _ServiceRoutes:
    source: Literal["HTTPRoute", "VirtualService"]
    rules: tuple[tuple[_Rule, frozenset[int] | None], ...]


@dataclass(slots=True)
class RouteTable:
    """Compiled routing for every known Service.  Build with ``RouteTable.build``."""

    services: dict[ServiceKey, object]
    problems: list[Problem] = field(default_factory=list)
    _routes: dict[ServiceKey, _ServiceRoutes] = field(default_factory=dict)
    _subsets: dict[ServiceKey, dict[str, dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        virtual_services: Iterable[object] = (),
        destination_rules: Iterable[object] = (),
        http_routes: Iterable[object] = (),
        services: Mapping[ServiceKey, object] | None = None,
    ) -> RouteTable:
        """Compile the objects; anything unreadable goes to ``problems``, never raises."""
        table = cls(services=dict(services or {}))
        table._build_subsets(destination_rules)
        vs_by_service = table._build_virtual_services(virtual_services)
        gw_by_service = table._build_http_routes(http_routes)
        for svc, routes in vs_by_service.items():
            table._routes[svc] = routes
        for svc, routes in gw_by_service.items():
            if svc in table._routes:
                table.problems.append(
                    Problem(
                        "VirtualService",
                        svc[0],
                        svc[1],
                        "spec.hosts",
                        "an HTTPRoute targets this Service; the HTTPRoute wins",
                        skipped=False,
                    )
                )
            table._routes[svc] = routes
        return table

    def _problem(self, kind: str, obj: object, err: Exception) -> None:
        ns, name = _ident(obj)
        if isinstance(err, _Invalid):
            self.problems.append(Problem(kind, ns, name, err.path, err.message))
        else:  # a shape the readers did not foresee: still a problem, never a crash
            self.problems.append(Problem(kind, ns, name, "(unreadable)", repr(err)))

    def _warn(self, kind: str, c: _Compiled) -> None:
        for path, message in c.warnings:
            self.problems.append(Problem(kind, c.namespace, c.name, path, message, skipped=False))

    def _build_subsets(self, destination_rules: Iterable[object]) -> None:
        compiled = []
        for obj in destination_rules:
            try:
                ns, name, created = _meta(obj)
                spec = _obj(obj.get("spec"), "spec", required=True)  # type: ignore[union-attr]
                host = _str(spec.get("host"), "spec.host")
                subsets: dict[str, dict[str, str]] = {}
                for i, s in enumerate(_list(spec.get("subsets"), "spec.subsets")):
                    p = f"spec.subsets[{i}]"
                    s = _obj(s, p, required=True)
                    sname = _str(s.get("name"), f"{p}.name")
                    labels = _obj(s.get("labels"), f"{p}.labels")
                    subsets[sname] = {str(k): _str(v, f"{p}.labels.{k}") for k, v in labels.items()}
            except _UNREADABLE as e:
                self._problem("DestinationRule", obj, e)
                continue
            svc = resolve_host(host, ns, self.services)
            if svc is not None:
                compiled.append(((created, ns, name), svc, subsets))
        for _, svc, subsets in sorted(compiled, key=lambda c: c[0]):
            merged = self._subsets.setdefault(svc, {})
            for sname, labels in subsets.items():
                merged.setdefault(sname, labels)  # the oldest definition wins

    def _build_virtual_services(
        self, virtual_services: Iterable[object]
    ) -> dict[ServiceKey, _ServiceRoutes]:
        compiled: list[_Compiled] = []
        for obj in virtual_services:
            try:
                c = _compile_vs(obj, self.services)  # type: ignore[arg-type]
            except _UNREADABLE as e:
                self._problem("VirtualService", obj, e)
                continue
            if c is not None:
                self._warn("VirtualService", c)
                compiled.append(c)
        compiled.sort(key=lambda c: (c.created, c.namespace, c.name))
        out: dict[ServiceKey, _ServiceRoutes] = {}
        named_exactly: set[ServiceKey] = set()
        # Exact hosts first; wildcard VirtualServices only reach Services no one names.
        for wildcard_pass in (False, True):
            for c in compiled:
                if c.wildcard != wildcard_pass:
                    continue
                for svc in c.services:
                    if wildcard_pass and svc in named_exactly:
                        continue
                    if not wildcard_pass:
                        named_exactly.add(svc)
                    prev = out.get(svc)
                    rules = (prev.rules if prev else ()) + tuple((r, None) for r in c.rules)
                    out[svc] = _ServiceRoutes("VirtualService", rules)
        return out

    def _build_http_routes(self, http_routes: Iterable[object]) -> dict[ServiceKey, _ServiceRoutes]:
        per_service: dict[
            ServiceKey, list[tuple[tuple[Any, ...], _Rule, frozenset[int] | None]]
        ] = {}
        for obj in http_routes:
            try:
                result = _compile_httproute(obj, self.services)  # type: ignore[arg-type]
            except _UNREADABLE as e:
                self._problem("HTTPRoute", obj, e)
                continue
            if result is None:
                continue
            c, entries, parents = result
            self._warn("HTTPRoute", c)
            for svc, ports in parents.items():
                for key, rule_index, rule in entries:
                    order = (*key, c.created, c.namespace, c.name, rule_index)
                    per_service.setdefault(svc, []).append((order, rule, ports))
        return {
            svc: _ServiceRoutes(
                "HTTPRoute", tuple((r, p) for _, r, p in sorted(items, key=lambda e: e[0]))
            )
            for svc, items in per_service.items()
        }

    # ------------------------------------------------------------------ routing

    def route(
        self, service: ServiceKey, port: int, request: HttpRequest, rng: random.Random
    ) -> RouteDecision:
        """The decision for ``request`` sent to ``service`` on ``port``."""
        if service not in self.services:
            return _error(
                STATUS_BAD_ROUTE, port, None, f"unknown Service {service[0]}/{service[1]}"
            )
        routes = self._routes.get(service)
        if routes is None:
            return RouteDecision(
                kind="forward",
                destination=service,
                port=port,
                retries=DEFAULT_RETRY,
                reason="default route: no VirtualService or HTTPRoute targets the Service",
            )
        for rule, ports in routes.rules:
            if ports is not None and port not in ports:
                continue
            if any(m.matches(request, port) for m in rule.matches):
                return self._apply(rule, routes.source, service, port, rng)
        return _error(
            STATUS_NO_ROUTE, port, None, f"no {routes.source} rule matches the request (404 NR)"
        )

    def _apply(
        self,
        rule: _Rule,
        source: str,
        service: ServiceKey,
        port: int,
        rng: random.Random,
    ) -> RouteDecision:
        if rule.unsupported:
            return _error(STATUS_BAD_ROUTE, port, rule.name, f"{source} rule: {rule.unsupported}")
        delay = 0.0
        if rule.delay is not None and rng.random() * 100 < rule.delay.percent:
            delay = rule.delay.delay
        if rule.abort is not None and rng.random() * 100 < rule.abort.percent:
            return RouteDecision(
                kind="abort",
                destination=None,
                port=port,
                delay=delay,
                abort_status=rule.abort.status,
                header_ops=rule.header_ops,
                route_name=rule.name,
                reason=f"fault abort {rule.abort.status} injected",
            )
        target = _pick(rule, rng)
        if target is None:
            return _error(STATUS_BAD_ROUTE, port, rule.name, "every destination has weight 0")
        if target.error or target.service is None:
            return _error(STATUS_BAD_ROUTE, port, rule.name, target.error or "no destination")
        dest_port = target.port
        if dest_port is None:
            known = _service_ports(self.services[target.service])
            if target.service == service or not known or len(known) != 1:
                dest_port = port
            else:
                dest_port = next(iter(known))
        known = _service_ports(self.services[target.service])
        if known is not None and dest_port not in known:
            return _error(
                STATUS_BAD_ROUTE,
                port,
                rule.name,
                f"Service {target.service[0]}/{target.service[1]} has no port {dest_port}",
            )
        labels = None
        if target.subset is not None:
            labels = self._subsets.get(target.service, {}).get(target.subset)
            if labels is None:
                return _error(
                    STATUS_BAD_ROUTE,
                    port,
                    rule.name,
                    f"no healthy upstream: subset {target.subset!r} of {target.host!r} is not "
                    "defined by any DestinationRule",
                )
        subset_text = f" subset {target.subset}" if target.subset else ""
        return RouteDecision(
            kind="forward",
            destination=target.service,
            port=dest_port,
            subset_labels=dict(labels) if labels is not None else None,
            delay=delay,
            timeout=rule.timeout,
            retries=rule.retries,
            header_ops=rule.header_ops.then(target.header_ops),
            route_name=rule.name,
            reason=f"{source} rule {rule.name} -> {target.host}{subset_text}",
        )


def _pick(rule: _Rule, rng: random.Random) -> _Target | None:
    """The weighted choice of one destination (``None``: all weights are 0)."""
    targets = rule.targets
    if not targets:
        return None
    if len(targets) == 1 and rule.single_gets_all:
        return targets[0]
    total = sum(t.weight for t in targets)
    if total <= 0:
        return None
    draw = rng.randrange(total)
    for t in targets:
        if draw < t.weight:
            return t
        draw -= t.weight
    raise AssertionError("unreachable: draw < total")


def _error(status: int, port: int, route_name: str | None, reason: str) -> RouteDecision:
    return RouteDecision(
        kind="error",
        destination=None,
        port=port,
        abort_status=status,
        route_name=route_name,
        reason=reason,
    )


__all__ = [
    "DEFAULT_RETRY",
    "HeaderOps",
    "HttpRequest",
    "Problem",
    "Retry",
    "RouteDecision",
    "RouteTable",
    "apply_header_ops",
    "parse_duration",
    "resolve_host",
]
