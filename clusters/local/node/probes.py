"""Readiness, liveness and startup probes, run from the node as a kubelet runs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import aiohttp


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
                start_new_session=True)  # nsenter forks into the node's PID namespace
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
