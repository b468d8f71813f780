"""SPDY/3.1 framing, the server's side, sans-IO: bytes in, events out, bytes to send.

Kubernetes still streams port-forwarding as SPDY/3.1 (the draft protocol, as
``github.com/moby/spdystream`` speaks it); kubectl 1.37 carries those SPDY bytes
inside WebSocket binary messages (client-go ``tools/portforward/
tunneling_connection.go``: the messages are one byte stream, frame boundaries need
not match them).  No maintained Python package speaks SPDY, and only what a
port-forward uses is needed:

- frames: SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY, HEADERS and data frames
  are read; SETTINGS and WINDOW_UPDATE are read and ignored, as spdystream ignores
  them (it runs no flow control);
- header blocks are zlib streams with the SPDY/3 dictionary, one stream per direction
  for the whole connection (draft-mbelshe-httpbis-spdy-00, 2.6.10), names in
  lower case, several values joined by NUL.

Use: feed what arrives to :meth:`Connection.receive`, act on the events it returns,
and send what :meth:`Connection.take_output` returns after each call.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
# RST_STREAM status codes (draft 2.6.3)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
MAX_FRAME = 1 << 24  # lengths are 24 bits

_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
    "504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad "
    "Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not "
    "Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
    "00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,"
    "image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The SPDY/3 header dictionary: the words, each after its 32-bit length, then the tail.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + \
    _TAIL.encode()

Headers = dict[str, str]


class SpdyError(Exception):
    """The peer broke the framing; the connection cannot go on."""


@dataclass(frozen=True)
class StreamOpened:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class DataReceived:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class StreamReset:
    stream_id: int
    status: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int


Event = StreamOpened | DataReceived | StreamReset | GoAway


class Connection:
    """One SPDY connection, seen from the side that accepts streams (the server)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._out = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    # -- reading ------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Events of the whole frames now buffered (PINGs are answered here)."""
        self._buffer += data
        events: list[Event] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            body = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            event = self._frame(head, body)
            if event is not None:
                events.append(event)
        return events

    def _frame(self, head: bytes, body: bytes) -> Event | None:
        first, flags = int.from_bytes(head[:4], "big"), head[4]
        if not first & 0x80000000:  # a data frame
            return DataReceived(first & 0x7FFFFFFF, body, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} is not served (only 3)")
        if kind == SYN_STREAM:
            if len(body) < 10:
                raise SpdyError("SYN_STREAM shorter than its fixed fields")
            stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            return StreamOpened(stream_id, self._headers(body[10:]), bool(flags & FLAG_FIN))
        if kind == RST_STREAM:
            if len(body) < 8:
                raise SpdyError("RST_STREAM shorter than 8 bytes")
            stream_id, status = struct.unpack(">II", body[:8])
            return StreamReset(stream_id & 0x7FFFFFFF, status)
        if kind == PING:
            self._control(PING, 0, body[:4])  # echoed: the peer's liveness check
            return None
        if kind == GOAWAY:
            return GoAway(int.from_bytes(body[:4], "big") & 0x7FFFFFFF)
        if kind in (HEADERS, SYN_REPLY):
            if len(body) >= 4:
                self._headers(body[4:])  # keeps the shared zlib stream in step
            return None
        return None  # SETTINGS, WINDOW_UPDATE and unknown types: ignored

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyError(f"header block does not inflate: {exc}") from None
        headers: Headers = {}
        try:
            (count,), pos = struct.unpack_from(">I", raw), 4
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                headers[name.lower()] = value
        except (struct.error, UnicodeDecodeError) as exc:
            raise SpdyError(f"header block is malformed: {exc}") from None
        return headers

    # -- writing ------------------------------------------------------------------

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        self._out += struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body))
        self._out += body

    def _header_block(self, headers: Headers) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def reply(self, stream_id: int, headers: Headers | None = None, fin: bool = False) -> None:
        """SYN_REPLY: the stream is accepted (spdystream's CreateStream waits for it)."""
        self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                      struct.pack(">I", stream_id) + self._header_block(headers or {}))

    def send_data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        for start in range(0, max(len(data), 1), MAX_FRAME - 1):
            chunk = data[start:start + MAX_FRAME - 1]
            last = start + MAX_FRAME - 1 >= len(data)
            flags = FLAG_FIN if fin and last else 0
            self._out += struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(chunk))
            self._out += chunk

    def reset(self, stream_id: int, status: int = CANCEL) -> None:
        self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def goaway(self, last_stream_id: int = 0) -> None:
        self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, 0))
