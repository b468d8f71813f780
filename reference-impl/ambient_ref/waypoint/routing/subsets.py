"""Subsets: the DestinationRule compiler, from each Service to its named label sets.

A VirtualService destination may name a ``subset``; the waypoint then picks an endpoint
whose workload labels include that subset's ``labels``.  All DestinationRules for one
host are merged, oldest first (``creationTimestamp``, then namespace/name), and the
first definition of a subset name wins.  A DestinationRule for a host that is not a
known Service is ignored; an unreadable one becomes a ``Problem``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import ServiceKey
from .reading import _UNREADABLE, Problem, _list, _meta, _obj, _problem_from_error, _str
from .services import resolve_host

Subsets = dict[ServiceKey, dict[str, dict[str, str]]]
"""Service to subset name to the labels an endpoint must carry."""


def subsets_from_destination_rules(
    destination_rules: Iterable[object],
    services: Mapping[ServiceKey, object],
    problems: list[Problem],
) -> Subsets:
    """The merged subsets of every known Service; unreadable objects go to ``problems``."""
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
            problems.append(_problem_from_error("DestinationRule", obj, e))
            continue
        svc = resolve_host(host, ns, services)
        if svc is not None:
            compiled.append(((created, ns, name), svc, subsets))
    out: Subsets = {}
    for _, svc, subsets in sorted(compiled, key=lambda c: c[0]):
        merged = out.setdefault(svc, {})
        for sname, labels in subsets.items():
            merged.setdefault(sname, labels)  # the oldest definition wins
    return out
