"""Cluster DNS as a process: listeners, health endpoints, and the API feed.

Everything here is I/O around ``records``: the UDP and TCP listeners hand bytes to
``handle_packet``, two informers keep the ``Records`` table current, and a small
HTTP server tells the node agent whether the process is alive and whether its
table is complete.  All of it runs on one asyncio loop; answering is pure
in-memory computation, so nothing blocks it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from clusters.background import BackgroundTask

from ...kubeclient import Informer, KubeClient
from .records import Records, handle_packet

log = logging.getLogger("dns")

SERVICES_PATH = "/api/v1/services"
SLICES_PATH = "/apis/discovery.k8s.io/v1/endpointslices"
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may sit between messages (RFC 7766)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, records: Records) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = handle_packet(self.records, data, udp=True)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a client that gave up: nothing to do.
        pass


class DnsServer:
    """UDP and TCP listeners on one address and port.

    With ``port=0`` both listeners share one ephemeral port (UDP binds first, TCP
    takes the same number), because resolvers retry a truncated UDP answer over TCP
    on the same port.
    """

    def __init__(
        self,
        records: Records,
        host: str = "0.0.0.0",
        port: int = 53,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        self.records = records
        self.host = host
        self.port = port
        self.tcp_idle_timeout = tcp_idle_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(50):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.records), local_addr=(self.host, self.port)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, self.host, port, reuse_address=True
                )
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue  # the ephemeral UDP port is taken for TCP: draw another
            self._udp = udp
            self.port = port
            return
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._clients):
                writer.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Length-prefixed messages (RFC 1035 4.2.2), several per connection; an
        unparsable message is skipped, the framing stays intact."""
        self._clients.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.tcp_idle_timeout):
                        (length,) = struct.unpack("!H", await reader.readexactly(2))
                        data = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                reply = handle_packet(self.records, data, udp=False)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()


class HealthServer:
    """``/health``: 200 while the process serves; ``/ready``: 200 only once the
    record table is complete, so a node agent keeps the DNS pod out of the
    kube-dns Service until its answers can be trusted."""

    def __init__(self, ready: Callable[[], bool], host: str = "0.0.0.0", port: int = 8080) -> None:
        self.ready = ready
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _ready(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not synced with the API yet\n")


class KubeSource:
    """Feeds ``records`` from two informers and marks it synced once both have
    listed; after that the table is current within one watch event."""

    def __init__(self, client: KubeClient, records: Records) -> None:
        self.client = client
        self.records = records
        self.services = Informer(client, SERVICES_PATH, self._on_service)
        self.slices = Informer(client, SLICES_PATH, self._on_slice)
        self._synced = BackgroundTask(self._mark_synced, "dns-synced")

    def _on_service(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if kind == "DELETED":
            self.records.delete_service(obj)
        else:
            self.records.set_service(obj)

    def _on_slice(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if kind == "DELETED":
            self.records.delete_slice(obj)
        else:
            self.records.set_slice(obj)

    def start(self) -> None:
        self.services.start()
        self.slices.start()
        self._synced.start()

    async def wait_synced(self) -> None:
        await self.services.synced.wait()
        await self.slices.synced.wait()

    async def _mark_synced(self) -> None:
        await self.wait_synced()
        self.records.synced = True
        services, slices = self.records.counts
        log.info("synced with the API: %d services, %d endpoint slices; ready", services, slices)

    async def stop(self) -> None:
        await self._synced.stop()
        await self.services.stop()
        await self.slices.stop()
        await self.client.close()


class DnsApp:
    """The whole process minus signal handling: listeners, health, and (when a
    client is given) the API feed; without one, ``records`` is whatever the
    caller put in it."""

    def __init__(
        self,
        records: Records,
        *,
        host: str = "0.0.0.0",
        port: int = 53,
        health_port: int = 8080,
        client: KubeClient | None = None,
    ) -> None:
        self.records = records
        self.dns = DnsServer(records, host, port)
        self.health = HealthServer(lambda: records.synced, host, health_port)
        self.source = KubeSource(client, records) if client is not None else None

    async def start(self) -> None:
        await self.dns.start()
        try:
            await self.health.start()
        except BaseException:
            await self.dns.stop()
            raise
        if self.source is not None:
            self.source.start()

    async def wait_synced(self) -> None:
        if self.source is not None:
            await self.source.wait_synced()

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.stop()
        await self.health.stop()
        await self.dns.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m clusters.local.images.dns",
        description="Cluster DNS (the kube-dns role) for the local cluster.",
    )
    parser.add_argument("--port", type=int, default=53, help="DNS port, UDP and TCP")
    parser.add_argument(
        "--health-port", type=int, default=8080, help="HTTP port for /health and /ready"
    )
    parser.add_argument("--domain", default="cluster.local", help="the cluster domain")
    parser.add_argument("--address", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="API credentials from this file instead of the pod's service account",
    )
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace) -> DnsApp:
    """The app the command line describes, reading credentials (files) now, before
    the loop runs."""
    client = (
        KubeClient.from_kubeconfig(args.kubeconfig) if args.kubeconfig else KubeClient.in_cluster()
    )
    return DnsApp(
        Records(args.domain, synced=False),
        host=args.address,
        port=args.port,
        health_port=args.health_port,
        client=client,
    )


async def run(args: argparse.Namespace, app: DnsApp | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then close everything and return 0."""
    app = app or build_app(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    server = app.source.client.server if app.source is not None else "none"
    log.info(
        "cluster DNS for %s on %s:%d (udp+tcp), health on :%d, API %s",
        str(app.records.domain).rstrip("."),
        app.dns.host,
        app.dns.port,
        app.health.port,
        server,
    )
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    args = parse_args(argv)
    try:
        app = build_app(args)
    except KeyError as exc:
        log.error("no API credentials: %s is not set (not in a pod?); pass --kubeconfig", exc)
        return 1
    except (OSError, ValueError, StopIteration) as exc:
        log.error("no API credentials: %s", exc)
        return 1
    return asyncio.run(run(args, app))
