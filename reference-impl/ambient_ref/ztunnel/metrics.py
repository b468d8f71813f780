"""ztunnel's TCP telemetry, with the series and labels of the real one (facts file,
section 6), through prometheus-client.

One registry per ztunnel process (not the global default), so tests can run
several in one interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest

LABELS = (
    "reporter",
    "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_cluster",
    "destination_service", "destination_service_namespace", "destination_service_name",
    "destination_workload", "destination_canonical_service", "destination_canonical_revision",
    "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_cluster",
    "request_protocol", "response_flags", "connection_security_policy",
)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Peer:
    """What telemetry knows of one end of a connection (missing values are "unknown")."""

    workload: str = UNKNOWN
    namespace: str = UNKNOWN
    principal: str = UNKNOWN
    app: str = UNKNOWN
    version: str = UNKNOWN
    canonical_service: str = UNKNOWN
    canonical_revision: str = UNKNOWN
    cluster: str = "Kubernetes"


@dataclass(frozen=True)
class ConnectionLabels:
    reporter: str  # "source" (outbound) or "destination" (inbound)
    source: Peer
    destination: Peer
    service: str = UNKNOWN  # FQDN of the destination Service
    service_namespace: str = UNKNOWN
    service_name: str = UNKNOWN
    mtls: bool = False
    response_flags: str = "-"

    def values(self) -> dict[str, str]:
        s, d = self.source, self.destination
        return {
            "reporter": self.reporter,
            "source_workload": s.workload, "source_canonical_service": s.canonical_service,
            "source_canonical_revision": s.canonical_revision,
            "source_workload_namespace": s.namespace, "source_principal": s.principal,
            "source_app": s.app, "source_version": s.version, "source_cluster": s.cluster,
            "destination_service": self.service,
            "destination_service_namespace": self.service_namespace,
            "destination_service_name": self.service_name,
            "destination_workload": d.workload,
            "destination_canonical_service": d.canonical_service,
            "destination_canonical_revision": d.canonical_revision,
            "destination_workload_namespace": d.namespace,
            "destination_principal": d.principal, "destination_app": d.app,
            "destination_version": d.version, "destination_cluster": d.cluster,
            "request_protocol": "tcp",
            "response_flags": self.response_flags,
            "connection_security_policy": "mutual_tls" if self.mtls else UNKNOWN,
        }


class TcpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.opened = Counter("istio_tcp_connections_opened", "TCP connections opened",
                              LABELS, registry=self.registry)
        self.closed = Counter("istio_tcp_connections_closed", "TCP connections closed",
                              LABELS, registry=self.registry)
        self.sent = Counter("istio_tcp_sent_bytes", "Bytes sent toward the destination",
                            LABELS, registry=self.registry)
        self.received = Counter("istio_tcp_received_bytes",
                                "Bytes received from the destination", LABELS,
                                registry=self.registry)

    def open(self, labels: ConnectionLabels) -> None:
        self.opened.labels(**labels.values()).inc()

    def close(self, labels: ConnectionLabels, sent: int, received: int) -> None:
        values = labels.values()
        self.closed.labels(**values).inc()
        if sent:
            self.sent.labels(**values).inc(sent)
        if received:
            self.received.labels(**values).inc(received)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
