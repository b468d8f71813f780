"""The waypoint's HTTP/1.1 engine against a real aiohttp upstream on loopback.

Each test starts an aiohttp application on 127.0.0.1, a listener that hands each
accepted connection to ``serve_http`` (standing in for a terminated HBONE tunnel), and
talks to it with an h11 client, so both edges speak real HTTP over real sockets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ambient_ref.waypoint.http import (
    ByteReader,
    ByteWriter,
    Decision,
    Deny,
    Forward,
    LocalReply,
    Request,
    RetryPolicy,
    serve_http,
)
from ambient_ref.waypoint.telemetry import HttpMetrics, Peer, RequestLabels


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop, bounded so a hang fails instead."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=10))

    return wrapper


# -- the upstream -----------------------------------------------------------------------------


@dataclass
class Upstream:
    """An aiohttp app that echoes what it received, plus a few misbehaving routes."""

    port: int = 0
    flaky_failures: int = 0  # /flaky answers 503 this many times, then 200
    seen_ports: set[int] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends /slow at teardown

    async def echo(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.seen_ports.add(peer[1])
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body.decode(),
            }
        )

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text="too late")

    async def flaky(self, request: web.Request) -> web.Response:
        if self.flaky_failures > 0:
            self.flaky_failures -= 1
            return web.Response(status=503, text="try again")
        return web.Response(text="recovered")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: chunked on the wire
        await response.prepare(request)
        for i in range(3):
            await response.write(f"part{i};".encode())
        await response.write_eof()
        return response


@asynccontextmanager
async def upstream_server() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    app = web.Application()
    app.router.add_route("*", "/slow", upstream.slow)
    app.router.add_route("*", "/flaky", upstream.flaky)
    app.router.add_route("*", "/stream", upstream.stream)
    app.router.add_route("*", "/{tail:.*}", upstream.echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield upstream
    finally:
        upstream.release.set()
        await runner.cleanup()


# -- the waypoint and its client --------------------------------------------------------------


def labels_for(request: Request, decision: Decision, status: int) -> RequestLabels:
    return RequestLabels(
        source=Peer(
            workload="sleep",
            namespace="default",
            principal="spiffe://cluster.local/ns/default/sa/sleep",
            app="sleep",
        ),
        destination=Peer(workload="reviews-v1", namespace="default", app="reviews", version="v1"),
        service="reviews.default.svc.cluster.local",
        service_namespace="default",
        service_name="reviews",
    )


@dataclass
class Waypoint:
    """A loopback listener running ``serve_http`` per connection, with a policy table."""

    upstream: Upstream
    decide_by_path: dict[str, Decision] = field(default_factory=dict)
    fail_connects: int = 0  # the next N connects to "flaky-connect" fail
    connects: int = 0
    metrics: HttpMetrics = field(default_factory=HttpMetrics)
    port: int = 0

    async def decide(self, request: Request) -> Decision:
        for prefix, decision in self.decide_by_path.items():
            if request.path.startswith(prefix):
                return decision
        return Forward(upstream="echo")

    async def connect(self, key: Hashable) -> tuple[ByteReader, ByteWriter]:
        self.connects += 1
        if key == "dead":
            raise ConnectionRefusedError("nothing listens there")
        if key == "flaky-connect" and self.fail_connects > 0:
            self.fail_connects -= 1
            raise ConnectionRefusedError("not yet")
        return await asyncio.open_connection("127.0.0.1", self.upstream.port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, self.decide, self.connect, labels_for, self.metrics)


@asynccontextmanager
async def waypoint(upstream: Upstream, **kwargs: Any) -> AsyncIterator[Waypoint]:
    wp = Waypoint(upstream, **kwargs)
    server = await asyncio.start_server(wp.handle, "127.0.0.1", 0)
    wp.port = server.sockets[0].getsockname()[1]
    try:
        yield wp
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on one connection, built on h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _send(self, event: h11.Event) -> None:
        self.writer.write(self.conn.send(event) or b"")
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | list[bytes] = b"",
    ) -> Reply:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = [("host", "reviews.default.svc.cluster.local"), *(headers or [])]
        if isinstance(body, list):
            hdrs.append(("transfer-encoding", "chunked"))
            chunks = body
        else:
            if body:
                hdrs.append(("content-length", str(len(body))))
            chunks = [body] if body else []
        await self._send(h11.Request(method=method, target=target, headers=hdrs))
        for chunk in chunks:
            await self._send(h11.Data(data=chunk))
        await self._send(h11.EndOfMessage())
        response: h11.Response | None = None
        data = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("waypoint closed the connection")
        assert response is not None
        return Reply(
            response.status_code,
            {k.decode().lower(): v.decode() for k, v in response.headers},
            data,
        )

    def close(self) -> None:
        self.writer.close()


def series(metrics: HttpMetrics, name: str = "istio_requests_total") -> list[dict[str, str]]:
    """The label sets of every sample of ``name``."""
    return [
        dict(s.labels, value=str(s.value))
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
        if s.name == name
    ]


# -- tests --------------------------------------------------------------------------------


@run
async def test_keep_alive_requests_reach_the_upstream() -> None:
    async with upstream_server() as up, waypoint(up) as wp:
        client = await Client.open(wp.port)
        for i in range(3):
            reply = await client.request("GET", f"/reviews/{i}?x=1")
            assert reply.status == 200
            got = reply.json()
            assert got["path"] == f"/reviews/{i}?x=1"
            assert got["headers"]["host"] == "reviews.default.svc.cluster.local"
            assert len(got["headers"]["x-request-id"]) == 36  # added: a uuid4
        reply = await client.request("POST", "/ratings", body=b"stars=5")
        assert reply.json()["body"] == "stars=5"
        client.close()
    # One downstream connection, one pooled upstream connection reused throughout.
    assert wp.connects == 1 and len(up.seen_ports) == 1


@run
async def test_an_upstream_closing_idle_connections_is_not_an_error() -> None:
    """An upstream that closes after each response without saying so leaves stale
    connections in the pool; using one must fall back to a fresh connection."""
    connects = 0

    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def connect(key: Hashable) -> tuple[ByteReader, ByteWriter]:
        nonlocal connects
        connects += 1
        return await asyncio.open_connection("127.0.0.1", port)

    async def decide(request: Request) -> Decision:
        return Forward(upstream="one-shot")

    server = await asyncio.start_server(one_shot, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    front = await asyncio.start_server(
        lambda r, w: serve_http(r, w, decide, connect), "127.0.0.1", 0
    )
    client = await Client.open(front.sockets[0].getsockname()[1])
    for _ in range(3):
        assert (await client.request("GET", "/")).body == b"ok"
        await asyncio.sleep(0.02)  # let the upstream's close arrive
    assert connects == 3
    client.close()
    front.close()
    server.close()


@run
async def test_request_id_and_header_ops_are_passed_upstream() -> None:
    async with upstream_server() as up:
        decisions: dict[str, Decision] = {
            "/ops": Forward(
                upstream="echo",
                set_headers={"x-set": "yes"},
                add_headers=(("x-added", "1"),),
                remove_headers=("x-secret",),
            )
        }
        async with waypoint(up, decide_by_path=decisions) as wp:
            client = await Client.open(wp.port)
            reply = await client.request(
                "GET", "/ops", headers=[("x-request-id", "abc"), ("x-secret", "s")]
            )
            got = reply.json()["headers"]
            assert got["x-request-id"] == "abc"
            assert got["x-set"] == "yes" and got["x-added"] == "1"
            assert "x-secret" not in got
            client.close()


@run
async def test_deny_gives_403_and_the_connection_stays_usable() -> None:
    async with upstream_server() as up, waypoint(up, decide_by_path={"/admin": Deny()}) as wp:
        client = await Client.open(wp.port)
        reply = await client.request("POST", "/admin", body=b"ignored body")
        assert reply.status == 403 and reply.body == b"RBAC: access denied"
        reply = await client.request("GET", "/fine")
        assert reply.status == 200
        client.close()
        assert wp.connects == 1  # the denied request never reached an upstream


@run
async def test_fault_abort_gives_the_configured_status() -> None:
    abort = LocalReply(418, "fault filter abort", response_flags="FI")
    async with upstream_server() as up, waypoint(up, decide_by_path={"/": abort}) as wp:
        client = await Client.open(wp.port)
        reply = await client.request("GET", "/anything")
        assert reply.status == 418 and reply.body == b"fault filter abort"
        client.close()
    flags = {s["response_flags"] for s in series(wp.metrics)}
    assert flags == {"FI"}


@run
async def test_fault_delay_is_applied() -> None:
    delayed = Forward(upstream="echo", delay=0.3)
    async with upstream_server() as up, waypoint(up, decide_by_path={"/": delayed}) as wp:
        client = await Client.open(wp.port)
        start = time.monotonic()
        reply = await client.request("GET", "/delayed")
        elapsed = time.monotonic() - start
        assert reply.status == 200
        assert 0.3 <= elapsed < 1.5
        client.close()
    assert {s["response_flags"] for s in series(wp.metrics)} == {"DI"}


@run
async def test_upstream_timeout_gives_504_and_the_connection_stays_usable() -> None:
    decisions: dict[str, Decision] = {"/slow": Forward(upstream="echo", timeout=0.2)}
    async with upstream_server() as up, waypoint(up, decide_by_path=decisions) as wp:
        client = await Client.open(wp.port)
        start = time.monotonic()
        reply = await client.request("GET", "/slow")
        assert reply.status == 504 and reply.body == b"upstream request timeout"
        assert time.monotonic() - start < 1.5
        assert (await client.request("GET", "/after")).status == 200
        client.close()
    assert any(
        s["response_code"] == "504" and s["response_flags"] == "UT" for s in series(wp.metrics)
    )


@run
async def test_connect_failure_gives_503() -> None:
    async with upstream_server() as up:
        decisions: dict[str, Decision] = {
            "/": Forward(upstream="dead", retry=RetryPolicy.parse(2, "connect-failure"))
        }
        async with waypoint(up, decide_by_path=decisions) as wp:
            client = await Client.open(wp.port)
            reply = await client.request("POST", "/x", body=b"payload")
            assert reply.status == 503
            assert reply.body.startswith(
                b"upstream connect error or disconnect/reset before headers"
            )
            assert wp.connects == 3  # one try plus two retries
            client.close()
    assert {s["response_flags"] for s in series(wp.metrics)} == {"UF"}


@run
async def test_connect_failure_is_retried_and_the_retry_succeeds() -> None:
    async with upstream_server() as up:
        decisions: dict[str, Decision] = {
            "/": Forward(upstream="flaky-connect", retry=RetryPolicy.parse(1, "5xx"))
        }
        async with waypoint(up, decide_by_path=decisions, fail_connects=1) as wp:
            client = await Client.open(wp.port)
            reply = await client.request("POST", "/x", body=b"kept for the retry")
            assert reply.status == 200
            assert reply.json()["body"] == "kept for the retry"
            assert wp.connects == 2
            client.close()


@run
async def test_no_retry_without_policy() -> None:
    async with upstream_server() as up:
        decisions: dict[str, Decision] = {"/": Forward(upstream="flaky-connect")}
        async with waypoint(up, decide_by_path=decisions, fail_connects=1) as wp:
            client = await Client.open(wp.port)
            assert (await client.request("GET", "/x")).status == 503
            assert (await client.request("GET", "/x")).status == 200
            client.close()


@run
async def test_5xx_response_is_retried_then_passed_through_when_exhausted() -> None:
    async with upstream_server() as up:
        decisions: dict[str, Decision] = {
            "/flaky": Forward(upstream="echo", retry=RetryPolicy.parse(2, "gateway-error"))
        }
        async with waypoint(up, decide_by_path=decisions) as wp:
            client = await Client.open(wp.port)
            up.flaky_failures = 2
            reply = await client.request("GET", "/flaky")
            assert reply.status == 200 and reply.body == b"recovered"
            up.flaky_failures = 5
            reply = await client.request("GET", "/flaky")
            assert reply.status == 503 and reply.body == b"try again"  # the upstream's own
            client.close()


@run
async def test_chunked_request_body_passes_through() -> None:
    async with upstream_server() as up, waypoint(up) as wp:
        client = await Client.open(wp.port)
        reply = await client.request("PUT", "/upload", body=[b"hello ", b"chunked ", b"world"])
        assert reply.status == 200
        got = reply.json()
        assert got["body"] == "hello chunked world"
        assert got["headers"].get("transfer-encoding") == "chunked"
        # A streamed (chunked) response comes back whole, on the same connection.
        reply = await client.request("GET", "/stream")
        assert reply.body == b"part0;part1;part2;"
        client.close()


@run
async def test_connection_close_and_http10_are_honoured() -> None:
    async with upstream_server() as up, waypoint(up) as wp:
        reader, writer = await asyncio.open_connection("127.0.0.1", wp.port)
        writer.write(b"GET /old HTTP/1.0\r\nHost: reviews\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)  # EOF: the waypoint closes
        assert raw.startswith(b"HTTP/1.1 200")
        assert b'"path": "/old"' in raw
        writer.close()

        client = await Client.open(wp.port)
        reply = await client.request("GET", "/bye", headers=[("connection", "close")])
        assert reply.status == 200 and reply.headers.get("connection") == "close"
        assert await asyncio.wait_for(client.reader.read(), 5) == b""
        client.close()


@run
async def test_malformed_request_gives_400_and_close() -> None:
    async with upstream_server() as up, waypoint(up) as wp:
        for garbage in (
            b"THIS IS NOT HTTP\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", wp.port)
            writer.write(garbage)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), 5)
            assert raw.startswith(b"HTTP/1.1 400 "), raw
            writer.close()


@run
async def test_metrics_have_istio_labels() -> None:
    async with upstream_server() as up, waypoint(up, decide_by_path={"/admin": Deny()}) as wp:
        client = await Client.open(wp.port)
        await client.request("GET", "/ok")
        await client.request("GET", "/ok", body=b"")
        await client.request("GET", "/admin")
        client.close()
    text = wp.metrics.exposition().decode()
    assert "istio_requests_total{" in text
    by_code = {s["response_code"]: s for s in series(wp.metrics)}
    assert set(by_code) == {"200", "403"}
    assert by_code["200"]["value"] == "2.0" and by_code["403"]["value"] == "1.0"
    for labels in by_code.values():
        assert labels["reporter"] == "waypoint"
        assert labels["request_protocol"] == "http"
        assert labels["response_flags"] == "-"
        assert labels["connection_security_policy"] == "mutual_tls"
        assert labels["grpc_response_status"] == ""
        assert labels["destination_service"] == "reviews.default.svc.cluster.local"
        assert labels["destination_service_name"] == "reviews"
        assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/sleep"
        assert labels["destination_version"] == "v1"
    durations = series(wp.metrics, "istio_request_duration_milliseconds_count")
    assert sum(float(s["value"]) for s in durations) == 3
    assert series(wp.metrics, "istio_response_bytes_count")
    assert series(wp.metrics, "istio_request_bytes_count")
