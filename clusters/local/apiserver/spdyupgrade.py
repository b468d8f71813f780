"""A plain SPDY/3.1 upgrade of an API request: kubectl's fallback for port-forward,
exec and attach, and what kubectl before 1.30 speaks.

The request asks for ``Upgrade: SPDY/3.1`` with the stream protocols it speaks in
``X-Stream-Protocol-Version`` (``portforward.k8s.io``; ``v4.channel.k8s.io`` and
older for exec and attach).  As the kubelet does (k8s.io/apimachinery
``util/httpstream`` ``Handshake``), the server picks the first of its own protocols
the client offers (none offered: the legacy default, the server's first), answers
403 if there is none in common, else 101 with the chosen one, and the connection
then carries a SPDY session (``spdy.py``), the client opening the streams.

- :func:`upgrade` does the handshake and the 101 and gives the connection's bytes
  (:class:`RawBytes`) and a writer of bytes;
- :class:`ChannelStreams` is a remotecommand session (client-go
  ``tools/remotecommand`` v4, the kubelet's ``cri/streaming/remotecommand``): the
  client opens one stream per channel, named by its ``streamType`` header (error,
  stdin, stdout, stderr, resize), waits for each reply, and the server waits until
  every stream the request's options call for is open.  It offers exec and attach
  the channels of ``v4.channel.k8s.io`` (``podio.Channels``): stdin data, the end of
  stdin (its FIN), terminal sizes (newline-separated JSON on the resize stream);
  stdout, stderr and the final Status on the error stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import errors, spdy

UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
# remotecommand's channels as v4.channel.k8s.io numbers them, over either carrier
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                "resize": RESIZE}
# how long the server waits for the client's streams (the kubelet's
# DefaultStreamCreationTimeout is 30 s)
STREAMS_TIMEOUT_S = 30.0

Send = Callable[[bytes], Awaitable[None]]


class StreamsMissing(Exception):
    """The client did not open the streams its request calls for (it left, or timed
    out).  The 101 has been sent, so there is no error response to give: as the
    kubelet does, the server closes the connection; ``response`` is what the
    handler returns for that."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response: web.StreamResponse | None = None


def requested(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == UPGRADE.lower()


def negotiate(request: web.Request, supported: tuple[str, ...]) -> str:
    """The protocol to speak: the first of ``supported`` the client offers."""
    offered = [p.strip() for v in request.headers.getall(PROTOCOL_HEADER, [])
               for p in v.split(",") if p.strip()]
    if not offered:
        return supported[0]
    for protocol in supported:
        if protocol in offered:
            return protocol
    raise errors.forbidden(f"unable to upgrade: unable to negotiate protocol: client "
                           f"supports {offered}, server supports {list(supported)}")


class RawBytes:
    """The payload parser of an upgraded connection (aiohttp's interface: feed_data,
    feed_eof; aiohttp hands it every byte that follows, as it does a WebSocket's
    reader): the bytes as they arrive."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")

    async def chunks(self) -> AsyncIterator[bytes]:
        while data := await self.queue.get():
            yield data


async def upgrade(request: web.Request, protocol: str
                  ) -> tuple[web.StreamResponse, RawBytes, Send]:
    """Answer 101 with ``protocol``; the connection closes when the handler returns
    the response."""
    if request.transport is None:
        raise errors.bad_request("the connection closed before the upgrade")
    raw = RawBytes()
    # set before the 101, after which the client speaks SPDY
    request.protocol.set_parser(raw)
    response = web.StreamResponse(status=101, headers={
        "Connection": "Upgrade", "Upgrade": UPGRADE, PROTOCOL_HEADER: protocol})
    response.force_close()
    await response.prepare(request)
    transport = request.transport

    async def send(data: bytes) -> None:
        if transport is not None and not transport.is_closing():
            transport.write(data)

    return response, raw, send


class SpdySession:
    """The I/O of a sans-IO ``spdy.Connection`` over any carrier of bytes: ``write``
    sends to the client, :meth:`pump` feeds what the client sends to :meth:`on`
    until it goes away (GOAWAY, a broken frame, the end of its bytes), writing the
    connection's replies (SYN_REPLY, PING) after each read."""

    def __init__(self, write: Send) -> None:
        self.write = write
        self.conn = spdy.Connection()
        self.lock = asyncio.Lock()

    async def flush(self) -> None:
        async with self.lock:
            out = self.conn.take_output()
            if out:
                await self.write(out)

    async def pump(self, received: AsyncIterator[bytes]) -> None:
        async for data in received:
            try:
                events = self.conn.receive(data)
            except spdy.SpdyError:
                return
            for event in events:
                if isinstance(event, spdy.GoAway):
                    return
                self.on(event)
            await self.flush()

    def on(self, event: spdy.Event) -> None:
        raise NotImplementedError


class ChannelStreams(SpdySession):
    """A remotecommand session over SPDY, as ``podio.Channels``."""

    def __init__(self, raw: RawBytes, send: Send) -> None:
        super().__init__(send)
        self.raw = raw
        self.streams: dict[int, int] = {}  # channel -> stream id
        self.channel_of: dict[int, int] = {}  # stream id -> channel
        self.incoming: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.expected: set[int] = set()
        self._resize = b""
        self._ended = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self, expected: set[int]) -> None:
        """Read the session (in the background from now on) until the client has
        opened the stream of each channel in ``expected``."""
        self.expected = expected
        self._reader = asyncio.ensure_future(self._read())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.opened.wait(), STREAMS_TIMEOUT_S)
        if not expected <= self.streams.keys():
            missing = sorted(k for k, v in STREAM_TYPES.items() if v in expected
                             and v not in self.streams)
            await self.close()
            raise StreamsMissing(f"the client did not open its streams: {', '.join(missing)}")

    async def _read(self) -> None:
        try:
            await self.pump(self.raw.chunks())
        finally:
            self._ended = True
            self.opened.set()
            self.incoming.put_nowait(None)

    def on(self, event: spdy.Event) -> None:
        if isinstance(event, spdy.StreamOpened):
            channel = STREAM_TYPES.get(event.headers.get("streamtype", ""))
            if channel is None:
                self.conn.reset(event.stream_id, spdy.PROTOCOL_ERROR)
                return
            self.conn.reply(event.stream_id)
            self.streams[channel] = event.stream_id
            self.channel_of[event.stream_id] = channel
            if self.expected <= self.streams.keys():
                self.opened.set()
        elif isinstance(event, spdy.DataReceived):
            channel = self.channel_of.get(event.stream_id)
            if channel == STDIN:
                if event.data:
                    self.incoming.put_nowait((STDIN, event.data))
                if event.fin:
                    self.incoming.put_nowait((CLOSE, b""))
            elif channel == RESIZE:
                # client-go writes each size with a json.Encoder: one object a line
                self._resize += event.data
                *sizes, self._resize = self._resize.split(b"\n")
                for size in sizes:
                    if size.strip():
                        self.incoming.put_nowait((RESIZE, size))

    # -- podio.Channels -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ended

    async def send(self, channel: int, data: bytes) -> None:
        stream = self.streams.get(channel)
        if stream is None or self._ended:
            return
        self.conn.send_data(stream, data)
        await self.flush()

    async def received(self) -> AsyncIterator[tuple[int, bytes]]:
        while (item := await self.incoming.get()) is not None:
            yield item

    async def close(self) -> None:
        """End every stream of the server's side, then the session (the kubelet closes
        the connection once the command is done)."""
        if not self._ended:
            for channel in (STDOUT, STDERR, ERROR):
                if channel in self.streams:
                    self.conn.send_data(self.streams[channel], b"", fin=True)
            self.conn.goaway()
            await self.flush()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
