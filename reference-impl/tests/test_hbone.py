"""HBONE: identities, mutual TLS, CONNECT tunnels, pooling and flow control.

Everything runs on loopback with ephemeral ports and a throwaway CA; the flow-control
arithmetic is checked on the sans-IO session, without sockets, where it is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.errors import ErrorCodes

from ambient_ref.hbone import (
    ConnectRejected,
    ConnectRequest,
    ConnectResponse,
    HboneClient,
    HboneConnectionError,
    HboneServer,
    Identity,
    IdentityError,
    PeerVerificationError,
    RelayResult,
    Session,
    StreamReset,
    Tunnel,
    WorkloadCertificate,
    default_connect,
    parse,
)
from ambient_ref.hbone.identity import certificate_identity
from ambient_ref.hbone.session import CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW

MiB = 1024 * 1024

# -- a throwaway CA ----------------------------------------------------------------------


class TestCA:
    """A root CA issuing workload certificates with SPIFFE URI SANs (ECDSA P-256, as
    ztunnel's CSRs are)."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.root_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *uris: str, root_pem: bytes | None = None) -> WorkloadCertificate:
        """A leaf for ``uris``; ``root_pem`` overrides the trust anchor it ships with."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=24))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if uris:
            # Istio leaves the subject empty, which makes the SAN extension critical.
            san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])
            builder = builder.add_extension(san, critical=True)
        cert = builder.sign(self.key, hashes.SHA256())
        return WorkloadCertificate(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            root_pem or self.root_pem,
        )


CA = TestCA("cluster.local root")
OTHER_CA = TestCA("another mesh")
SERVER_ID = "spiffe://cluster.local/ns/default/sa/httpbin"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/sleep"
SERVER_CERT = CA.issue(SERVER_ID)
CLIENT_CERT = CA.issue(CLIENT_ID)


# -- helpers ---------------------------------------------------------------------------------


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop, bounded so a hang fails instead."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=10))

    return wrapper


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``predicate()`` holds, checking once per event-loop turn."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF, then half-close in turn."""
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


def rst(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection with a RST."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


Policy = Callable[[ConnectRequest], Awaitable[ConnectResponse]]


class Mesh:
    """An HBONE server in front of a TCP upstream, and a client pool pointed at it."""

    def __init__(
        self,
        upstream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] = echo,
        policy: Policy | None = None,
        server_cert: WorkloadCertificate = SERVER_CERT,
        listener: socket.socket | None = None,
        **client_options: Any,
    ) -> None:
        self.upstream_handler = upstream
        self.listener = listener
        self.policy = policy or self.relay_upstream
        self.server_cert = server_cert
        self.client_options = client_options
        self.requests: list[ConnectRequest] = []

    async def __aenter__(self) -> Mesh:
        self.upstream = await asyncio.start_server(self.upstream_handler, "127.0.0.1", 0)
        self.upstream_port = self.upstream.sockets[0].getsockname()[1]
        self.server = HboneServer(self.handle, lambda _local: self.server_cert.server)
        listening = self.listener or socket.create_server(("127.0.0.1", 0))
        self.address = listening.getsockname()
        await self.server.serve(listening)
        self.client = HboneClient(**self.client_options)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.server.close()
        self.upstream.close()
        await self.upstream.wait_closed()

    async def handle(self, request: ConnectRequest) -> ConnectResponse:
        self.requests.append(request)
        return await self.policy(request)

    async def relay_upstream(self, request: ConnectRequest) -> ConnectResponse:
        return ConnectResponse.accept_via(
            lambda: asyncio.open_connection("127.0.0.1", self.upstream_port)
        )

    async def open(
        self,
        authority: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        certs: WorkloadCertificate = CLIENT_CERT,
        expected: tuple[str, ...] = (SERVER_ID,),
        **options: Any,
    ) -> Tunnel:
        return await self.client.open(
            self.address,
            authority or f"127.0.0.1:{self.upstream_port}",
            headers or [],
            certs,
            expected,
            **options,
        )


async def read_all(tunnel: Tunnel) -> bytes:
    data = bytearray()
    while chunk := await tunnel.read():
        data += chunk
    return bytes(data)


# -- identities -------------------------------------------------------------------------------


def test_identity_parses_and_formats() -> None:
    identity = parse("spiffe://cluster.local/ns/default/sa/sleep")
    assert identity == Identity("cluster.local", "default", "sleep")
    assert str(identity) == identity.uri == "spiffe://cluster.local/ns/default/sa/sleep"
    assert identity.principal == "cluster.local/ns/default/sa/sleep"
    assert Identity.parse(identity.uri) == identity


@pytest.mark.parametrize(
    "uri",
    [
        "cluster.local/ns/default/sa/sleep",
        "https://cluster.local/ns/default/sa/sleep",
        "spiffe://cluster.local/ns/default",
        "spiffe://cluster.local/ns/default/sa/sleep/extra",
        "spiffe://cluster.local/namespace/default/sa/sleep",
        "spiffe://cluster.local/ns/default/serviceaccount/sleep",
        "spiffe://cluster.local/ns//sa/sleep",
        "spiffe:///ns/default/sa/sleep",
    ],
)
def test_identity_rejects_other_shapes(uri: str) -> None:
    with pytest.raises(IdentityError):
        parse(uri)


def test_certificate_needs_exactly_one_spiffe_uri() -> None:
    def leaf(*uris: str) -> bytes:
        return CA.issue(*uris).cert_chain_pem

    def identity_of(pem: bytes) -> Identity:
        return certificate_identity(x509.load_pem_x509_certificate(pem))

    assert identity_of(leaf(CLIENT_ID, "https://example.com/x")) == parse(CLIENT_ID)
    with pytest.raises(IdentityError):
        identity_of(leaf())
    with pytest.raises(IdentityError):
        identity_of(leaf(CLIENT_ID, SERVER_ID))
    with pytest.raises(IdentityError):
        identity_of(leaf("spiffe://cluster.local/workload/sleep"))


# -- tunnels end to end -------------------------------------------------------------------------


@run
async def test_bytes_cross_the_tunnel_and_the_handler_sees_the_request() -> None:
    async with Mesh() as mesh:
        headers = [
            ("forwarded", 'for="10.0.0.5:41234";host=httpbin.default.svc.cluster.local'),
            ("baggage", "k8s.namespace.name=default,k8s.deployment.name=sleep"),
        ]
        tunnel = await mesh.open(authority=f"127.0.0.1:{mesh.upstream_port}", headers=headers)
        assert tunnel.status == 200
        assert tunnel.connection.peer_identity == parse(SERVER_ID)

        tunnel.write(b"hello, ")
        tunnel.write(b"mesh")
        await tunnel.drain()
        received = b""
        while len(received) < len(b"hello, mesh"):
            received += await tunnel.read()
        assert received == b"hello, mesh"
        tunnel.write_eof()
        assert await tunnel.read() == b""
        await tunnel.wait_closed()

        (request,) = mesh.requests
        assert request.authority == f"127.0.0.1:{mesh.upstream_port}"
        assert request.header("Forwarded") == headers[0][1]
        assert request.header("baggage") == headers[1][1]
        assert request.peer_identity == parse(CLIENT_ID)
        assert request.local_address == mesh.address
        assert request.peer_address[0] == "127.0.0.1"


@run
async def test_http2_settings_follow_ztunnel() -> None:
    async with Mesh() as mesh:
        tunnel = await mesh.open()
        settings = tunnel.connection.session.peer_settings
        assert settings.initial_window_size == STREAM_WINDOW == 4 * MiB
        assert settings.max_frame_size == MAX_FRAME_SIZE == 1 * MiB
        assert settings.max_concurrent_streams == 200
        (server_conn,) = mesh.server.connections
        assert server_conn.session.peer_settings.initial_window_size == 4 * MiB
        tunnel.close()


@run
async def test_concurrent_tunnels_share_one_connection() -> None:
    dialled: list[tuple[str, int]] = []

    async def connect(dest: tuple[str, int]) -> socket.socket:
        dialled.append(dest)
        return await default_connect(dest)

    async with Mesh() as mesh:
        tunnels = await asyncio.gather(*(mesh.open(connect=connect) for _ in range(50)))
        assert len(dialled) == 1
        assert len(mesh.client.connections()) == 1
        assert mesh.server.accepted_connections == 1
        assert len({id(t.connection) for t in tunnels}) == 1

        async def ping(i: int, tunnel: Tunnel) -> bytes:
            tunnel.write(f"tunnel {i}".encode())
            tunnel.write_eof()
            return await read_all(tunnel)

        replies = await asyncio.gather(*(ping(i, t) for i, t in enumerate(tunnels)))
        assert replies == [f"tunnel {i}".encode() for i in range(50)]


@run
async def test_more_than_100_streams_open_a_second_connection() -> None:
    async with Mesh() as mesh:
        tunnels = await asyncio.gather(*(mesh.open() for _ in range(101)))
        assert mesh.server.accepted_connections == 2
        per_connection = sorted(
            sum(1 for t in tunnels if t.connection is c) for c in mesh.client.connections()
        )
        assert per_connection == [1, 100]
        for tunnel in tunnels:
            tunnel.close()


@run
async def test_four_megabytes_each_way() -> None:
    payload = os.urandom(4 * MiB + 12345)
    async with Mesh() as mesh:
        tunnel = await mesh.open()

        async def send() -> None:
            for start in range(0, len(payload), 256 * 1024):
                tunnel.write(payload[start : start + 256 * 1024])
                await tunnel.drain()
            tunnel.write_eof()

        sender = asyncio.create_task(send())
        received = await read_all(tunnel)
        await sender
        assert received == payload


@run
async def test_relay_reports_bytes_and_handlers_can_take_the_tunnel() -> None:
    results: list[RelayResult] = []

    async def shout(tunnel: Tunnel) -> None:
        # What a waypoint does: terminate the stream instead of relaying it.
        tunnel.write((await read_all(tunnel)).upper())
        tunnel.write_eof()

    async def policy(request: ConnectRequest) -> ConnectResponse:
        if request.authority == "waypoint:15008":
            return ConnectResponse.serve_with(shout)
        reader, writer = await asyncio.open_connection("127.0.0.1", mesh.upstream_port)
        return ConnectResponse.accept(reader, writer, on_done=results.append)

    async with Mesh(policy=policy) as mesh:
        tunnel = await mesh.open(authority="waypoint:15008")
        tunnel.write(b"hello")
        tunnel.write_eof()
        assert await read_all(tunnel) == b"HELLO"

        tunnel = await mesh.open()
        tunnel.write(b"12345")
        tunnel.write_eof()
        assert await read_all(tunnel) == b"12345"
        await eventually(lambda: bool(results))
        assert (results[0].bytes_from_tunnel, results[0].bytes_to_tunnel) == (5, 5)
        assert results[0].error is None


@run
async def test_half_close_still_receives_the_reply() -> None:
    async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # until the client's FIN
        writer.write(b"got " + request)
        await writer.drain()
        writer.close()

    async with Mesh(upstream=reply_after_eof) as mesh:
        tunnel = await mesh.open()
        tunnel.write(b"question")
        tunnel.write_eof()
        assert await read_all(tunnel) == b"got question"
        await tunnel.wait_closed()


@run
async def test_rejections_are_distinguishable() -> None:
    async def policy(request: ConnectRequest) -> ConnectResponse:
        port = int(request.authority.rsplit(":", 1)[1])
        if port == 1:
            return ConnectResponse.reject(400, "ip mismatch")
        if port == 2:
            return ConnectResponse.reject(401, "allow policies exist, but none allowed", b"denied")
        if port == 3:
            return ConnectResponse.reject(503, "unknown workload")
        if port == 4:
            # Nothing listens there: connecting fails, so the server must answer 503.
            return ConnectResponse.accept_via(lambda: asyncio.open_connection("127.0.0.1", closed))
        return await mesh.relay_upstream(request)

    unused = socket.create_server(("127.0.0.1", 0))
    closed = unused.getsockname()[1]
    unused.close()
    async with Mesh(policy=policy) as mesh:
        statuses = []
        for port in (1, 2, 3, 4):
            with pytest.raises(ConnectRejected) as caught:
                await mesh.open(authority=f"127.0.0.1:{port}")
            statuses.append(caught.value.status)
            if port == 2:
                assert caught.value.body == b"denied"
        assert statuses == [400, 401, 503, 503]
        # Rejected streams are over on both sides and the connection is still usable.
        (conn,) = mesh.client.connections()
        await eventually(lambda: conn.active_streams == 0)
        tunnel = await mesh.open()
        assert tunnel.connection is conn
        tunnel.close()


@run
async def test_upstream_reset_resets_the_tunnel() -> None:
    async def reset_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        rst(writer)

    async with Mesh(upstream=reset_on_data) as mesh:
        tunnel = await mesh.open()
        tunnel.write(b"x")
        with pytest.raises(StreamReset) as caught:
            await tunnel.read()
        assert caught.value.remote
        assert caught.value.error_code == ErrorCodes.CONNECT_ERROR
        with pytest.raises(StreamReset):
            tunnel.write(b"more")


@run
async def test_client_reset_resets_the_upstream() -> None:
    upstream_error: asyncio.Future[BaseException | None] = asyncio.Future()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(1024):
                pass
            upstream_error.set_result(None)
        except ConnectionError as exc:
            upstream_error.set_result(exc)

    async with Mesh(upstream=watch) as mesh:
        tunnel = await mesh.open()
        tunnel.write(b"partial")
        await tunnel.drain()
        tunnel.reset()
        assert isinstance(await upstream_error, ConnectionResetError)


@run
async def test_idle_connections_are_released() -> None:
    async with Mesh(idle_timeout=0.05) as mesh:
        tunnel = await mesh.open()
        (conn,) = mesh.client.connections()
        tunnel.write_eof()
        assert await read_all(tunnel) == b""
        await tunnel.wait_closed()
        await conn.wait_closed()
        assert mesh.client.connections() == []
        await eventually(lambda: not mesh.server.connections)
        # The pool dials afresh afterwards.
        tunnel = await mesh.open()
        assert tunnel.connection is not conn
        tunnel.close()


# -- latency ----------------------------------------------------------------------------------

HTTP_REQUEST = b"GET /ratings/0 HTTP/1.1\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class PlainSockets:
    """A connect factory like the ztunnel's: ``socket.socket(AF_INET, SOCK_STREAM)``,
    protocol 0, no options (asyncio leaves Nagle on for such a socket); it keeps the
    sockets it made, to look at them."""

    def __init__(self) -> None:
        self.made: list[socket.socket] = []

    async def __call__(self, destination: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.made.append(sock)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, destination)
        except BaseException:
            sock.close()
            raise
        return sock


class RecordingListener(socket.socket):
    """A listening socket like ``socket.create_server``'s (protocol 0) that keeps the
    sockets it accepted."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.accepted: list[socket.socket] = []
        self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.bind(("127.0.0.1", 0))
        self.listen()

    def accept(self) -> tuple[socket.socket, Any]:
        conn, address = super().accept()
        self.accepted.append(conn)
        return conn, address


def nagle_off(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.parametrize("ending", ["server closes first", "client resets"])
@run
async def test_back_to_back_tunnels_on_a_pooled_connection_send_without_nagle(
    ending: str,
) -> None:
    """Ten short HTTP exchanges, one after another, each in its own tunnel on one pooled
    connection whose sockets came from a factory and a listener that left Nagle's
    algorithm on (as the ztunnel's in-pod sockets did): the connection must have turned
    it off on both ends.

    The regression: each exchange ends with a frame from the client that the server
    does not answer (END_STREAM after the upstream closed first, or RST_STREAM), so the
    server delays its ACK; with Nagle on, the next tunnel's HEADERS waited for that ACK,
    i.e. for the delayed-ACK timer, whose minimum on Linux is 40 ms (44 ms measured
    here and on the cluster, every tunnel but the first).  That is what TCP_NODELAY on
    both sockets prevents, and what this test checks, without a clock: how long the
    tunnels take is a benchmark's figure
    (``python reference-impl/benchmarks/bench_hbone_tunnels.py``), about a millisecond
    each on loopback with the fix.
    """
    server_closes = ending == "server closes first"
    finished: asyncio.Queue[None] = asyncio.Queue()
    dial = PlainSockets()
    listener = RecordingListener()

    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Honouring "Connection: close" it closes first; else it waits for the client.
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HTTP_RESPONSE)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            if not server_closes:
                await reader.read()
        writer.close()
        finished.put_nowait(None)

    async with Mesh(upstream=http_server, listener=listener) as mesh:
        for _ in range(10):
            tunnel = await mesh.open(connect=dial)
            tunnel.write(HTTP_REQUEST)
            response = bytearray()
            while len(response) < len(HTTP_RESPONSE):
                response += await tunnel.read()
            if server_closes:
                assert await tunnel.read() == b""
                tunnel.write_eof()  # the application closes in turn
            else:
                tunnel.reset()  # the application reset its connection
            # One exchange after the other: the next starts once this one is over.
            await tunnel.wait_closed()
            await finished.get()
            assert bytes(response) == HTTP_RESPONSE
        assert len(mesh.client.connections()) == 1
        assert mesh.server.accepted_connections == 1
        [client_side] = dial.made
        [server_side] = listener.accepted
        assert nagle_off(client_side), "the pooled connection's client socket has Nagle on"
        assert nagle_off(server_side), "the server's accepted socket has Nagle on"


# -- mutual TLS ---------------------------------------------------------------------------------


@run
async def test_server_rejects_a_client_without_a_certificate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ambient_ref.hbone")
    async with Mesh() as mesh:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=CA.root_pem.decode())
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(*mesh.address)
        # TLS 1.3: the client's side of the handshake completes; the server refuses after.
        await writer.start_tls(ctx, server_hostname=None)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            assert await reader.read(1024) == b""
        writer.transport.abort()
        await eventually(lambda: mesh.server.failed_handshakes == 1)
        assert mesh.server.accepted_connections == 0
        assert mesh.requests == []
    assert "did not return a certificate" in caplog.text


@run
async def test_server_rejects_a_certificate_from_another_ca(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ambient_ref.hbone")
    # Signed by another CA, though the client itself trusts our root.
    stranger = OTHER_CA.issue(CLIENT_ID, root_pem=CA.root_pem)
    async with Mesh() as mesh:
        with pytest.raises(HboneConnectionError):
            await mesh.open(certs=stranger)
        await eventually(lambda: mesh.server.failed_handshakes == 1)
        assert mesh.requests == []
    assert "certificate verify failed" in caplog.text


@run
async def test_server_rejects_an_identity_outside_its_trust_domain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ambient_ref.hbone")
    foreign = CA.issue("spiffe://other.domain/ns/default/sa/sleep")
    async with Mesh() as mesh:
        with pytest.raises(HboneConnectionError):
            await mesh.open(certs=foreign)
        await eventually(lambda: mesh.server.failed_handshakes == 1)
        assert mesh.server.accepted_connections == 0
        assert mesh.requests == []
    assert "outside trust domain 'cluster.local'" in caplog.text


@run
async def test_client_rejects_an_unexpected_server_identity() -> None:
    async with Mesh() as mesh:
        with pytest.raises(PeerVerificationError, match="not one of"):
            await mesh.open(expected=("spiffe://cluster.local/ns/default/sa/reviews",))
        assert mesh.client.connections() == []
        assert mesh.requests == []
        # The same destination with the right expectation is a different pool entry.
        tunnel = await mesh.open(expected=(SERVER_ID, "spiffe://cluster.local/ns/default/sa/x"))
        tunnel.close()


@run
async def test_rotated_certificates_are_used_for_new_connections() -> None:
    rotated = CA.issue(CLIENT_ID)

    def der(certs: WorkloadCertificate) -> bytes:
        pem = x509.load_pem_x509_certificate(certs.cert_chain_pem)
        return pem.public_bytes(serialization.Encoding.DER)

    async with Mesh() as mesh:
        first = await mesh.open()
        (old_conn,) = mesh.server.connections
        assert old_conn.peer_certificate == der(CLIENT_CERT)
        first.close()
        # Same identity, so the same pool entry: the open connection is reused...
        second = await mesh.open(certs=rotated)
        assert second.connection is first.connection
        second.close()
        # ...and once it is gone the next one presents the rotated certificate.
        await mesh.client.close()
        third = await mesh.open(certs=rotated)
        await eventually(lambda: old_conn.closed)
        (new_conn,) = [c for c in mesh.server.connections if not c.closed]
        assert new_conn.peer_certificate == der(rotated)
        third.close()


# -- the sans-IO session ------------------------------------------------------------------------


def exchange(a: Session, b: Session) -> None:
    """Shuttle bytes between two sessions until neither has anything to say."""
    while True:
        moved = False
        for source, sink in ((a, b), (b, a)):
            if data := source.data_to_send():
                sink.receive_data(data)
                moved = True
        if not moved:
            return


async def session_pair() -> tuple[Session, Session, list[Tunnel]]:
    """A client and a server session that have exchanged prefaces and settings."""
    requests: list[Tunnel] = []
    client = Session(client_side=True)
    server = Session(client_side=False, on_request=requests.append)
    client.start()
    server.start()
    exchange(client, server)
    return client, server, requests


async def open_tunnels(count: int) -> tuple[Session, Session, list[Tunnel], list[Tunnel]]:
    """A client and server session with ``count`` accepted tunnels (client ends, server ends)."""
    client, server, requests = await session_pair()
    tunnels = [client.open_tunnel(f"10.0.0.{i}:80") for i in range(count)]
    exchange(client, server)
    for request in requests:
        server.respond(request, 200)
    exchange(client, server)
    assert [await t.wait_response() for t in tunnels] == [200] * count
    return client, server, tunnels, requests


@run
async def test_stream_window_bounds_one_tunnel() -> None:
    client, server, (tunnel,), (accepted,) = await open_tunnels(1)
    tunnel.write(b"a" * (6 * MiB))
    exchange(client, server)
    # The receiver holds at most its 4 MiB window until the application reads.
    assert accepted.readable_bytes == STREAM_WINDOW
    assert tunnel.unsent_bytes == 2 * MiB
    received = 0
    while received < 6 * MiB:
        received += len(await accepted.read(MiB))
        exchange(client, server)
    assert tunnel.unsent_bytes == 0


@run
async def test_connection_window_bounds_all_tunnels() -> None:
    client, server, tunnels, accepted = await open_tunnels(5)
    for tunnel in tunnels:
        tunnel.write(b"b" * (4 * MiB))
    exchange(client, server)
    assert sum(a.readable_bytes for a in accepted) == CONNECTION_WINDOW
    assert all(a.readable_bytes <= STREAM_WINDOW for a in accepted)
    assert sum(t.unsent_bytes for t in tunnels) == 20 * MiB - CONNECTION_WINDOW
    # Reading hands the window back and the rest follows.
    received = 0
    while received < 20 * MiB:
        for a in accepted:
            if a.readable_bytes:
                received += len(await a.read(MiB))
        exchange(client, server)
    assert sum(t.unsent_bytes for t in tunnels) == 0


@run
async def test_session_answers_non_connect_with_400() -> None:
    requests: list[Tunnel] = []
    server = Session(client_side=False, on_request=requests.append)
    server.start()
    raw = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    raw.initiate_connection()
    stream_id = raw.get_next_available_stream_id()
    raw.send_headers(
        stream_id,
        [(":method", "GET"), (":scheme", "https"), (":authority", "x:80"), (":path", "/")],
        end_stream=True,
    )
    server.receive_data(raw.data_to_send())
    events = raw.receive_data(server.data_to_send())
    statuses = [
        dict(e.headers)[":status"] for e in events if isinstance(e, h2.events.ResponseReceived)
    ]
    assert statuses == ["400"]
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert requests == []
    assert server.active_streams == 0
