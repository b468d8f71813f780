"""Putting a scenario's namespace into each mode, through the mesh adapter only.

``none``: not enrolled.  ``l4``: enrolled (ztunnel on both ends).  ``l7``: enrolled
and the scenario's services bound to a waypoint.  The modes are entered in that
order on the same pods, so the three measurements differ only by the mesh.
Whether capture took effect is *observed* (the ``ambient.istio.io/redirection``
annotation Istio sets); an implementation that does not announce it gets a
warning in the result, not a failure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from conformance.adapters.base import (
    FLAVOUR_TODAY,
    WAYPOINT,
    AdapterError,
    MeshAdapter,
    WaypointInfo,
)
from perf.workloads import ScenarioTarget

CAPTURE_ANNOTATION = "ambient.istio.io/redirection"
CAPTURE_WAIT_S = 20.0
SETTLE_S = 1.0
WAYPOINT_NAME = "perf-waypoint"


class ModeUnavailable(Exception):
    """The adapter cannot put the namespace in this mode (e.g. no waypoint support)."""


class ModeFailed(Exception):
    """The adapter claims the mode but setting it up failed: a result, not a skip."""


@dataclass
class ModeState:
    mode: str
    warnings: list[str] = field(default_factory=list)
    waypoint: WaypointInfo | None = None
    capture_confirmed: bool = False


def _all_captured(cluster: Any, namespace: str) -> tuple[bool, list[str]]:
    from kubernetes import client

    with cluster.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    missing = [p.metadata.name for p in running
               if (p.metadata.annotations or {}).get(CAPTURE_ANNOTATION) != "enabled"]
    return bool(running) and not missing, missing


async def wait_captured(cluster: Any, namespace: str, timeout: float = CAPTURE_WAIT_S) -> \
        str | None:
    """None once every running pod is announced captured, else a warning to record."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    while time.monotonic() < deadline:
        done, missing = await asyncio.to_thread(_all_captured, cluster, namespace)
        if done:
            return None
        await asyncio.sleep(0.2)
    return (f"capture not confirmed within {timeout:g}s: pods without "
            f"{CAPTURE_ANNOTATION}=enabled: {', '.join(missing) or 'none running'}")


async def enter(mode: str, adapter: MeshAdapter, cluster: Any, target: ScenarioTarget, *,
                enrolled: bool) -> ModeState:
    """Move ``target``'s namespace into ``mode`` (from ``none`` or ``l4``: modes only add)."""
    state = ModeState(mode)
    ns = target.namespace
    if mode in ("l4", "l7"):
        state.capture_confirmed = enrolled
    if mode == "none":
        if enrolled:
            raise ValueError("the no-mesh mode must come before the namespace is enrolled")
        return state
    if mode in ("l4", "l7") and not enrolled:
        await asyncio.to_thread(adapter.enroll, cluster, ns)
        warning = await wait_captured(cluster, ns)
        state.capture_confirmed = warning is None
        if warning:
            state.warnings.append(warning)
            await asyncio.sleep(SETTLE_S)
    if mode == "l4":
        return state
    if mode == "l7":
        if WAYPOINT not in adapter.features():
            raise ModeUnavailable(f"{adapter.name} does not claim the {WAYPOINT} feature")
        if FLAVOUR_TODAY not in adapter.api_flavours():
            raise ModeUnavailable(f"{adapter.name} does not speak the {FLAVOUR_TODAY} "
                                  "waypoint API the perf runner binds services with")
        try:
            waypoint = await asyncio.to_thread(adapter.add_waypoint, cluster, ns, WAYPOINT_NAME,
                                               flavour=FLAVOUR_TODAY, for_="service")
            for svc in target.waypoint_services:
                await asyncio.to_thread(adapter.use_waypoint, cluster, ns, "service", svc,
                                        waypoint)
        except AdapterError as exc:
            raise ModeFailed(f"waypoint could not be set up: {exc}") from exc
        state.waypoint = waypoint
        # The binding travels to the ztunnels by xDS; warm-up absorbs the rest.
        await asyncio.sleep(SETTLE_S)
        return state
    raise ValueError(f"unknown mode {mode!r}")
