"""The HBONE client: a pool of mutual-TLS HTTP/2 connections that open CONNECT tunnels.

Opening a TLS connection per application connection would cost a handshake each
time, so ztunnel multiplexes: connections are pooled per (source identity, source IP,
destination address, expected destination identities) and carry up to 100 streams
each, a further connection being opened when all are full.  A connection with no
streams for the idle timeout (5 minutes) is closed.

The TCP connection itself comes from a caller-supplied factory because ztunnel must
dial from inside the source pod's network namespace, with the pod's IP as source and
socket marks set; the pool only needs a connected socket.  It turns Nagle's algorithm
off on that socket itself, whoever made it: the small frames HBONE writes (a CONNECT's
HEADERS, an END_STREAM, a WINDOW_UPDATE) often follow one the peer has not acknowledged
yet, and one held back until the peer's delayed ACK costs 40 ms (a new tunnel opened
right after the previous one ended, on the same connection, waited exactly that long).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ..identity import Identity, as_identity
from .connection import (
    STREAM_LIMIT,
    Address,
    HboneConnection,
    format_address,
    reset_transport,
    set_nodelay,
)
from .errors import ConnectRejected, HboneConnectionError, HboneError, PeerVerificationError
from .session import CLIENT_MAX_STREAMS, Header, Http2Settings, Tunnel
from .tls import WorkloadCertificate

log = logging.getLogger("ambient_ref.hbone")

SocketFactory = Callable[[Address], Awaitable[socket.socket]]

IDLE_TIMEOUT = 300.0
# Bodies of rejections are diagnostics; no reason to buffer much of one.
_MAX_REJECTION_BODY = 64 * 1024


@dataclass(frozen=True)
class PoolKey:
    """What must match for two tunnels to share a connection.

    The source identity picks the client certificate, the source IP the (spoofed)
    address the socket is bound to, and the expected identities what the server was
    verified against; a connection verified for one set proves nothing for another.
    """

    source: Identity
    source_ip: str | None
    destination: Address
    expected: frozenset[Identity]


async def default_connect(destination: Address) -> socket.socket:
    """A plain TCP connection from the current network namespace (tests, simple setups)."""
    family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        set_nodelay(sock)
        await asyncio.get_running_loop().sock_connect(sock, destination)
    except BaseException:
        sock.close()
        raise
    return sock


class _Slot:
    """A pooled connection, counted from the moment a caller reserves a stream on it
    (even while it is still being dialled), so concurrent opens share it."""

    def __init__(self, key: PoolKey, task: asyncio.Task[HboneConnection]) -> None:
        self.key = key
        self.task = task
        self.reserved = 0
        self.retired = False
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def connection(self) -> HboneConnection | None:
        task = self.task
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        return None

    def cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None


class HboneClient:
    """Opens HBONE tunnels over pooled connections.

    ``max_streams_per_connection`` and ``idle_timeout`` default to ztunnel's 100 and
    300 s.  ``connect_timeout`` bounds TCP connect plus TLS handshake.
    """

    def __init__(
        self,
        *,
        max_streams_per_connection: int = CLIENT_MAX_STREAMS,
        idle_timeout: float = IDLE_TIMEOUT,
        connect_timeout: float = 10.0,
        settings: Http2Settings | None = None,
    ) -> None:
        self._max_streams = max_streams_per_connection
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._settings = settings or Http2Settings(max_concurrent_streams=CLIENT_MAX_STREAMS)
        self._pool: dict[PoolKey, list[_Slot]] = {}

    async def open(
        self,
        dest: Address,
        authority: str,
        headers: Iterable[Header],
        source_certs: WorkloadCertificate,
        expected_identities: Iterable[Identity | str],
        connect: SocketFactory | None = None,
        *,
        source_ip: str | None = None,
    ) -> Tunnel:
        """Open a tunnel: ``CONNECT authority`` to the HBONE endpoint ``dest``.

        Returns once the server answered 200.  Raises :class:`ConnectRejected` (with
        ``status`` 400/401/503...) for other answers, :class:`HboneConnectionError` if
        no verified connection could be had (including a server whose identity is
        not in ``expected_identities``), and :class:`StreamReset` if the server reset
        the stream.  ``connect(dest)`` supplies the connected TCP socket for a new
        connection; ``source_ip`` is the address it binds, so it is part of the pool key.
        """
        expected = frozenset(as_identity(i) for i in expected_identities)
        if not expected:
            raise ValueError("expected_identities must name at least one identity")
        key = PoolKey(source_certs.identity, source_ip, (dest[0], int(dest[1])), expected)
        headers = list(headers)
        for attempt in range(2):
            slot = self._checkout(key, source_certs, connect)
            try:
                conn = await asyncio.shield(slot.task)
                tunnel = conn.open_tunnel(authority, headers)
            except HboneConnectionError:
                self._release(slot)
                # A pooled connection may have died since we picked it; a fresh one may not.
                if attempt == 0 and slot.connection is not None:
                    self._retire(slot)
                    continue
                raise
            except asyncio.CancelledError:
                self._release(slot)
                current = asyncio.current_task()
                if slot.task.cancelled() and current is not None and not current.cancelling():
                    # The dial was cancelled by close(), not our caller.
                    raise HboneConnectionError("the connection pool was closed") from None
                raise
            except BaseException:
                self._release(slot)
                raise
            break
        tunnel.add_done_callback(lambda _tunnel, slot=slot: self._release(slot))
        try:
            status = await tunnel.wait_response()
        except BaseException:
            tunnel.reset()
            raise
        if status != 200:
            body = await self._rejection_body(tunnel)
            tunnel.close()
            raise ConnectRejected(status, body)
        return tunnel

    def connections(self, key: PoolKey | None = None) -> list[HboneConnection]:
        """Established pooled connections (for one key, or all)."""
        slots = self._pool.get(key, []) if key is not None else _flatten(self._pool.values())
        return [c for s in slots if (c := s.connection) is not None and not c.closed]

    async def close(self) -> None:
        """Close every pooled connection (open tunnels on them fail)."""
        slots = list(_flatten(self._pool.values()))
        for slot in slots:
            self._retire(slot)
            slot.task.cancel()
            if (conn := slot.connection) is not None:
                conn.close()
        await asyncio.gather(
            *(c.wait_closed() for s in slots if (c := s.connection) is not None),
            return_exceptions=True,
        )

    async def __aenter__(self) -> HboneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- pool bookkeeping --------------------------------------------------------------------

    def _checkout(
        self, key: PoolKey, certs: WorkloadCertificate, connect: SocketFactory | None
    ) -> _Slot:
        """Reserve a stream on a connection with room, dialling a new one if none has."""
        slot = next((s for s in self._pool.get(key, []) if self._has_room(s)), None)
        if slot is None:
            task = asyncio.create_task(self._dial(key, certs, connect or default_connect))
            slot = _Slot(key, task)
            self._pool.setdefault(key, []).append(slot)
            task.add_done_callback(lambda _task, slot=slot: self._dialled(slot))
        slot.reserved += 1
        slot.cancel_idle_timer()
        return slot

    def _has_room(self, slot: _Slot) -> bool:
        if slot.retired:
            return False
        limit = self._max_streams
        if slot.task.done():
            conn = slot.connection
            if conn is None or conn.closed:
                return False
            limit = min(limit, conn.session.peer_max_streams)
        return slot.reserved < limit

    def _dialled(self, slot: _Slot) -> None:
        conn = slot.connection
        if conn is None:
            # Failed or cancelled: callers waiting on it get the error; nobody else may.
            if not slot.task.cancelled():
                slot.task.exception()
            self._retire(slot)
            return
        conn.add_close_callback(lambda _conn: self._retire(slot))
        if slot.reserved == 0:
            self._arm_idle_timer(slot)

    def _release(self, slot: _Slot) -> None:
        slot.reserved -= 1
        if slot.reserved == 0 and slot.connection is not None:
            self._arm_idle_timer(slot)

    def _arm_idle_timer(self, slot: _Slot) -> None:
        if slot.retired:
            return
        slot.cancel_idle_timer()
        loop = asyncio.get_running_loop()
        slot.idle_timer = loop.call_later(self._idle_timeout, self._idle_expired, slot)

    def _idle_expired(self, slot: _Slot) -> None:
        slot.idle_timer = None
        if slot.reserved == 0 and (conn := slot.connection) is not None:
            log.debug("closing idle HBONE connection %r", conn)
            self._retire(slot)
            conn.close()

    def _retire(self, slot: _Slot) -> None:
        """Take a slot out of the pool; its tunnels carry on but no new one joins."""
        slot.retired = True
        slot.cancel_idle_timer()
        slots = self._pool.get(slot.key)
        if slots is not None and slot in slots:
            slots.remove(slot)
            if not slots:
                del self._pool[slot.key]

    # -- dialling -------------------------------------------------------------------------

    async def _dial(
        self, key: PoolKey, certs: WorkloadCertificate, connect: SocketFactory
    ) -> HboneConnection:
        ctx = certs.client
        dest = key.destination
        try:
            async with asyncio.timeout(self._connect_timeout):
                sock = await connect(dest)
                try:
                    set_nodelay(sock)
                    reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
                except BaseException:
                    sock.close()
                    raise
                # No SNI: server_hostname=None.  (open_connection(ssl=...) insists on a
                # hostname when given a socket, hence the separate upgrade.)
                await writer.start_tls(ctx, server_hostname=None)
        except TimeoutError:
            raise HboneConnectionError(f"connecting to {format_address(dest)} timed out") from None
        except OSError as exc:
            raise HboneConnectionError(
                f"connecting to {format_address(dest)} failed: {exc}"
            ) from exc
        try:
            identity = ctx.verify_peer(writer.get_extra_info("ssl_object"), key.expected)
        except PeerVerificationError as exc:
            log.info("refusing HBONE server %s: %s", format_address(dest), exc)
            reset_transport(writer)
            raise
        conn = HboneConnection(
            reader, writer, client_side=True, peer_identity=identity, settings=self._settings
        )
        conn.start()
        return conn

    async def _rejection_body(self, tunnel: Tunnel) -> bytes:
        body = bytearray()
        try:
            async with asyncio.timeout(self._connect_timeout):
                while len(body) < _MAX_REJECTION_BODY and (chunk := await tunnel.read()):
                    body += chunk
        except (HboneError, TimeoutError):
            pass
        return bytes(body[:_MAX_REJECTION_BODY])


def _flatten(groups: Iterable[list[_Slot]]) -> list[_Slot]:
    return [slot for group in groups for slot in group]
