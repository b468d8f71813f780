"""Readiness, liveness and startup probes, run from the node as a kubelet runs them.

``run_probe`` runs one probe once; ``Probes`` runs a container's probes while it
runs (kubelet's prober workers): the startup probe first, then readiness and
liveness, each with its delay, period and thresholds, and tells the container what
they found (ready or not, started, restart it).  The container is reached through
``Probed`` (``containers.Container``), so this module knows nothing of pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from .status import ContainerView

# The probes in the order they start, and how events name them
LABELS = {"startupProbe": "Startup", "readinessProbe": "Readiness",
          "livenessProbe": "Liveness"}


class ProbeFailed(Exception):
    pass


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or ():
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ProbeFailed(f"port {port!r} is not a number and no container port has that name")


# -> the argv prefix and environment that run a command in the container, or None
ExecEntry = Callable[[], tuple[list[str], dict[str, str]] | None]


async def run_probe(probe: dict[str, Any], container: dict[str, Any], pod_ip: str,
                    enter: ExecEntry, session: aiohttp.ClientSession) -> None:
    """Returns on success; raises ProbeFailed with the reason a kubelet would give.
    An exec probe runs inside the container (its cgroup, root, namespaces and
    environment)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        spec = probe["httpGet"]
        host = spec.get("host") or pod_ip
        port = resolve_port(spec.get("port"), container)
        scheme = (spec.get("scheme") or "HTTP").lower()
        url = f"{scheme}://{host}:{port}{spec.get('path') or '/'}"
        headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or ()}
        headers.setdefault("User-Agent", "kube-probe/1.36")
        try:
            async with session.get(url, headers=headers, ssl=False, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                if not 200 <= resp.status < 400:
                    raise ProbeFailed(f"HTTP probe failed with statuscode: {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ProbeFailed(f'Get "{url}": {type(exc).__name__}: {exc}') from None
    elif "tcpSocket" in probe:
        spec = probe["tcpSocket"]
        host = spec.get("host") or pod_ip
        port = resolve_port(spec.get("port"), container)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
        except (OSError, TimeoutError) as exc:
            raise ProbeFailed(f"dial tcp {host}:{port}: {exc or 'timeout'}") from None
    elif "exec" in probe:
        argv = list(probe["exec"].get("command") or ())
        entry = enter()
        if entry is None:
            raise ProbeFailed("container is not running")
        prefix, env = entry
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix, *argv, stdin=asyncio.subprocess.DEVNULL, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)  # nsenter forks into the pod's PID namespace
        except OSError as exc:
            raise ProbeFailed(f"exec {argv[:1]}: {exc}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise ProbeFailed(f"command timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            raise ProbeFailed(f"command exited with {proc.returncode}: "
                              f"{out.decode(errors='replace').strip()[:200]}")
    else:
        raise ProbeFailed("probe has no httpGet, tcpSocket or exec handler (grpc is not "
                          "supported by the local cluster)")


class Probed(Protocol):
    """The container whose probes run (``containers.Container``)."""

    @property
    def name(self) -> str: ...
    @property
    def view(self) -> ContainerView: ...
    @property
    def pod_ip(self) -> str: ...
    @property
    def session(self) -> aiohttp.ClientSession: ...
    @property
    def grace(self) -> int: ...
    def exec_entry(self) -> tuple[list[str], dict[str, str]] | None: ...
    def event(self, reason: str, message: str, kind: str = "Normal") -> None: ...
    def set_ready(self) -> None: ...
    async def signal(self, sig: int) -> None: ...
    async def kill(self, grace: float) -> None: ...


class Probes:
    """The probes of one container while it runs, and what they found so far."""

    def __init__(self, owner: Probed, container: dict[str, Any]) -> None:
        self.owner = owner
        self.container = container
        self.tasks: list[asyncio.Task[None]] = []
        self.readiness_ok = "readinessProbe" not in container
        self.startup_ok = "startupProbe" not in container
        self.startup_done = asyncio.Event()
        if self.startup_ok:
            self.startup_done.set()

    def start(self) -> None:
        for kind in LABELS:
            if kind in self.container:
                self.tasks.append(asyncio.get_running_loop().create_task(
                    self._loop(kind, self.container[kind])))

    def stop(self) -> None:
        """Cancel the loops; the next run starts unproven (not ready, not started)."""
        for t in self.tasks:
            t.cancel()
        self.tasks.clear()
        self.readiness_ok = "readinessProbe" not in self.container
        self.startup_ok = "startupProbe" not in self.container
        if not self.startup_ok:
            self.startup_done.clear()

    async def _loop(self, kind: str, probe: dict[str, Any]) -> None:
        owner = self.owner
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = float(probe.get("periodSeconds", 10))
        failure_threshold = int(probe.get("failureThreshold", 3))
        success_threshold = int(probe.get("successThreshold", 1))
        successes = failures = 0
        while True:
            if kind != "startupProbe":
                await self.startup_done.wait()  # the startup probe goes first
            try:
                await run_probe(probe, self.container, owner.pod_ip, owner.exec_entry,
                                owner.session)
                successes, failures = successes + 1, 0
            except ProbeFailed as exc:
                successes, failures = 0, failures + 1
                owner.event("Unhealthy", f"{LABELS[kind]} probe failed: {exc}", "Warning")
            if kind == "readinessProbe":
                ok = self.readiness_ok
                if successes >= success_threshold:
                    ok = True
                elif failures >= failure_threshold or (failures and not owner.view.ready):
                    ok = False
                if ok != self.readiness_ok:
                    self.readiness_ok = ok
                    owner.set_ready()
            elif kind == "startupProbe" and successes >= 1:
                self.startup_ok = True
                self.startup_done.set()
                owner.view.started = True
                owner.set_ready()
                return
            elif failures >= failure_threshold:  # startup or liveness: restart it
                owner.event("Killing", f"Container {owner.name} failed "
                            f"{LABELS[kind].lower()} probe, will be restarted")
                if kind == "startupProbe":
                    await owner.signal(signal.SIGKILL)
                else:
                    await owner.kill(owner.grace)
                return
            await asyncio.sleep(period)
