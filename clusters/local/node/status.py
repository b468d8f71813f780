"""A pod's status from its containers' states: phase, conditions, container statuses.

Pure functions of the node agent's view, so the phase and condition rules (which
are what the suite and kubectl read) are testable without processes; and
``keep_written``, which writes that status to the API each time it changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..kubeclient import KubeClient, KubeError

log = logging.getLogger("node")


@dataclass
class ContainerView:
    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    # exactly one of {"waiting": {...}}, {"running": {...}}, {"terminated": {...}}
    state: dict[str, Any] = field(default_factory=lambda: {
        "waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"local://{self.image}",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def _condition(ctype: str, ok: bool, since: dict[str, str], now: str,
               reason: str | None = None) -> dict[str, Any]:
    status = "True" if ok else "False"
    key = f"{ctype}={status}"
    since.setdefault(key, now)
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None,
                            "lastTransitionTime": since[key]}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def phase_of(restart_policy: str, init: list[ContainerView],
             main: list[ContainerView]) -> str:
    if any("terminated" in c.state and c.state["terminated"].get("exitCode") != 0
           for c in init) and restart_policy == "Never":
        return "Failed"
    if not main:
        return "Pending"
    if all("terminated" in c.state for c in main):
        if restart_policy == "Always":
            return "Running"
        codes = [c.state["terminated"].get("exitCode", 0) for c in main]
        if all(code == 0 for code in codes):
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    if any("running" in c.state or c.restart_count or "terminated" in c.state for c in main):
        return "Running"
    return "Pending"


def pod_status(pod: dict[str, Any], init: list[ContainerView], main: list[ContainerView], *,
               pod_ip: str | None, host_ip: str, start_time: str, now: str,
               sandbox_ready: bool, since: dict[str, str]) -> dict[str, Any]:
    """The status object a kubelet would write for this pod now.

    ``since`` remembers when each condition took its current value, so transition
    times stay put across rewrites.
    """
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy", "Always")
    init_done = all("terminated" in c.state and c.state["terminated"].get("exitCode") == 0
                    for c in init)
    containers_ready = bool(main) and all(c.ready for c in main)
    phase = phase_of(policy, init, main)
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, since, now),
        _condition("Initialized", init_done, since, now, "ContainersNotInitialized"),
        _condition("Ready", containers_ready and phase == "Running", since, now,
                   "ContainersNotReady"),
        _condition("ContainersReady", containers_ready, since, now, "ContainersNotReady"),
        _condition("PodScheduled", True, since, now),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        "containerStatuses": [c.as_status() for c in main],
    }
    if init:
        status["initContainerStatuses"] = [c.as_status() for c in init]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


async def keep_written(client: KubeClient, namespace: str, name: str,
                       current: Callable[[], dict[str, Any]], dirty: asyncio.Event) -> None:
    """Each time ``dirty`` is set, write ``current()`` as the pod's status unless it is
    what was written last; a failed write is tried again after 0.5 s.  Returns once
    the pod is gone."""
    written: dict[str, Any] | None = None
    while True:
        await dirty.wait()
        dirty.clear()
        status = current()
        if status == written:
            continue
        try:
            await client.patch(f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                               {"status": status})
            written = status
        except (KubeError, aiohttp.ClientError, OSError) as exc:
            if isinstance(exc, KubeError) and exc.status == 404:
                return
            log.warning("status of %s/%s not written: %s", namespace, name, exc)
            await asyncio.sleep(0.5)
            dirty.set()
