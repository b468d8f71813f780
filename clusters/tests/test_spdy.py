"""The SPDY/3.1 framing port-forward runs on (clusters/local/apiserver/spdy.py).

The client's frames are written here the way spdystream writes them (header blocks
deflated with the SPDY dictionary in one zlib stream per connection); the real client,
kubectl, is in test_kubectl_port_forward.py.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.local.apiserver import spdy


class Client:
    """The peer: writes SYN_STREAM/DATA/PING/RST frames, reads the server's replies."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def control(self, kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | 3, kind, (flags << 24) | len(body)) + body

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            raw += struct.pack(">I", len(name)) + name.lower().encode()
            raw += struct.pack(">I", len(value)) + value.encode()
        block = self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        return self.control(spdy.SYN_STREAM, 1 if fin else 0,
                            struct.pack(">IIBB", stream_id, 0, 0, 0) + block)

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, ((1 if fin else 0) << 24) | len(payload)) + payload

    def frames(self, out: bytes) -> list[tuple]:
        """The server's frames: ("reply", id, headers) / ("data", id, bytes, fin) / ..."""
        found = []
        while out:
            first, flags_len = struct.unpack(">II", out[:8])
            flags, length = flags_len >> 24, flags_len & 0xFFFFFF
            body, out = out[8:8 + length], out[8 + length:]
            if not first & 0x80000000:
                found.append(("data", first, body, bool(flags & 1)))
                continue
            kind = first & 0xFFFF
            if kind == spdy.SYN_REPLY:
                raw = self.inflate.decompress(body[4:])
                found.append(("reply", struct.unpack(">I", body[:4])[0], raw))
            elif kind == spdy.PING:
                found.append(("ping", struct.unpack(">I", body)[0]))
            elif kind == spdy.RST_STREAM:
                found.append(("rst", *struct.unpack(">II", body)))
            elif kind == spdy.GOAWAY:
                found.append(("goaway", *struct.unpack(">II", body)))
        return found


def test_the_dictionary_is_spdy3s():
    # sha256 of the dictionary in github.com/moby/spdystream spdy/dictionary.go (v0.5.1)
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_streams_headers_data_and_replies():
    client, server = Client(), spdy.Connection()
    wire = client.syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"})
    wire += client.syn_stream(3, {"streamType": "data", "port": "80", "requestID": "0"})
    wire += client.data(3, b"GET / HTTP/1.0\r\n\r\n", fin=True)
    events = server.receive(wire)
    assert events == [
        spdy.StreamOpened(1, {"streamtype": "error", "port": "80", "requestid": "0"}, False),
        spdy.StreamOpened(3, {"streamtype": "data", "port": "80", "requestid": "0"}, False),
        spdy.DataReceived(3, b"GET / HTTP/1.0\r\n\r\n", True),
    ]
    for stream_id in (1, 3):
        server.reply(stream_id)
    server.send_data(3, b"HTTP/1.0 200 OK\r\n\r\n")
    server.send_data(3, b"", fin=True)
    assert client.frames(server.take_output()) == [
        ("reply", 1, b"\x00\x00\x00\x00"), ("reply", 3, b"\x00\x00\x00\x00"),
        ("data", 3, b"HTTP/1.0 200 OK\r\n\r\n", False), ("data", 3, b"", True)]
    assert server.take_output() == b""


def test_pings_are_echoed_and_resets_and_goaway_reported():
    client, server = Client(), spdy.Connection()
    wire = client.control(spdy.PING, 0, struct.pack(">I", 7))
    wire += client.control(spdy.RST_STREAM, 0, struct.pack(">II", 5, spdy.CANCEL))
    wire += client.control(spdy.SETTINGS, 0, struct.pack(">I", 0))      # ignored
    wire += client.control(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 1, 100))  # ignored
    wire += client.control(spdy.GOAWAY, 0, struct.pack(">II", 9, 0))
    assert server.receive(wire) == [spdy.StreamReset(5, spdy.CANCEL), spdy.GoAway(9)]
    assert client.frames(server.take_output()) == [("ping", 7)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_frames_split_anywhere_read_the_same(cuts):
    """kubectl's WebSocket messages are a byte stream: frames may arrive in any pieces."""
    client = Client()
    wire = b"".join(client.syn_stream(2 * i + 1, {"port": str(i), "requestid": str(i)})
                    + client.data(2 * i + 1, bytes([i]) * i, fin=i % 2 == 0)
                    for i in range(6))
    whole = spdy.Connection().receive(wire)
    server, events, pos = spdy.Connection(), [], 0
    for cut in cuts * (len(wire) // sum(cuts) + 1):
        events += server.receive(wire[pos:pos + cut])
        pos += cut
        if pos >= len(wire):
            break
    assert events == whole and len(whole) == 12


def test_a_foreign_version_or_broken_header_block_is_an_error():
    client = Client()
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.Connection().receive(struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\0" * 4)
    broken = client.control(spdy.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"junk")
    with pytest.raises(spdy.SpdyError, match="inflate"):
        spdy.Connection().receive(broken)
