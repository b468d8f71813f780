"""The HTTP/2 side of HBONE without any I/O: a session of CONNECT tunnels.

:class:`Session` wraps h2's state machine.  Bytes from the peer go into
:meth:`Session.receive_data`; bytes for the peer come out of
:meth:`Session.data_to_send`.  Who moves those bytes (a TLS connection, or a test
shuttling them between two sessions in memory) is not this module's concern.

Each CONNECT stream is a :class:`Tunnel`: a byte pipe in both directions with TCP-like
semantics, because that is what it stands in for.  END_STREAM is a FIN (half-close),
RST_STREAM is a RST.  Flow control follows ztunnel's settings (4 MiB per stream,
16 MiB per connection, 1 MiB frames): received bytes are acknowledged only once the
application has read them, so a slow reader stalls its sender instead of growing a
buffer, and data is framed only as far as the peer's windows allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from .errors import HboneConnectionError, HboneError, StreamReset, error_name

if TYPE_CHECKING:
    from .connection import HboneConnection

log = logging.getLogger("ambient_ref.hbone")

MiB = 1024 * 1024
STREAM_WINDOW = 4 * MiB
CONNECTION_WINDOW = 16 * MiB
MAX_FRAME_SIZE = 1 * MiB
CLIENT_MAX_STREAMS = 100
SERVER_MAX_STREAMS = 200

# h2's and the RFC's initial connection window; ours is raised from it with a WINDOW_UPDATE.
_DEFAULT_WINDOW = 65_535
# write() buffers until drain(); beyond this much unsent data drain() waits.
WRITE_HIGH_WATER = 1 * MiB
READ_SIZE = 64 * 1024

Header = tuple[str, str]


@dataclass(frozen=True)
class Http2Settings:
    """The HTTP/2 parameters a session advertises (ztunnel's values by default)."""

    stream_window: int = STREAM_WINDOW
    connection_window: int = CONNECTION_WINDOW
    max_frame_size: int = MAX_FRAME_SIZE
    # Streams the peer may open towards us: the server's limit (200).  A client
    # session accepts no pushed streams, whatever this says.
    max_concurrent_streams: int = SERVER_MAX_STREAMS


class Tunnel:
    """One CONNECT stream: bytes both ways, half-close and reset, like a TCP socket.

    Reading: :meth:`read` returns ``b""`` once the peer ended its side (END_STREAM)
    and raises :class:`StreamReset` or :class:`HboneConnectionError` if the tunnel
    broke.  Writing: :meth:`write` buffers, :meth:`drain` waits for room,
    :meth:`write_eof` half-closes, :meth:`reset` aborts.  :meth:`close` behaves like
    closing a socket: graceful if the peer already finished, a reset otherwise.
    """

    def __init__(self, session: Session, stream_id: int, request_headers: list[Header]) -> None:
        self._session = session
        self.stream_id = stream_id
        self.request_headers = request_headers
        self.response_headers: list[Header] | None = None
        self.status: int | None = None
        # The HboneConnection carrying this tunnel (peer identity, addresses); set by it.
        self.connection: HboneConnection | None = None
        self._recv = bytearray()
        self._recv_eof = False
        self._send = bytearray()
        self._send_eof = False  # write_eof() was called
        self._end_sent = False  # END_STREAM has been framed
        self._reset_after_end = False  # a rejection: reset(NO_ERROR) once the body is out
        self._read_error: HboneError | None = None
        self._write_error: HboneError | None = None
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._done = asyncio.Event()
        self._response: asyncio.Future[int] | None = None
        self._callbacks: list[Callable[[Tunnel], None]] = []

    def __repr__(self) -> str:
        return f"<Tunnel {self.stream_id} status={self.status} closed={self._closed}>"

    # -- reading ------------------------------------------------------------------

    async def read(self, n: int = READ_SIZE) -> bytes:
        """Up to ``n`` bytes; ``b""`` at end of stream; raises if the tunnel broke."""
        while not self._recv:
            if self._read_error is not None:
                raise self._read_error
            if self._recv_eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._recv[:n])
        del self._recv[:n]
        # Only now does the peer get the window back: this is the backpressure.
        self._session._consumed(self, len(chunk))
        return chunk

    @property
    def readable_bytes(self) -> int:
        """Received bytes not yet read (bounded by the stream window we advertise)."""
        return len(self._recv)

    @property
    def unsent_bytes(self) -> int:
        """Written bytes not yet framed (waiting for the peer's window or the socket)."""
        return len(self._send)

    def at_eof(self) -> bool:
        """True once the peer ended its side and everything it sent has been read."""
        return self._recv_eof and not self._recv

    # -- writing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data``; it is framed as the peer's flow-control windows allow."""
        if self._write_error is not None:
            raise self._write_error
        if self._send_eof:
            raise RuntimeError("write() after write_eof()")
        if data:
            self._send += data
            self._writable_changed()
            self._session._want_send(self)

    async def drain(self) -> None:
        """Wait until the queued data is small enough to queue more."""
        while len(self._send) > WRITE_HIGH_WATER and self._write_error is None:
            self._writable.clear()
            await self._writable.wait()
        if self._write_error is not None:
            raise self._write_error

    def write_eof(self) -> None:
        """Half-close: END_STREAM goes out after the queued data.  The peer can still send."""
        if self._send_eof or self._write_error is not None:
            return
        self._send_eof = True
        self._session._want_send(self)

    # -- ending ---------------------------------------------------------------------

    def reset(self, error_code: int = ErrorCodes.CANCEL) -> None:
        """Abort both directions with RST_STREAM, discarding buffered data."""
        if not self._closed:
            self._session._reset(self, error_code)

    def close(self) -> None:
        """Done with the tunnel, as with ``socket.close()``.

        If the peer already ended its side this is graceful (queued data, then
        END_STREAM); otherwise we would be leaving its data unread, so it is a reset.
        """
        if self._closed:
            return
        if self._recv_eof and self._write_error is None:
            self.write_eof()
        else:
            self.reset(ErrorCodes.CANCEL)

    @property
    def closed(self) -> bool:
        """True once the stream is over (both sides ended, or reset); unread data stays readable."""
        return self._closed

    async def wait_closed(self) -> None:
        """Wait until the stream is over."""
        await self._done.wait()

    def add_done_callback(self, callback: Callable[[Tunnel], None]) -> None:
        """Call ``callback(tunnel)`` once the stream is over (now, if it already is)."""
        if self._closed:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def __aenter__(self) -> Tunnel:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
        else:
            self.reset()

    # -- the response (client side) ---------------------------------------------------

    async def wait_response(self) -> int:
        """The status the server answered the CONNECT with."""
        if self._response is None:
            raise RuntimeError("only client-side tunnels wait for a response")
        return await self._response

    # -- session hooks --------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._recv += data
        self._readable.set()

    def _on_end(self) -> None:
        self._recv_eof = True
        self._readable.set()

    def _on_response(self, status: int, headers: list[Header]) -> None:
        self.status = status
        self.response_headers = headers
        if self._response is not None and not self._response.done():
            self._response.set_result(status)

    def _fail(self, read_error: HboneError | None, write_error: HboneError | None) -> None:
        if read_error is not None and self._read_error is None:
            self._read_error = read_error
        if write_error is not None and self._write_error is None:
            self._write_error = write_error
        if self._response is not None and not self._response.done():
            self._response.set_exception(read_error or write_error or HboneError())
            # Retrieved by wait_response(); silence the warning if nobody asks.
            self._response.exception()
        self._readable.set()
        self._writable.set()

    def _writable_changed(self) -> None:
        if len(self._send) <= WRITE_HIGH_WATER:
            self._writable.set()

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._done.set()
        self._readable.set()
        self._writable.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("tunnel close callback failed")


class Session:
    """HTTP/2 framing and stream bookkeeping for one HBONE connection, minus the I/O.

    ``on_request(tunnel)`` (servers) is called for each new CONNECT stream; requests
    that are not CONNECT, or lack an authority, are answered 400 here and never reach
    it.  ``on_output()`` is called whenever :meth:`data_to_send` may have something,
    so an I/O layer knows to wake its writer.
    """

    def __init__(
        self,
        *,
        client_side: bool,
        settings: Http2Settings | None = None,
        on_request: Callable[[Tunnel], None] | None = None,
        on_output: Callable[[], None] | None = None,
    ) -> None:
        self.client_side = client_side
        self.settings = settings or Http2Settings()
        self._on_request = on_request
        self._on_output = on_output or (lambda: None)
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
        )
        self._tunnels: dict[int, Tunnel] = {}
        # Tunnels with data or END_STREAM waiting for window; insertion order = turn order.
        self._sendable: dict[Tunnel, None] = {}
        self.error: HboneError | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the connection preface and our settings; call once, first."""
        self._h2.initiate_connection()
        # update_settings() rather than editing h2's local settings up front: h2 then
        # starts enforcing our window and frame size when the peer acknowledges them,
        # which is also when the peer starts relying on them.
        codes = h2.settings.SettingCodes
        local = {
            codes.INITIAL_WINDOW_SIZE: self.settings.stream_window,
            codes.MAX_FRAME_SIZE: self.settings.max_frame_size,
            codes.MAX_CONCURRENT_STREAMS: self.settings.max_concurrent_streams,
        }
        if self.client_side:
            local[codes.ENABLE_PUSH] = 0
        self._h2.update_settings(local)
        if self.settings.connection_window > _DEFAULT_WINDOW:
            # The connection window is not a setting: it only grows by WINDOW_UPDATE.
            self._h2.increment_flow_control_window(
                self.settings.connection_window - _DEFAULT_WINDOW
            )
        self._on_output()

    @property
    def closed(self) -> bool:
        """True once the session can carry nothing more (GOAWAY, error, connection lost)."""
        return self.error is not None

    @property
    def active_streams(self) -> int:
        """Streams not yet over."""
        return len(self._tunnels)

    @property
    def peer_max_streams(self) -> int:
        """How many concurrent streams the peer lets us open."""
        return self._h2.remote_settings.max_concurrent_streams

    @property
    def peer_settings(self) -> h2.settings.Settings:
        """The SETTINGS the peer advertised (window, frame size, stream limit)."""
        return self._h2.remote_settings

    def close(self, error_code: int = ErrorCodes.NO_ERROR, reason: str = "closed locally") -> None:
        """Send GOAWAY and fail whatever is still open.

        h2 cannot keep streams going after a GOAWAY in either direction, so a graceful
        close is only graceful for a session without tunnels (the idle pool case).
        """
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code)
        self._fail(HboneConnectionError(f"connection {reason}"))

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport is gone; every tunnel still open is broken."""
        if not self.closed:
            detail = f": {exc}" if exc else " (peer closed)"
            self._fail(HboneConnectionError(f"connection lost{detail}"))

    # -- bytes in, bytes out ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; updates tunnels and queues any replies."""
        if self.closed:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY; flush it, then the I/O layer closes (we're closed).
            self._fail(HboneConnectionError(f"HTTP/2 protocol error: {exc}"))
            self._on_output()
            return
        for event in events:
            self._dispatch(event)
        self._on_output()

    def data_to_send(self, limit: int = MAX_FRAME_SIZE) -> bytes:
        """Bytes for the peer: control frames plus up to ``limit`` bytes of tunnel data.

        Data is framed here, lazily, rather than in write(): an I/O layer that calls
        this only when its transport has drained passes transport backpressure on to
        the tunnels' drain().
        """
        if not self.closed:
            self._frame_data(limit)
        return self._h2.data_to_send()

    # -- client: opening tunnels -------------------------------------------------------------

    def open_tunnel(self, authority: str, headers: Iterable[Header] = ()) -> Tunnel:
        """Send ``CONNECT authority`` with extra ``headers``; await ``wait_response()``."""
        if not self.client_side:
            raise RuntimeError("only a client session opens tunnels")
        if self.error is not None:
            raise self.error
        extra = [(name.lower(), value) for name, value in headers]
        if any(name.startswith(":") for name, _ in extra):
            raise ValueError("extra headers must not be pseudo-headers")
        request = [(":method", "CONNECT"), (":authority", authority), *extra]
        stream_id = self._h2.get_next_available_stream_id()
        try:
            self._h2.send_headers(stream_id, request)
        except h2.exceptions.TooManyStreamsError as exc:
            raise HboneConnectionError(f"peer stream limit reached: {exc}") from None
        tunnel = Tunnel(self, stream_id, request)
        tunnel._response = asyncio.get_running_loop().create_future()
        self._tunnels[stream_id] = tunnel
        self._on_output()
        return tunnel

    # -- server: answering ------------------------------------------------------------------

    def respond(self, tunnel: Tunnel, status: int, body: bytes = b"") -> None:
        """Answer a CONNECT.  200 opens the tunnel; anything else ends the stream.

        A rejection ends our side (with ``body``, if any) and then resets the stream
        with NO_ERROR, which tells the client to stop sending without signalling a
        failure (RFC 9113 section 8.1).
        """
        if tunnel.closed or tunnel.status is not None:
            return
        tunnel.status = status
        end = status != 200 and not body
        try:
            self._h2.send_headers(tunnel.stream_id, [(":status", str(status))], end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            log.debug("could not answer stream %d: %s", tunnel.stream_id, exc)
            return
        if status != 200:
            tunnel._reset_after_end = True
            if end:
                tunnel._send_eof = tunnel._end_sent = True
                self._after_end_sent(tunnel)
            else:
                tunnel.write(body)
                tunnel.write_eof()
        self._on_output()

    # -- internals ----------------------------------------------------------------------------

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request_received(event)
        elif isinstance(event, h2.events.ResponseReceived):
            tunnel = self._tunnels.get(event.stream_id)
            if tunnel is not None:
                headers = list(event.headers)
                tunnel._on_response(int(dict(headers).get(":status", "0")), headers)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            tunnel = self._tunnels.get(event.stream_id)
            if tunnel is not None:
                tunnel._on_end()
                self._maybe_closed(tunnel)
        elif isinstance(event, h2.events.StreamReset):
            tunnel = self._tunnels.get(event.stream_id)
            if tunnel is not None:
                self._on_reset(tunnel, event.error_code, remote=event.remote_reset)
        elif isinstance(event, h2.events.ConnectionTerminated):
            code = error_name(event.error_code)
            self._fail(HboneConnectionError(f"peer sent GOAWAY ({code})"))
        # Settings, window updates, pings (h2 answers those) and the rest need nothing
        # beyond the data_to_send() that follows every receive_data().

    def _on_request_received(self, event: h2.events.RequestReceived) -> None:
        headers = list(event.headers)
        tunnel = Tunnel(self, event.stream_id, headers)
        self._tunnels[event.stream_id] = tunnel
        if event.stream_ended:
            tunnel._on_end()
        pseudo = {name: value for name, value in headers if name.startswith(":")}
        if pseudo.get(":method") != "CONNECT" or not pseudo.get(":authority"):
            log.info(
                "rejecting stream %d: %s %s is not a CONNECT with an authority",
                event.stream_id,
                pseudo.get(":method"),
                pseudo.get(":authority") or pseudo.get(":path"),
            )
            self.respond(tunnel, 400)
            return
        if self._on_request is None:
            self.respond(tunnel, 503)
            return
        self._on_request(tunnel)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        data = event.data or b""
        flow_length = event.flow_controlled_length or 0
        tunnel = self._tunnels.get(event.stream_id)
        if tunnel is None or tunnel._read_error is not None:
            # Nobody will read it, but it still counts against the connection window.
            self._ack(event.stream_id, flow_length)
            return
        # Padding is nobody's data: hand its window back at once.
        self._ack(event.stream_id, flow_length - len(data))
        tunnel._on_data(data)

    def _on_reset(self, tunnel: Tunnel, error_code: int, *, remote: bool) -> None:
        if remote and error_code == ErrorCodes.NO_ERROR and tunnel._recv_eof:
            # "Response complete, stop sending": what we received is still good.
            tunnel._send.clear()
            tunnel._fail(None, StreamReset(error_code, remote=True))
            self._finish(tunnel)
            return
        self._abort(tunnel, StreamReset(error_code, remote=remote))

    def _reset(self, tunnel: Tunnel, error_code: int) -> None:
        if not self.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._h2.reset_stream(tunnel.stream_id, error_code)
            self._on_output()
        self._abort(tunnel, StreamReset(error_code, remote=False))

    def _abort(self, tunnel: Tunnel, error: HboneError) -> None:
        """Break a tunnel: drop its buffers (returning unread window) and fail its users."""
        unread = len(tunnel._recv)
        tunnel._recv.clear()
        tunnel._send.clear()
        if unread:
            self._ack(tunnel.stream_id, unread)
        tunnel._fail(error, error)
        self._finish(tunnel)

    def _fail(self, error: HboneError) -> None:
        self.error = error
        for tunnel in list(self._tunnels.values()):
            self._abort(tunnel, error)

    def _consumed(self, tunnel: Tunnel, size: int) -> None:
        if size:
            self._ack(tunnel.stream_id, size)
            self._on_output()

    def _ack(self, stream_id: int, size: int) -> None:
        if size > 0 and not self.closed:
            self._h2.acknowledge_received_data(size, stream_id)

    def _want_send(self, tunnel: Tunnel) -> None:
        if not tunnel.closed:
            self._sendable[tunnel] = None
            self._on_output()

    def _frame_data(self, budget: int) -> None:
        """Turn queued tunnel data into DATA frames, round-robin, within the windows."""
        for tunnel in list(self._sendable):
            if budget <= 0:
                break
            if tunnel.closed or tunnel._write_error is not None:
                self._sendable.pop(tunnel, None)
                continue
            try:
                budget -= self._frame_tunnel(tunnel, budget)
            except h2.exceptions.ProtocolError as exc:
                # h2 already considers the stream gone; so must we.
                log.debug("stream %d unusable: %s", tunnel.stream_id, exc)
                self._abort(tunnel, StreamReset(ErrorCodes.PROTOCOL_ERROR, remote=False))
                continue
            tunnel._writable_changed()
            # Rotate, so one busy tunnel cannot starve the others.
            del self._sendable[tunnel]
            if tunnel._send or (tunnel._send_eof and not tunnel._end_sent):
                self._sendable[tunnel] = None
            if tunnel._end_sent:
                self._after_end_sent(tunnel)

    def _frame_tunnel(self, tunnel: Tunnel, budget: int) -> int:
        sent = 0
        stream_id = tunnel.stream_id
        while tunnel._send and sent < budget:
            size = min(
                len(tunnel._send),
                self._h2.local_flow_control_window(stream_id),
                self._h2.max_outbound_frame_size,
                budget - sent,
            )
            if size <= 0:
                break
            chunk = bytes(tunnel._send[:size])
            del tunnel._send[:size]
            end = tunnel._send_eof and not tunnel._send
            self._h2.send_data(stream_id, chunk, end_stream=end)
            tunnel._end_sent = tunnel._end_sent or end
            sent += size
        if tunnel._send_eof and not tunnel._send and not tunnel._end_sent:
            self._h2.end_stream(stream_id)
            tunnel._end_sent = True
        return sent

    def _after_end_sent(self, tunnel: Tunnel) -> None:
        if tunnel._reset_after_end and not tunnel._recv_eof and not tunnel.closed:
            # A rejection is complete; the client need not send us anything more.
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._h2.reset_stream(tunnel.stream_id, ErrorCodes.NO_ERROR)
            tunnel._fail(StreamReset(ErrorCodes.NO_ERROR, remote=False), None)
            self._finish(tunnel)
            return
        self._maybe_closed(tunnel)

    def _maybe_closed(self, tunnel: Tunnel) -> None:
        if tunnel._recv_eof and tunnel._end_sent:
            self._finish(tunnel)

    def _finish(self, tunnel: Tunnel) -> None:
        self._tunnels.pop(tunnel.stream_id, None)
        self._sendable.pop(tunnel, None)
        tunnel._mark_closed()
