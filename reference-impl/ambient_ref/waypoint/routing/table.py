"""The route table: every compiler's output put together, and one decision per request.

``RouteTable.build`` runs the three compilers (DestinationRule subsets, VirtualServices,
HTTPRoutes), lets an HTTPRoute win over VirtualServices for the same Service, and keeps
every problem found.  ``RouteTable.route`` finds the first matching rule of a Service
(or the default route), then applies it: fault delay, fault abort, the weighted choice of
a destination (``_pick``), the destination's port and subset, or a 404/500 error
decision.  Randomness comes only from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .httproute import routes_from_http_routes
from .model import (
    DEFAULT_RETRY,
    STATUS_BAD_ROUTE,
    STATUS_NO_ROUTE,
    HttpRequest,
    RouteDecision,
    ServiceKey,
    _Rule,
    _ServiceRoutes,
    _Target,
)
from .reading import Problem
from .services import _service_ports
from .subsets import subsets_from_destination_rules
from .virtualservice import routes_from_virtual_services


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
        table._subsets = subsets_from_destination_rules(
            destination_rules, table.services, table.problems
        )
        vs_by_service = routes_from_virtual_services(
            virtual_services, table.services, table.problems
        )
        gw_by_service = routes_from_http_routes(http_routes, table.services, table.problems)
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
        if rule.delay is not None and rule.delay.fires(rng):
            delay = rule.delay.delay
        if rule.abort is not None and rule.abort.fires(rng):
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
    """The weighted choice of one destination (``None``: all weights are 0).

    ``RouteTable._apply`` looks this name up in this module at call time, so a patched
    ``table._pick`` (the self-test's broken waypoint does that) takes effect.
    """
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
