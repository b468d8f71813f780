"""The HTTPRoute compiler: Gateway API routes attached to Services, in precedence order.

An HTTPRoute applies to the Services its ``parentRefs`` name (``kind: Service``, core
group; ``port``/``sectionName`` restrict the port).  Its (rule, match) pairs are sorted
by Gateway API precedence (exact path, then regular expression, then longest prefix;
then a method match; then more header matches; then more query matches; then the older
route, namespace/name, and rule order), each pair becoming a one-match ``_Rule`` of the
model.  ``backendRefs`` must be core Services in the route's namespace (ReferenceGrant
is not modelled) with a port; anything else compiles to a target that answers 500.
``RequestHeaderModifier`` filters and ``timeouts.request`` are modelled; other filters
are ignored with a warning or make the rule answer 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import (
    NO_HEADER_OPS,
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
from .services import _service_ports

GATEWAY_API_GROUP = "gateway.networking.k8s.io"

_GW_UNSUPPORTED_FILTERS = {"RequestRedirect", "URLRewrite", "RequestMirror", "ExtensionRef"}

_GwEntry = tuple[tuple[int, ...], int, _Rule]
"""An HTTPRoute (rule, match) pair: precedence key, rule index, compiled rule."""


def routes_from_http_routes(
    http_routes: Iterable[object],
    services: Mapping[ServiceKey, object],
    problems: list[Problem],
) -> dict[ServiceKey, _ServiceRoutes]:
    """Each parent Service's rules in precedence order; unreadable objects to ``problems``."""
    per_service: dict[ServiceKey, list[tuple[tuple[Any, ...], _Rule, frozenset[int] | None]]] = {}
    for obj in http_routes:
        try:
            result = _compile_httproute(obj, services)  # type: ignore[arg-type]
        except _UNREADABLE as e:
            problems.append(_problem_from_error("HTTPRoute", obj, e))
            continue
        if result is None:
            continue
        c, entries, parents = result
        problems.extend(_warning_problems("HTTPRoute", c))
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

    remove = _lowercase_names(spec.get("remove"), f"{path}.remove")
    return HeaderOps(pairs("set"), pairs("add"), remove)


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
        if (port := _optional_port(ref.get("port"), f"{p}.port")) is not None:
            ports = frozenset({port})
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
        label = _rule_label(ns, name, rule.get("name"), i)
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
        timeout = _optional_timeout(timeouts.get("request"), f"{rp}.timeouts.request")
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
    port = _optional_port(b.get("port"), f"{path}.port")
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
