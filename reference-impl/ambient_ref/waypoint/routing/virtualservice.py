"""The VirtualService compiler: mesh VirtualServices into each Service's ordered rules.

A VirtualService with no ``gateways`` (or one listing ``mesh``) applies to the Services
its ``hosts`` name: exact names first, ``*``/``*.suffix`` wildcards only for Services no
VirtualService names exactly.  Several VirtualServices for one Service are merged, their
``http`` rules concatenated oldest first, and the first matching rule wins.  Each rule
compiles to a ``_Rule`` of the model: matches (``uri``, ``method``, ``authority``,
headers, ``withoutHeaders``, ``queryParams``, ``port``), weighted destinations with
optional subset and header changes, plus the rule's faults (``faults.py``), retries
(``retries.py``), timeout and header changes.  Unmodelled fields make the match or the
rule fail safe, with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .faults import _compile_fault
from .model import (
    MATCH_ALL,
    HeaderOps,
    ServiceKey,
    _Compiled,
    _Match,
    _Rule,
    _ServiceRoutes,
    _StringMatch,
    _Target,
)
from .reading import (
    _UNREADABLE,
    Problem,
    _int,
    _Invalid,
    _list,
    _lowercase_names,
    _meta,
    _obj,
    _optional_port,
    _optional_timeout,
    _problem_from_error,
    _regex,
    _rule_label,
    _str,
    _warning_problems,
)
from .retries import _compile_retries
from .services import _fqdn, resolve_host

MESH_GATEWAY = "mesh"
ISTIO_NETWORKING_GROUP = "networking.istio.io"

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


def routes_from_virtual_services(
    virtual_services: Iterable[object],
    services: Mapping[ServiceKey, object],
    problems: list[Problem],
) -> dict[ServiceKey, _ServiceRoutes]:
    """Each targeted Service's merged rules; unreadable objects and warnings to ``problems``."""
    compiled: list[_Compiled] = []
    for obj in virtual_services:
        try:
            c = _compile_vs(obj, services)  # type: ignore[arg-type]
        except _UNREADABLE as e:
            problems.append(_problem_from_error("VirtualService", obj, e))
            continue
        if c is not None:
            problems.extend(_warning_problems("VirtualService", c))
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


def _header_ops_vs(value: object, path: str) -> HeaderOps:
    """VirtualService ``headers.request`` (``set``/``add`` maps, ``remove`` list)."""
    spec = _obj(value, path)
    req = _obj(spec.get("request"), f"{path}.request")

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        m = _obj(req.get(key), f"{path}.request.{key}")
        return tuple((str(k).lower(), _str(v, f"{path}.request.{key}.{k}")) for k, v in m.items())

    remove = _lowercase_names(req.get("remove"), f"{path}.request.remove")
    return HeaderOps(pairs("set"), pairs("add"), remove)


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
        port=_optional_port(port, f"{path}.port"),
        never=bool(unknown),
    )


def _compile_vs_destination(
    spec: object, path: str, ns: str, services: Mapping[ServiceKey, object]
) -> _Target:
    """One ``route[]`` entry: a weighted destination host, optional subset and port."""
    d = _obj(spec, path, required=True)
    dest = _obj(d.get("destination"), f"{path}.destination", required=True)
    host = _str(dest.get("host"), f"{path}.destination.host")
    subset = dest.get("subset")
    if subset is not None:
        subset = _str(subset, f"{path}.destination.subset")
    port_spec = _obj(dest.get("port"), f"{path}.destination.port")
    port = _optional_port(port_spec.get("number"), f"{path}.destination.port.number")
    weight = _int(d.get("weight", 0), f"{path}.weight", 0)
    svc = resolve_host(host, ns, services)
    return _Target(
        service=svc,
        host=host,
        port=port,
        weight=weight,
        subset=subset,
        header_ops=_header_ops_vs(d.get("headers"), f"{path}.headers"),
        error=None if svc else f"destination host {host!r} is not a known Service",
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
    label = _rule_label(ns, vs_name, spec.get("name"), index)
    matches = tuple(
        _compile_vs_match(
            _obj(m, f"{path}.match[{j}]", required=True), f"{path}.match[{j}]", warnings
        )
        for j, m in enumerate(_list(spec.get("match"), f"{path}.match"))
    ) or (MATCH_ALL,)

    targets = [
        _compile_vs_destination(d, f"{path}.route[{j}]", ns, services)
        for j, d in enumerate(_list(spec.get("route"), f"{path}.route"))
    ]
    if len(targets) > 1 and sum(t.weight for t in targets) == 0:
        raise _Invalid(f"{path}.route", "total destination weight is 0")

    unsupported = [k for k in _VS_RULE_UNSUPPORTED if k in spec]
    if not targets and not unsupported:
        raise _Invalid(path, "a route, redirect, directResponse or delegate is required")
    if unsupported:
        warnings.append((path, f"unmodelled {unsupported}: the rule answers 500"))

    delay, abort = _compile_fault(spec.get("fault"), f"{path}.fault", warnings)
    timeout = _optional_timeout(spec.get("timeout"), f"{path}.timeout")
    retries = _compile_retries(spec.get("retries"), f"{path}.retries")

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
