"""pods/portforward as kubectl 1.37 asks for it: SPDY streams tunnelled in a WebSocket.

kubectl opens a WebSocket with the subprotocol ``SPDY/3.1+portforward.k8s.io``
(client-go ``tools/portforward/tunneling_dialer.go``; the PortForwardWebsockets
gate, on by default since 1.31) and speaks SPDY inside it (``spdy.py``).  For each
local connection it opens two streams with the headers ``streamType`` (``error``
then ``data``), ``port`` and ``requestID`` (``tools/portforward/portforward.go``),
and waits for each stream's SYN_REPLY.  As the kubelet does
(k8s.io/kubelet's streaming ``portforward/httpstream.go``), the data stream is
joined to a TCP connection to ``localhost:<port>`` inside the pod's network
namespace; a connection that cannot be made is reported on the error stream
(kubectl prints it), and each side's end of data is passed on as a half-close.

kubectl's fallback, a plain SPDY upgrade (``Upgrade: SPDY/3.1``,
``X-Stream-Protocol-Version: portforward.k8s.io``; used when the WebSocket upgrade
fails, or with ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``), is served too: the
response is the kubelet's 101 with the protocol it chose, and the connection then
carries the same SPDY session, unwrapped.  Services are forwarded by kubectl itself,
which picks a pod and a target port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from . import errors, spdy, spdyupgrade

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
# the protocol of the plain SPDY upgrade (client-go tools/portforward)
SPDY_PROTOCOL = "portforward.k8s.io"
READ_CHUNK = 32 * 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dial = Callable[[dict[str, Any], int], Awaitable[Streams]]


def dial_in_pod_netns(netns_path: Callable[[dict[str, Any]], str]) -> Dial:
    """A dialer to ``localhost:<port>`` in a pod's network namespace.  The socket is
    made in a thread that enters the namespace and leaves it again (a socket stays in
    the namespace it was made in); connecting and all I/O then run on the loop."""
    from ..network import netns

    def make_socket(name: str) -> socket.socket:
        with netns.entered(name):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def dial(pod: dict[str, Any], port: int) -> Streams:
        sock = await asyncio.to_thread(make_socket, netns_path(pod))
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    return dial


@dataclass
class _Request:
    """One forwarded connection: kubectl's error and data streams for a requestID."""

    port: int
    error_stream: int | None = None
    data_stream: int | None = None
    writer: asyncio.StreamWriter | None = None
    pending: list[tuple[bytes, bool]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class PodPortForward:
    def __init__(self, dial: Dial) -> None:
        self.dial = dial

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        if rt.key != ("", "pods"):
            raise errors.method_not_allowed(f"{rt.plural} have no portforward subresource")
        pod = api.get(rt, ns, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase != "Running":
            raise errors.bad_request(f"unable to forward port because pod is not running. "
                                     f"Current status={phase}")
        if spdyupgrade.requested(request):
            return await self._serve_spdy(request, pod)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.bad_request(
                f"pods/portforward needs a connection upgrade: WebSocket with the subprotocol "
                f"{PROTOCOL} (kubectl 1.31 and later) or {spdyupgrade.UPGRADE}")
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), autoping=True)
        await ws.prepare(request)
        if ws.ws_protocol != PROTOCOL:
            await ws.close(message=f"subprotocol {PROTOCOL} required".encode())
            return ws

        async def received() -> AsyncIterator[bytes]:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    yield msg.data

        async def send(data: bytes) -> None:
            if not ws.closed:
                await ws.send_bytes(data)

        await _Session(send, pod, self.dial).run(received())
        return ws

    async def _serve_spdy(self, request: web.Request, pod: dict[str, Any]
                          ) -> web.StreamResponse:
        """The plain SPDY upgrade: the kubelet's handshake and 101, then SPDY on the
        bare connection."""
        protocol = spdyupgrade.negotiate(request, (SPDY_PROTOCOL,))
        response, raw, send = await spdyupgrade.upgrade(request, protocol)
        await _Session(send, pod, self.dial).run(raw.chunks())
        return response


class _Session(spdyupgrade.SpdySession):
    """One port-forward session of kubectl's, whatever carries it (``send`` writes
    bytes to kubectl; ``run`` reads what kubectl sends)."""

    def __init__(self, send: spdyupgrade.Send, pod: dict[str, Any], dial: Dial) -> None:
        super().__init__(send)
        self.pod = pod
        self.dial = dial
        self.requests: dict[str, _Request] = {}
        self.by_stream: dict[int, _Request] = {}

    async def run(self, received: AsyncIterator[bytes]) -> None:
        try:
            await self.pump(received)
        finally:
            for req in self.requests.values():
                if req.task is not None:
                    req.task.cancel()
                if req.writer is not None:
                    req.writer.close()
            tasks = [r.task for r in self.requests.values() if r.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    def on(self, event: spdy.Event) -> None:
        if isinstance(event, spdy.StreamOpened):
            self.conn.reply(event.stream_id)
            kind = event.headers.get("streamtype")
            request_id = event.headers.get("requestid", "")
            try:
                port = int(event.headers.get("port", ""))
            except ValueError:
                self.conn.reset(event.stream_id, spdy.PROTOCOL_ERROR)
                return
            req = self.requests.setdefault(request_id, _Request(port))
            self.by_stream[event.stream_id] = req
            if kind == "error":
                req.error_stream = event.stream_id
            elif kind == "data":
                req.data_stream = event.stream_id
                req.task = asyncio.ensure_future(self._forward(req))
            else:
                self.conn.reset(event.stream_id, spdy.PROTOCOL_ERROR)
        elif isinstance(event, spdy.DataReceived):
            req = self.by_stream.get(event.stream_id)
            if req is None or event.stream_id != req.data_stream:
                return  # kubectl writes nothing on the error stream but its close
            if req.writer is None:
                req.pending.append((event.data, event.fin))
            else:
                _write(req.writer, event.data, event.fin)
        elif isinstance(event, spdy.StreamReset):
            req = self.by_stream.get(event.stream_id)
            if req is not None and req.task is not None and event.stream_id == req.data_stream:
                req.task.cancel()

    async def _forward(self, req: _Request) -> None:
        assert req.data_stream is not None
        try:
            reader, writer = await self.dial(self.pod, req.port)
        except OSError as exc:
            meta = self.pod["metadata"]
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            # as containerd words it, with the kubelet's prefix
            message = (f"error forwarding port {req.port} to pod {meta['name']}, uid "
                       f"{meta['uid']}: failed to connect to localhost:{req.port} inside the "
                       f"pod's network namespace: dial tcp4 127.0.0.1:{req.port}: connect: "
                       f"{why}")
            if req.error_stream is not None:
                self.conn.send_data(req.error_stream, message.encode(), fin=True)
            self.conn.send_data(req.data_stream, b"", fin=True)
            await self.flush()
            return
        req.writer = writer
        for data, fin in req.pending:
            _write(writer, data, fin)
        req.pending.clear()
        try:
            while chunk := await reader.read(READ_CHUNK):
                self.conn.send_data(req.data_stream, chunk)
                await self.flush()
            self.conn.send_data(req.data_stream, b"", fin=True)
            if req.error_stream is not None:
                self.conn.send_data(req.error_stream, b"", fin=True)
            await self.flush()
        except (ConnectionError, OSError):
            self.conn.reset(req.data_stream)
            await self.flush()
        finally:
            writer.close()


def _write(writer: asyncio.StreamWriter, data: bytes, fin: bool) -> None:
    if writer.is_closing():
        return
    if data:
        writer.write(data)
    if fin and writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
