"""The ztunnel's data path for one captured pod: outbound (15001), inbound plaintext
(15006) and inbound HBONE (15008), all listening inside the pod's namespace.

Outbound: the original destination is read from the socket; a VIP becomes one of
its Service's healthy endpoints; ``route.py`` decides the hop: a waypoint in the way
or a destination in the mesh is reached over HBONE (``CONNECT`` to its 15008, mutual
TLS with the source workload's certificate, the server's identity verified), anything
else by plain TCP; a waypoint with no ready endpoint refuses the connection.
Sockets toward the destination are opened from inside the source pod's namespace,
so the source address stays the pod's.

Inbound: the CONNECT's authority must name this pod (400 otherwise), the L4
policies must allow the peer (401 otherwise), then the ztunnel connects to the
application from inside the pod with the client's address as source (503 if that
fails) and relays.  Plaintext inbound is authorized with no identity.  Open inbound
connections are authorized again whenever the policies change, and closed once they
are refused (``connections.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..hbone import (
    ConnectRejected,
    ConnectRequest,
    ConnectResponse,
    HboneClient,
    HboneError,
    HboneServer,
    WorkloadCertificate,
    relay,
    reset_transport,
)
from ..policy.evaluate import Connection, Decision
from ..xds.types import Workload
from . import capture
from .connections import InboundConnections
from .metrics import UNKNOWN, ConnectionLabels, Peer, TcpMetrics
from .route import outbound_route
from .state import MeshState

log = logging.getLogger("ztunnel.proxy")

SELF_PORTS = {capture.OUTBOUND_PORT, capture.INBOUND_PLAINTEXT_PORT, capture.HBONE_PORT,
              15080}
CertSource = Callable[[Workload], Awaitable[WorkloadCertificate]]


def _peer(w: Workload | None, principal: str | None = None) -> Peer:
    if w is None:
        return Peer(principal=principal or UNKNOWN)
    return Peer(workload=w.workload_name or w.name, namespace=w.namespace,
                principal=principal or w.identity, app=w.app or UNKNOWN,
                version=w.version or UNKNOWN,
                canonical_service=w.canonical_name or UNKNOWN,
                canonical_revision=w.canonical_revision or UNKNOWN)


@dataclass
class Shared:
    """What every pod proxy of one ztunnel shares."""

    state: MeshState
    certs: CertSource
    metrics: TcpMetrics
    client: HboneClient
    cluster: str = "Kubernetes"


class PodProxy:
    def __init__(self, shared: Shared, workload: Workload, netns: Path) -> None:
        self.shared = shared
        self.workload = workload
        self.netns = netns
        self.ip = workload.addresses[0]
        self._servers: list[asyncio.Server] = []
        self._hbone = HboneServer(self._on_connect, self._server_context)
        self._hbone_listener = None
        self._current_cert: WorkloadCertificate | None = None
        self.inbound = InboundConnections()

    async def start(self) -> None:
        """Bind the three listeners inside the pod (before the redirection rules point
        at them, so no captured connection finds nothing listening)."""
        self._current_cert = await self.shared.certs(self.workload)
        outbound = await capture.listen_in(self.netns, capture.OUTBOUND_PORT)
        inbound = await capture.listen_in(self.netns, capture.INBOUND_PLAINTEXT_PORT)
        hbone = await capture.listen_in(self.netns, capture.HBONE_PORT)
        self._servers.append(await asyncio.start_server(self._outbound, sock=outbound))
        self._servers.append(await asyncio.start_server(self._inbound_plaintext, sock=inbound))
        self._hbone_listener = await self._hbone.serve(hbone)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._hbone_listener is not None:
            await self._hbone_listener.close()
        await self._hbone.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def rotate(self, cert: WorkloadCertificate) -> None:
        self._current_cert = cert

    def recheck_inbound(self) -> int:
        """Close the open inbound connections the policies in force now refuse (real
        ztunnel's PolicyWatcher; ``connections.py``); how many were closed."""
        return self.inbound.recheck(lambda conn: self._authorize(conn).allowed)

    def _authorize(self, conn: Connection) -> Decision:
        """The L4 decision for a connection to this pod, as ztunnel asserts it when the
        connection arrives and again on every policy change."""
        identity = conn.source.identity
        if identity is not None and self._enforced_by_waypoint(identity):
            return Decision(True, "enforced by the workload's waypoint")
        return self.shared.state.policies.authorize(
            self.workload.namespace, self.workload.labels, conn)

    def _server_context(self, _local: object) -> object:
        assert self._current_cert is not None
        return self._current_cert.server

    # -- outbound ---------------------------------------------------------------------

    async def _outbound(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        src_ip, src_port = writer.get_extra_info("peername")[:2]
        try:
            orig_ip, orig_port = capture.original_destination(sock)
        except OSError:
            reset_transport(writer)
            return
        dest = self.shared.state.destination(orig_ip, orig_port)
        src = _peer(self.workload)
        svc = dest.service
        labels = ConnectionLabels(
            reporter="source", source=src, destination=_peer(dest.workload),
            service=svc.hostname if svc else UNKNOWN,
            service_namespace=svc.namespace if svc else UNKNOWN,
            service_name=svc.name if svc else UNKNOWN,
            mtls=dest.workload is not None and dest.workload.protocol == "HBONE")
        metrics = self.shared.metrics
        route = outbound_route(self.shared.state, dest, orig_ip, orig_port)
        if route.kind == "refused":
            # As ztunnel does on a failed request build: logged, not counted, dropped.
            log.warning("connection failed: %s (outbound %s:%d -> %s:%d)", route.reason,
                        src_ip, src_port, orig_ip, orig_port)
            await _reset_after_first_bytes(reader, writer)
            return
        if route.kind == "hbone":
            await self._via_hbone(reader, writer, labels, route.address, route.authority,
                                  route.identity, svc, src_ip, src_port)
            return
        try:
            upstream = await capture.connect_from(self.netns, (route.address, route.port))
        except OSError:
            reset_transport(writer)
            return
        metrics.open(labels)
        sent, received = await _splice(reader, writer, upstream)
        metrics.close(labels, sent, received)

    async def _via_hbone(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         labels: ConnectionLabels, target_ip: str, authority: str,
                         identity: str, svc: object, src_ip: str, src_port: int) -> None:
        metrics = self.shared.metrics
        hostname = getattr(svc, "hostname", None)
        forwarded = f'for="{src_ip}:{src_port}"' + (f";host={hostname}" if hostname else "")
        # Connection tracing, as ztunnel sends it: a fresh trace, not sampled.
        traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
        headers = [("forwarded", forwarded), ("baggage", self._baggage()),
                   ("traceparent", traceparent)]
        try:
            cert = await self.shared.certs(self.workload)
            tunnel = await self.shared.client.open(
                (target_ip, capture.HBONE_PORT), authority, headers, cert, [identity],
                connect=lambda d: capture.connect_from(self.netns, d), source_ip=self.ip)
        except (HboneError, OSError) as exc:
            flag = "DENY" if isinstance(exc, ConnectRejected) and exc.status == 401 \
                else "CONNECT"
            metrics.open(labels)
            metrics.close(_with_flag(labels, flag), 0, 0)
            log.info("outbound %s:%d -> %s via HBONE %s failed: %s", src_ip, src_port,
                     authority, target_ip, exc)
            await _reset_after_first_bytes(reader, writer)
            return
        metrics.open(labels)
        result = await relay(tunnel, reader, writer)
        metrics.close(labels, result.bytes_to_tunnel, result.bytes_from_tunnel)

    def _baggage(self) -> str:
        w = self.workload
        parts = [f"k8s.cluster.name={self.shared.cluster}", f"k8s.namespace.name={w.namespace}",
                 f"k8s.deployment.name={w.workload_name or w.name}",
                 f"service.name={w.canonical_name or w.app or w.name}",
                 f"service.version={w.canonical_revision or w.version or 'latest'}"]
        return ",".join(parts)

    # -- inbound ------------------------------------------------------------------------

    async def _on_connect(self, request: ConnectRequest) -> ConnectResponse:
        host, _, port_text = request.authority.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            return ConnectResponse.reject(400, f"bad authority {request.authority!r}")
        if host != self.ip:
            return ConnectResponse.reject(400, f"ip mismatch: {host} != {self.ip}")
        if port in SELF_PORTS:
            return ConnectResponse.reject(400, f"refusing a call to ztunnel port {port}")
        peer_ip = request.peer_address[0]
        identity = request.peer_identity.uri
        source = self.shared.state.by_ip.get(peer_ip)
        labels = ConnectionLabels(
            reporter="destination", source=_peer(source, identity),
            destination=_peer(self.workload), mtls=True)
        self.shared.metrics.open(labels)
        conn = Connection.of(peer_ip, identity, host, port)
        decision = self._authorize(conn)
        if not decision.allowed:
            self.shared.metrics.close(_with_flag(labels, "DENY"), 0, 0)
            log.info("connection closed due to policy rejection: %s (%s -> %s:%d)",
                     decision.reason, identity, host, port)
            return ConnectResponse.reject(401, decision.reason)
        tracked = []

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            sock = await capture.connect_from(self.netns, (host, port), source_ip=peer_ip)
            reader, writer = await asyncio.open_connection(sock=sock)
            tracked.append(self.inbound.track(conn, writer))
            return reader, writer

        def done(result: object) -> None:
            for entry in tracked:
                self.inbound.untrack(entry)
            self.shared.metrics.close(labels, getattr(result, "bytes_from_tunnel", 0),
                                      getattr(result, "bytes_to_tunnel", 0))

        return ConnectResponse.accept_via(connect, on_done=done)

    def _enforced_by_waypoint(self, identity: str) -> bool:
        """In the 2022 preview a workload's waypoint enforced its whole policy (selector
        policies included) and the workload's ztunnel let that waypoint through; today's
        waypoints enforce only targetRefs policies, so the destination checks as usual
        (and an L4 allow-list must name the waypoint)."""
        wp = self.workload.waypoint
        return bool(wp) and wp.get("flavour") == "istio-mesh" and \
            wp.get("identity") == identity

    async def _inbound_plaintext(self, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        peer_ip = writer.get_extra_info("peername")[0]
        try:
            orig_ip, orig_port = capture.original_destination(sock)
        except OSError:
            reset_transport(writer)
            return
        labels = ConnectionLabels(reporter="destination",
                                  source=_peer(self.shared.state.by_ip.get(peer_ip)),
                                  destination=_peer(self.workload))
        conn = Connection.of(peer_ip, None, orig_ip, orig_port)
        decision = self._authorize(conn)
        self.shared.metrics.open(labels)
        if not decision.allowed:
            self.shared.metrics.close(_with_flag(labels, "DENY"), 0, 0)
            # Real ztunnel drops the accepted connection after its RBAC check
            # (src/proxy/inbound_passthrough.rs), so the client's connect has succeeded
            # and it sees the connection end, never a failed connect.
            await _reset_after_first_bytes(reader, writer)
            return
        try:
            upstream = await capture.connect_from(self.netns, (orig_ip, orig_port),
                                                  source_ip=peer_ip)
        except OSError:
            self.shared.metrics.close(_with_flag(labels, "CONNECT"), 0, 0)
            reset_transport(writer)
            return
        tracked = self.inbound.track(conn, writer)
        try:
            received, sent = await _splice(reader, writer, upstream)
        finally:
            self.inbound.untrack(tracked)
        self.shared.metrics.close(labels, sent, received)


async def _reset_after_first_bytes(reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter, wait: float = 1.0) -> None:
    """Reset the application's connection once it has sent something (or after
    ``wait``): a reset that races the client's own connect completion is reported by
    some clients as a failed connect (curl exit 7) instead of a reset connection (curl
    exit 56, what the application sees of a denied connection)."""
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(reader.read(65536), wait)
    reset_transport(writer)


def _with_flag(labels: ConnectionLabels, flag: str) -> ConnectionLabels:
    from dataclasses import replace

    return replace(labels, response_flags=flag)


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  upstream_sock: socket.socket) -> tuple[int, int]:
    """Copy both ways between an accepted connection and a connected socket, keeping
    half-closes; returns (bytes toward upstream, bytes back)."""
    up_reader, up_writer = await asyncio.open_connection(sock=upstream_sock)
    counts = [0, 0]

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, i: int) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                counts[i] += len(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            reset_transport(dst)

    await asyncio.gather(pump(reader, up_writer, 0), pump(up_reader, writer, 1))
    for w in (writer, up_writer):
        w.close()
        with contextlib.suppress(Exception):
            await w.wait_closed()
    return counts[0], counts[1]


__all__ = ["PodProxy", "Shared"]
