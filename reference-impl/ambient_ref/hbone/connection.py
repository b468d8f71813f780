"""One HBONE connection: a :class:`Session` driven over an established TLS stream.

Two tasks move the bytes: a reader feeding the session, and a writer that asks the
session for frames only after the transport has drained, so a congested socket
backs up into the tunnels (see :meth:`Session.data_to_send`).  Client and server
share this class; the pool and the server add what is particular to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable, Iterable

from ..identity import Identity
from .session import Header, Http2Settings, Session, Tunnel

log = logging.getLogger("ambient_ref.hbone")

Address = tuple[str, int]

# One TLS record's worth of reads keeps h2's parsing incremental without many wakeups.
_READ_SIZE = 256 * 1024
# StreamReader pauses the socket above twice this; large windows need a large buffer.
STREAM_LIMIT = 4 * 1024 * 1024


class HboneConnection:
    """A TLS connection carrying HTTP/2 CONNECT tunnels.

    ``peer_identity`` is the verified SPIFFE identity of the other side;
    ``local_address``/``peer_address`` are the TCP endpoints (for the server, the
    local address is the destination the client dialled).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client_side: bool,
        peer_identity: Identity,
        settings: Http2Settings | None = None,
        on_tunnel: Callable[[HboneConnection, Tunnel], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer_identity = peer_identity
        self.local_address = as_address(writer.get_extra_info("sockname"))
        self.peer_address = as_address(writer.get_extra_info("peername"))
        self._wake = asyncio.Event()
        self._on_tunnel = on_tunnel
        self.session = Session(
            client_side=client_side,
            settings=settings,
            on_request=self._on_request if on_tunnel else None,
            on_output=self._wake.set,
        )
        self._close_callbacks: list[Callable[[HboneConnection], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<HboneConnection {self.local_address} -> {self.peer_address} "
            f"peer={self.peer_identity} streams={self.session.active_streams}>"
        )

    def start(self) -> None:
        """Send the HTTP/2 preface and start moving bytes."""
        self.session.start()
        self._task = asyncio.create_task(self._run(), name=f"hbone {self.peer_address}")

    def open_tunnel(self, authority: str, headers: Iterable[Header] = ()) -> Tunnel:
        """Send a CONNECT (client side); ``await tunnel.wait_response()`` for the status."""
        tunnel = self.session.open_tunnel(authority, headers)
        tunnel.connection = self
        return tunnel

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's leaf certificate (DER), e.g. to show which one a rotation left in use."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    @property
    def active_streams(self) -> int:
        """Tunnels on this connection that are not over yet."""
        return self.session.active_streams

    @property
    def closed(self) -> bool:
        """True once no new tunnel can use this connection."""
        return self.session.closed or self._closed.is_set()

    def close(self) -> None:
        """Graceful close: GOAWAY, flush, close TLS.  Open tunnels fail."""
        self.session.close()
        self._wake.set()

    def abort(self) -> None:
        """Drop the connection at once, with a TCP RST."""
        self.session.connection_lost(ConnectionAbortedError("aborted locally"))
        reset_transport(self._writer)
        self._wake.set()

    async def wait_closed(self) -> None:
        """Wait until the connection is fully gone."""
        await self._closed.wait()

    def add_close_callback(self, callback: Callable[[HboneConnection], None]) -> None:
        """Call ``callback(connection)`` once it is gone (now, if it already is)."""
        if self._closed.is_set():
            callback(self)
        else:
            self._close_callbacks.append(callback)

    # -- I/O ----------------------------------------------------------------------------

    def _on_request(self, tunnel: Tunnel) -> None:
        tunnel.connection = self
        assert self._on_tunnel is not None
        self._on_tunnel(self, tunnel)

    async def _run(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        try:
            await self._write_loop()
        except Exception as exc:
            log.exception("HBONE connection %r failed", self)
            self.session.connection_lost(exc)
            reset_transport(self._writer)
        finally:
            # Whatever ended the writer, no tunnel may outlive the connection.
            self.session.connection_lost(None)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if not self._writer.transport.is_closing():
                self._writer.close()
            self._closed.set()
            callbacks, self._close_callbacks = self._close_callbacks, []
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    log.exception("connection close callback failed")

    async def _read_loop(self) -> None:
        try:
            while not self.session.closed:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self.session.connection_lost(None)
                    break
                self.session.receive_data(data)
        except (OSError, ssl.SSLError) as exc:
            self.session.connection_lost(exc)
        except Exception as exc:
            log.exception("HBONE connection %r failed", self)
            self.session.connection_lost(exc)
        finally:
            self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while data := self.session.data_to_send():
                    self._writer.write(data)
                    await self._writer.drain()
                if self.session.closed:
                    return
        except (OSError, ssl.SSLError) as exc:
            self.session.connection_lost(exc)
            reset_transport(self._writer)


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a TCP socket (other sockets are left alone).

    asyncio does this for the TCP sockets it creates, but not for a socket made as
    ``socket.socket(AF_INET, SOCK_STREAM)`` (protocol 0) and handed to it, so whoever
    takes a socket from elsewhere must.  With Nagle on, a small write waits for the ACK
    of the previous one, which a peer with nothing to answer delays by 40 ms.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_transport(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection with a RST rather than a FIN.

    That is how a proxy tells the application the far side failed (RFC 9113 section
    8.5 asks for exactly this when a CONNECT stream breaks), and how ztunnel drops
    a TLS peer it will not talk to.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def as_address(value: object) -> Address:
    """``(host, port)`` from a socket address (IPv6 ones carry flow info and scope too)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return ("", 0)


def format_address(address: Address) -> str:
    """``ip:port``, bracketing IPv6 addresses, for log lines."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
