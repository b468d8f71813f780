"""pods/exec over WebSocket, so ``kubectl exec`` and ``kubernetes.stream`` work.

The channel protocol (``v4``/``v5.channel.k8s.io``): binary frames whose first byte
is the stream (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 resize; v5 adds
255 "stdin closed").  The command runs in the pod's network namespace with its DNS
settings, from this machine's filesystem, as the provider's ``exec`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from . import errors

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

# pod -> the argv prefix that enters its network (None: the pod is not running here)
Enter = Callable[[dict[str, Any]], list[str] | None]


def _status(code: int) -> bytes:
    if code == 0:
        body: dict[str, Any] = {"metadata": {}, "status": "Success"}
    else:
        body = {"metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    return bytes([ERROR]) + json.dumps(body).encode()


class PodExec:
    def __init__(self, enter: Enter) -> None:
        self.enter = enter

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        pod = api.get(rt, ns, name)
        q = request.query
        argv = q.getall("command", [])
        if not argv:
            raise errors.bad_request("you must specify at least 1 command")
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or ()]
        container = q.get("container") or (containers[0] if containers else "")
        if container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if q.get("tty") in ("true", "1"):
            raise errors.bad_request("the local cluster's exec has no terminal support; run "
                                     "without -t (kubectl exec -i POD -- CMD)")
        prefix = self.enter(pod)
        if prefix is None:
            raise errors.bad_request(
                f"pod {name} is not running on a node of this cluster (no network namespace)")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.ApiError(
                400, "BadRequest", "pods/exec needs a WebSocket upgrade (channel.k8s.io); "
                "SPDY is not supported")
        ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True)
        await ws.prepare(request)
        want_stdin = q.get("stdin") in ("true", "1")
        proc = await asyncio.create_subprocess_exec(
            *prefix, *argv,
            stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
            if stream is None:
                return
            while chunk := await stream.read(65536):
                await ws.send_bytes(bytes([channel]) + chunk)

        async def feed() -> None:
            assert proc.stdin is not None
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel == STDIN and data:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                        await proc.stdin.drain()
                elif channel == CLOSE or (channel == STDIN and not data):
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                proc.stdin.close()

        feeder = asyncio.ensure_future(feed()) if want_stdin else None
        try:
            await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
            code = await proc.wait()
            await ws.send_bytes(_status(code))
        except (ConnectionResetError, asyncio.CancelledError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        finally:
            if feeder is not None:
                feeder.cancel()
            await ws.close()
        return ws
