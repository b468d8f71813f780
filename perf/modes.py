"""Putting a scenario's namespace into each mode, through the mesh adapter only.

``none``: not enrolled.  ``l4``: enrolled (ztunnel on both ends).  ``l7``: enrolled
and the scenario's services bound to a waypoint.  The modes are entered in that
order on the same pods, so the three measurements differ only by the mesh.
Whether capture took effect is *observed* (the ``ambient.istio.io/redirection``
annotation Istio sets); an implementation that does not announce it gets a
warning in the result, not a failure.

Several implementations can be measured on the same pods in one run: after the
first one's modes, the namespace is taken out of the mesh again (``leave``: the
waypoint binding and the waypoint removed, the namespace un-enrolled, release
observed) before the next implementation is installed.  The first
implementation's modes keep their plain ids (``l4``), another's carry its name
(``l4@istio``), so results of single-implementation runs still compare.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from clusters.polling import apoll
from conformance.adapters.base import (
    FLAVOUR_TODAY,
    AdapterError,
    MeshAdapter,
    WaypointInfo,
)
from perf.workloads import ScenarioTarget
from profiles.features import WAYPOINT

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


def mode_id(mode: str, implementation: str | None = None) -> str:
    """``l4`` for the run's first implementation, ``l4@istio`` for ``implementation``."""
    return mode if implementation is None else f"{mode}@{implementation}"


def _pods_not_in_state(cluster: Any, namespace: str, captured: bool) -> tuple[bool, list[str]]:
    """Whether the namespace has running pods, and those not yet announced ``captured``
    (or, for ``captured=False``, those still announced captured)."""
    from kubernetes import client

    with cluster.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    off = [p.metadata.name for p in running
           if ((p.metadata.annotations or {}).get(CAPTURE_ANNOTATION) == "enabled") != captured]
    return bool(running), off


async def _wait_capture_state(cluster: Any, namespace: str, captured: bool,
                              timeout: float) -> str | None:
    """None once every running pod is in the state, else which pods are not, and why."""
    polled = await apoll(
        lambda: asyncio.to_thread(_pods_not_in_state, cluster, namespace, captured),
        lambda seen: seen[0] and not seen[1], timeout=timeout, interval=0.2, max_interval=0.2)
    if polled.held:
        return None
    off = polled.value[1]
    what = ("capture not confirmed", "pods without") if captured else \
        ("release not confirmed", "pods still announced")
    return (f"{what[0]} within {timeout:g}s: {what[1]} {CAPTURE_ANNOTATION}=enabled: "
            f"{', '.join(off) or 'none running'}")


async def wait_captured(cluster: Any, namespace: str, timeout: float = CAPTURE_WAIT_S) -> \
        str | None:
    """None once every running pod is announced captured, else a warning to record."""
    return await _wait_capture_state(cluster, namespace, True, timeout)


async def wait_released(cluster: Any, namespace: str, timeout: float = CAPTURE_WAIT_S) -> \
        str | None:
    """None once no running pod is announced captured, else why the release is unproven."""
    return await _wait_capture_state(cluster, namespace, False, timeout)


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
        unsupported = adapter.unsupported_on(cluster).get(WAYPOINT)
        if unsupported:
            raise ModeUnavailable(f"{adapter.name} cannot run a waypoint on this cluster: "
                                  f"{unsupported}")
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


async def leave(state: ModeState, adapter: MeshAdapter, cluster: Any,
                target: ScenarioTarget) -> str | None:
    """Take ``target``'s namespace out of the mesh again, so that another implementation
    can be measured on the same pods.

    Returns None once the release is observed, or a warning when it cannot be: a
    namespace that was never announced captured cannot be seen leaving, so there the
    un-enrollment is trusted and said so.  Raises ModeFailed when pods stay announced
    captured: measuring the next implementation on them would measure both.
    """
    ns = target.namespace
    try:
        if state.waypoint is not None:
            for svc in target.waypoint_services:
                await asyncio.to_thread(adapter.unuse_waypoint, cluster, ns, "service", svc)
            await asyncio.to_thread(adapter.remove_waypoint, cluster, state.waypoint)
        await asyncio.to_thread(adapter.unenroll, cluster, ns)
    except AdapterError as exc:
        raise ModeFailed(f"{adapter.name} could not take {ns} out of the mesh: {exc}") from exc
    if not state.capture_confirmed:
        return (f"{ns} was never announced captured, so its release by {adapter.name} "
                "could not be observed")
    stuck = await wait_released(cluster, ns)
    if stuck:
        raise ModeFailed(f"{adapter.name} did not release {ns}: {stuck}")
    return None
