"""The HBONE server: terminate mutual TLS and HTTP/2 CONNECT, then splice to upstream.

ztunnel runs one of these per pod (port 15008 inside the pod's network namespace), so
the server is handed listening sockets rather than binding its own, and picks the TLS
context by the local address a connection arrived on: that address is the destination
workload, whose certificate must be presented (there is no SNI to choose by).

Per CONNECT stream the server asks a handler what to do.  The handler decides policy
and reachability; the server owns the protocol: it answers 200 only once the upstream
is connected, answers rejections with their status, and relays bytes with half-close
and reset passed through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..identity import Identity
from .connection import (
    STREAM_LIMIT,
    Address,
    HboneConnection,
    as_address,
    format_address,
    reset_transport,
    set_nodelay,
)
from .errors import PeerVerificationError
from .relay import RelayResult, relay
from .session import SERVER_MAX_STREAMS, Header, Http2Settings, Tunnel
from .tls import ServerContext

log = logging.getLogger("ambient_ref.hbone")

Upstream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class ConnectRequest:
    """A CONNECT as the handler sees it: where to, from whom, and with which headers."""

    # ``ip:port`` of the destination (``host:port`` when a waypoint is addressed by name).
    authority: str
    # Regular headers in arrival order (``forwarded``, ``baggage``, ``traceparent``...).
    headers: list[Header]
    # The client's verified SPIFFE identity: what authorization policies match on.
    peer_identity: Identity
    # The TCP endpoints of the carrying connection; local is the address the client
    # dialled (the destination pod's IP for ztunnel's inbound).
    local_address: Address
    peer_address: Address

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True)
class ConnectResponse:
    """The handler's verdict.  Build it with :meth:`reject`, :meth:`accept`,
    :meth:`accept_via` or :meth:`serve_with`."""

    status: int
    # Logged with a rejection, the way ztunnel logs the policy that denied it.
    reason: str = ""
    body: bytes = b""
    upstream: Upstream | None = None
    connect: Callable[[], Awaitable[Upstream]] | None = None
    serve: Callable[[Tunnel], Awaitable[None]] | None = None
    # Called with the byte counts once a relayed tunnel is over (for metrics).
    on_done: Callable[[RelayResult], None] | None = field(default=None, compare=False)

    @classmethod
    def reject(cls, status: int, reason: str = "", body: bytes = b"") -> ConnectResponse:
        """Refuse the tunnel: 400 (bad request), 401 (policy), 503 (unreachable)."""
        if status == 200:
            raise ValueError("a rejection needs a non-200 status")
        return cls(status=status, reason=reason, body=body)

    @classmethod
    def accept(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_done: Callable[[RelayResult], None] | None = None,
    ) -> ConnectResponse:
        """Accept with an upstream the handler has already connected."""
        return cls(status=200, upstream=(reader, writer), on_done=on_done)

    @classmethod
    def accept_via(
        cls,
        connect: Callable[[], Awaitable[Upstream]],
        *,
        on_done: Callable[[RelayResult], None] | None = None,
    ) -> ConnectResponse:
        """Accept once ``connect()`` succeeds; if it raises OSError the client gets 503."""
        return cls(status=200, connect=connect, on_done=on_done)

    @classmethod
    def serve_with(cls, serve: Callable[[Tunnel], Awaitable[None]]) -> ConnectResponse:
        """Answer 200 and hand the tunnel itself to ``serve`` (e.g. a waypoint that
        terminates the traffic instead of relaying it).  ``serve`` owns closing it."""
        return cls(status=200, serve=serve)


Handler = Callable[[ConnectRequest], Awaitable[ConnectResponse]]


class Listener:
    """One listening socket being served, and the connections it accepted."""

    def __init__(self, server: HboneServer, sock: socket.socket) -> None:
        self._server = server
        self.socket = sock
        self.address = sock.getsockname()
        self.connections: set[HboneConnection] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(server._accept_loop(self), name=f"hbone accept {sock}")

    async def close(self, *, drop_connections: bool = True) -> None:
        """Stop accepting (and close the socket); optionally abort its connections too,
        as when the pod behind it is gone."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for task in list(self.handshakes):
            task.cancel()
        await asyncio.gather(*self.handshakes, return_exceptions=True)
        self.socket.close()
        self._server._listeners.discard(self)
        if drop_connections:
            connections = list(self.connections)
            streams = [t for c in connections for t in self._server._stream_tasks.get(c, ())]
            for conn in connections:
                conn.abort()
            await asyncio.gather(*(c.wait_closed() for c in connections))
            await asyncio.gather(*streams, return_exceptions=True)


class HboneServer:
    """Serve HBONE on listening sockets the caller creates.

    ``ssl_context_for(local_address)`` returns the context for a connection that
    arrived on ``local_address``; it must come from :func:`tls.server_context` (or a
    :class:`tls.WorkloadCertificate`), which carries the trust domain to enforce.
    Called per connection, so returning a fresh context after rotation is enough.
    """

    def __init__(
        self,
        handler: Handler,
        ssl_context_for: Callable[[Address], ssl.SSLContext],
        *,
        handshake_timeout: float = 10.0,
        max_concurrent_streams: int = SERVER_MAX_STREAMS,
        settings: Http2Settings | None = None,
    ) -> None:
        self._handler = handler
        self._ssl_context_for = ssl_context_for
        self._handshake_timeout = handshake_timeout
        self._settings = settings or Http2Settings(max_concurrent_streams=max_concurrent_streams)
        self._listeners: set[Listener] = set()
        self._stream_tasks: dict[HboneConnection, set[asyncio.Task[None]]] = {}
        # Handshakes and rejected peers: cheap counters for metrics and tests.
        self.accepted_connections = 0
        self.failed_handshakes = 0

    async def serve(self, sock: socket.socket) -> Listener:
        """Start serving a listening TCP socket (ownership passes to the server)."""
        sock.setblocking(False)
        listener = Listener(self, sock)
        self._listeners.add(listener)
        return listener

    @property
    def connections(self) -> list[HboneConnection]:
        """Connections currently open, across listeners."""
        return [c for listener in self._listeners for c in listener.connections]

    async def close(self) -> None:
        """Stop all listeners and drop every connection."""
        await asyncio.gather(*(listener.close() for listener in list(self._listeners)))

    async def __aenter__(self) -> HboneServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections -----------------------------------------------------------------------

    async def _accept_loop(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener.socket)
            except OSError as exc:
                # EMFILE and friends: back off instead of spinning.
                log.warning("accept on %s failed: %s", listener.address, exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._handshake(listener, sock))
            listener.handshakes.add(task)
            task.add_done_callback(listener.handshakes.discard)
            task.add_done_callback(_log_task_failure)

    async def _handshake(self, listener: Listener, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        local, peer = as_address(sock.getsockname()), ("", 0)
        try:
            peer = as_address(sock.getpeername())
            set_nodelay(sock)
            ctx = self._ssl_context_for(local)
            if not isinstance(ctx, ServerContext):
                raise TypeError("ssl_context_for must return a tls.ServerContext")
            reader = asyncio.StreamReader(limit=STREAM_LIMIT)
            protocol = asyncio.StreamReaderProtocol(reader)
            # connect_accepted_socket runs the handshake from the first byte; upgrading a
            # plain stream later could lose a ClientHello already buffered.
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=ctx, ssl_handshake_timeout=self._handshake_timeout
            )
        except Exception as exc:
            # Includes ssl_context_for() failing, e.g. for an address it serves no workload on.
            self.failed_handshakes += 1
            log.info(
                "TLS handshake from %s to %s failed: %s",
                format_address(peer),
                format_address(local),
                exc,
                exc_info=not isinstance(exc, OSError | TimeoutError),
            )
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            identity = ctx.verify_peer(writer.get_extra_info("ssl_object"))
        except PeerVerificationError as exc:
            # ztunnel resets such connections rather than speaking HTTP/2 on them.
            self.failed_handshakes += 1
            log.info(
                "rejecting TLS peer %s on %s: %s", format_address(peer), format_address(local), exc
            )
            reset_transport(writer)
            return
        conn = HboneConnection(
            reader,
            writer,
            client_side=False,
            peer_identity=identity,
            settings=self._settings,
            on_tunnel=self._on_tunnel,
        )
        self.accepted_connections += 1
        listener.connections.add(conn)
        self._stream_tasks[conn] = set()
        conn.add_close_callback(lambda c: self._forget(listener, c))
        conn.start()

    def _forget(self, listener: Listener, conn: HboneConnection) -> None:
        listener.connections.discard(conn)
        for task in self._stream_tasks.pop(conn, ()):
            task.cancel()

    def _on_tunnel(self, conn: HboneConnection, tunnel: Tunnel) -> None:
        task = asyncio.create_task(self._serve_tunnel(conn, tunnel))
        tasks = self._stream_tasks.setdefault(conn, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_task_failure)

    # -- streams ---------------------------------------------------------------------------

    async def _serve_tunnel(self, conn: HboneConnection, tunnel: Tunnel) -> None:
        headers = tunnel.request_headers
        request = ConnectRequest(
            authority=next(v for k, v in headers if k == ":authority"),
            headers=[(k, v) for k, v in headers if not k.startswith(":")],
            peer_identity=conn.peer_identity,
            local_address=conn.local_address,
            peer_address=conn.peer_address,
        )
        try:
            response = await self._handler(request)
        except Exception:
            log.exception("HBONE handler failed for %s", request.authority)
            response = ConnectResponse.reject(503, "handler failed")

        if response.status != 200:
            log.info(
                "rejecting CONNECT %s from %s with %d: %s",
                request.authority,
                request.peer_identity,
                response.status,
                response.reason or "(no reason)",
            )
            conn.session.respond(tunnel, response.status, response.body)
            return

        if response.serve is not None:
            conn.session.respond(tunnel, 200)
            try:
                await response.serve(tunnel)
            except BaseException:
                tunnel.reset()
                raise
            return

        try:
            upstream = response.upstream or await _connect(response)
        except Exception as exc:
            log.info("connecting upstream for %s failed: %s", request.authority, exc)
            conn.session.respond(tunnel, 503)
            return

        reader, writer = upstream
        if tunnel.closed:
            # The client gave up (or the connection died) while we were connecting.
            reset_transport(writer)
            return
        # ztunnel's rule: 200 only once the upstream is really there.
        conn.session.respond(tunnel, 200)
        result = await relay(tunnel, reader, writer)
        if response.on_done is not None:
            response.on_done(result)


async def _connect(response: ConnectResponse) -> Upstream:
    if response.connect is None:
        raise ValueError("an accepting ConnectResponse needs an upstream, connect or serve")
    return await response.connect()


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("HBONE server task failed", exc_info=task.exception())
