"""Back-to-back HBONE tunnels on one pooled connection, on loopback.

Run: ``python reference-impl/benchmarks/bench_hbone_tunnels.py [--exchanges N]``.

Each short HTTP exchange runs in its own tunnel on one pooled mutual-TLS connection
whose sockets came from a plain ``socket.socket(AF_INET, SOCK_STREAM)`` (as the
ztunnel's in-pod sockets do), the next starting once the last is over; it ends
either with the upstream closing first or with the client resetting.  With Nagle's
algorithm left on, every tunnel after the first waited for the peer's delayed ACK
(40 ms minimum on Linux, 44 ms measured); with TCP_NODELAY, which
``tests/test_hbone.py`` checks on both sockets, a tunnel takes about a millisecond.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ambient_ref.ca.authority import CertificateAuthority
from ambient_ref.hbone import (
    ConnectRequest,
    ConnectResponse,
    HboneClient,
    HboneServer,
    WorkloadCertificate,
)

SERVER_ID = "spiffe://cluster.local/ns/default/sa/httpbin"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/sleep"
REQUEST = b"GET /ratings/0 HTTP/1.1\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def workload(ca: CertificateAuthority, identity: str) -> WorkloadCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    chain = ca.issue(key.public_key(), ttl_seconds=3600, uris=[identity])
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return WorkloadCertificate(b"".join(chain), key_pem, ca.root_pem)


async def plain_socket(destination: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, destination)
    return sock


async def exchanges(count: int, server_closes: bool) -> list[float]:
    ca = CertificateAuthority.create()
    server_cert, client_cert = workload(ca, SERVER_ID), workload(ca, CLIENT_ID)
    finished: asyncio.Queue[None] = asyncio.Queue()

    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            if not server_closes:
                await reader.read()
        writer.close()
        finished.put_nowait(None)

    upstream = await asyncio.start_server(http_server, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]

    async def handle(request: ConnectRequest) -> ConnectResponse:
        return ConnectResponse.accept_via(
            lambda: asyncio.open_connection("127.0.0.1", upstream_port))

    server = HboneServer(handle, lambda _local: server_cert.server)
    listening = socket.create_server(("127.0.0.1", 0))
    address = listening.getsockname()
    await server.serve(listening)
    client = HboneClient()
    durations: list[float] = []
    try:
        for i in range(count + 1):  # the first dials and handshakes; it is not counted
            start = time.perf_counter()
            tunnel = await client.open(address, f"127.0.0.1:{upstream_port}", [], client_cert,
                                       [SERVER_ID], connect=plain_socket)
            tunnel.write(REQUEST)
            response = bytearray()
            while len(response) < len(RESPONSE):
                response += await tunnel.read()
            if server_closes:
                await tunnel.read()
                tunnel.write_eof()
            else:
                tunnel.reset()
            await tunnel.wait_closed()
            await finished.get()
            if i:
                durations.append(time.perf_counter() - start)
    finally:
        await client.close()
        await server.close()
        upstream.close()
        await upstream.wait_closed()
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_hbone_tunnels.py")
    parser.add_argument("--exchanges", type=int, default=50)
    count = parser.parse_args().exchanges
    for ending, server_closes in (("server closes first", True), ("client resets", False)):
        ms = sorted(d * 1000 for d in asyncio.run(exchanges(count, server_closes)))
        print(f"back-to-back tunnels on one pooled connection, {ending}: median "
              f"{statistics.median(ms):.2f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.2f} ms, "
              f"max {ms[-1]:.2f} ms ({count} tunnels after the first)")


if __name__ == "__main__":
    main()
