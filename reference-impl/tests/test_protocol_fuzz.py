"""Generated frame sequences and requests against the reference's protocol engines.

ztunnel's HBONE server and the waypoint take bytes from any peer that completed a
handshake (and the waypoint's HTTP/1.1 from any client in the mesh); whatever those
bytes are, the engines must never raise, never hang, and never keep a stream or a
connection once the peer is gone.  Both are sans-IO or stream-driven, so the
properties run in memory: the HBONE ``Session`` is fed HTTP/2 frames built with
hyperframe and hpack (h2's own), the waypoint's ``serve_http`` a byte stream.

In CI each property tries a fixed, derandomized set of inputs (a few seconds); set
``AMBIENT_FUZZ_EXAMPLES=N`` for a longer, random run (``./run fuzz``).
"""

from __future__ import annotations

import asyncio
import os

import hpack
import hyperframe.frame as hf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ambient_ref.hbone import Session, Tunnel
from ambient_ref.waypoint.http import Deny, Forward, LocalReply, Request, serve_http

FUZZ = settings(
    max_examples=int(os.environ.get("AMBIENT_FUZZ_EXAMPLES", "150")),
    derandomize="AMBIENT_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# -- HTTP/2 frames ---------------------------------------------------------------------------

stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1])
header_names = st.one_of(
    st.sampled_from([":method", ":authority", ":scheme", ":path", ":protocol", ":status",
                     "content-length", "baggage", "forwarded", "connection", "te"]),
    st.text(min_size=0, max_size=20))
header_values = st.one_of(
    st.sampled_from(["CONNECT", "GET", "10.0.0.1:9080", "198.18.0.9:15008", "https", "/",
                     "", "0", "-1", "trailers"]),
    st.text(max_size=200))
headers = st.lists(st.tuples(header_names, header_values), max_size=12)
connect_headers = st.just([(":method", "CONNECT"), (":authority", "198.18.0.9:9080")])


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One HTTP/2 frame of any type, valid or not, serialised; or raw junk."""
    kind = draw(st.sampled_from(["open", "open", "open", "headers", "data", "data", "rst",
                                 "settings", "window", "ping", "priority", "goaway",
                                 "continuation", "push", "junk"]))
    sid = draw(stream_ids)
    flags = draw(st.sets(st.sampled_from(["END_STREAM", "END_HEADERS", "ACK", "PADDED",
                                          "PRIORITY"]), max_size=2))

    def keep(frame: hf.Frame) -> hf.Frame:
        for flag in flags:
            if flag in {f.name for f in frame.defined_flags}:
                frame.flags.add(flag)
        return frame

    try:
        if kind == "junk":
            return draw(st.binary(max_size=64))
        if kind == "open":  # a well-formed CONNECT on a client stream: a tunnel opens
            return connect(draw(st.sampled_from([1, 3, 5, 7, 9])))
        if kind in ("headers", "continuation", "push"):
            block = hpack.Encoder().encode(draw(st.one_of(connect_headers, headers)))
            if kind == "headers" and draw(st.booleans()):
                flags.add("END_HEADERS")
            frame = {"headers": hf.HeadersFrame, "continuation": hf.ContinuationFrame,
                     "push": hf.PushPromiseFrame}[kind](sid)
            frame.data = block
            if kind == "push":
                frame.promised_stream_id = draw(stream_ids) or 2
        elif kind == "data":
            frame = hf.DataFrame(sid, draw(st.binary(max_size=300)))
        elif kind == "rst":
            frame = hf.RstStreamFrame(sid, draw(st.integers(0, 2**32 - 1)))
        elif kind == "settings":
            frame = hf.SettingsFrame(0 if draw(st.booleans()) else sid, settings=draw(
                st.dictionaries(st.integers(0, 10), st.integers(0, 2**32 - 1), max_size=4)))
        elif kind == "window":
            frame = hf.WindowUpdateFrame(sid, draw(st.integers(0, 2**31 - 1)))
        elif kind == "ping":
            opaque = draw(st.binary(min_size=8, max_size=8))
            frame = hf.PingFrame(0 if draw(st.booleans()) else sid, opaque)
        elif kind == "priority":
            frame = hf.PriorityFrame(sid, depends_on=draw(stream_ids),
                                     stream_weight=draw(st.integers(0, 255)))
        else:
            frame = hf.GoAwayFrame(0, last_stream_id=draw(stream_ids),
                                   error_code=draw(st.integers(0, 2**32 - 1)))
        return keep(frame).serialize()
    except (ValueError, hf.InvalidFrameError, hf.InvalidDataError):
        return draw(st.binary(max_size=16))  # hyperframe refused to build it: junk instead


def connect(stream_id: int) -> bytes:
    frame = hf.HeadersFrame(stream_id)
    frame.data = hpack.Encoder().encode([(":method", "CONNECT"),
                                         (":authority", "198.18.0.9:9080")])
    frame.flags.add("END_HEADERS")
    return frame.serialize()


@FUZZ
@given(preface=st.booleans(),
       opened=st.lists(st.sampled_from([1, 3, 5]), unique=True, max_size=3).map(sorted),
       sequence=st.lists(frames(), max_size=25), chunking=st.integers(1, 64))
def test_the_hbone_session_survives_any_frames(preface: bool, opened: list[int],
                                               sequence: list[bytes], chunking: int) -> None:
    """Tunnels are opened first (mostly), so the frames after them meet live streams."""
    tunnels: list[Tunnel] = []

    def on_request(tunnel: Tunnel) -> None:
        tunnels.append(tunnel)
        session.respond(tunnel, 200)
        tunnel.write(b"hello")

    session = Session(client_side=False, on_request=on_request)
    session.start()
    # A client's preface is the magic and a SETTINGS frame: mostly given, so the frames
    # after it reach the stream logic rather than the preface check.
    data = (PREFACE + hf.SettingsFrame(0).serialize() if preface else b"") + b"".join(
        [*map(connect, opened), *sequence])
    for i in range(0, len(data), chunking):  # arbitrary TCP segmentation
        session.receive_data(data[i:i + chunking])
        session.data_to_send()
    event(f"tunnels opened: {min(len(tunnels), 2)}{'+' if len(tunnels) > 2 else ''}")
    session.connection_lost(None)
    assert session.closed
    assert session.active_streams == 0, "streams kept after the connection was lost"
    assert all(t.closed for t in tunnels), "a tunnel outlived its connection"


# -- the waypoint's HTTP/1.1 ------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def fed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


UPSTREAM_REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "G ET", ""])
targets = st.one_of(st.sampled_from(["/", "/deny", "/local", "*", "http://x/", "//", ""]),
                    st.text(max_size=40))
request_headers = st.lists(st.tuples(
    st.sampled_from(["host", "content-length", "transfer-encoding", "connection", "expect",
                     "x-a", "", " host", "host "]),
    st.one_of(st.sampled_from(["a", "chunked", "close", "100-continue", "5", "-1",
                               "1, 2", "99999999999999999999"]), st.text(max_size=40))),
    max_size=8)


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "X"]))
    line = f"{draw(methods)} {draw(targets)} {version}"
    head = [line, *(f"{k}: {v}" for k, v in draw(request_headers))]
    text = "\r\n".join(head) + "\r\n\r\n"
    return text.encode("utf-8", "surrogateescape") + draw(st.binary(max_size=100))


async def decide_by_path(request: Request) -> Deny | LocalReply | Forward:
    if request.target.startswith("/deny"):
        return Deny()
    if request.target.startswith("/local"):
        return LocalReply(status=418, body="teapot")
    return Forward(upstream="echo")


@FUZZ
@given(stream=st.lists(http_requests(), min_size=1, max_size=4).map(b"".join))
def test_the_waypoint_http_engine_survives_any_request_bytes(stream: bytes) -> None:
    upstreams: list[Sink] = []

    async def connect_upstream(_key: object) -> tuple[asyncio.StreamReader, Sink]:
        upstreams.append(Sink())
        return fed(UPSTREAM_REPLY * 4), upstreams[-1]

    async def scenario() -> Sink:
        downstream = Sink()
        await asyncio.wait_for(serve_http(fed(stream), downstream, decide_by_path,
                                          connect_upstream), timeout=10)
        return downstream

    downstream = asyncio.run(scenario())
    assert downstream.closed, "the downstream stream was left open"
    statuses = _statuses(bytes(downstream.data))
    event(f"responses: {min(len(statuses), 2)}{'+' if len(statuses) > 2 else ''}")
    assert all(100 <= s <= 599 for s in statuses), statuses


def _statuses(data: bytes) -> list[int]:
    """The status codes of the responses written (their status lines)."""
    return [int(line.split(b" ")[1]) for line in data.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit()]
