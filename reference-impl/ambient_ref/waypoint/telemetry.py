"""The waypoint's HTTP telemetry: ``istio_requests_total`` and its companions.

The real waypoint is Envoy with Istio's stats filter and reports with
``reporter="waypoint"`` (facts file, section 6; bookinfo facts, section 5). The
conformance harness queries these series by label, so names, label keys and the
``-``/``unknown`` conventions follow the real ones; the values come from whoever builds
:class:`RequestLabels` (the waypoint knows the peers from its workload state).

One registry per waypoint (not prometheus-client's global default), so tests can run
several in one interpreter, as :mod:`ambient_ref.ztunnel.metrics` does for ztunnel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ambient_ref.ztunnel.metrics import UNKNOWN, Peer

__all__ = [
    "BYTES_BUCKETS",
    "DURATION_BUCKETS_MS",
    "LABELS",
    "UNKNOWN",
    "HttpMetrics",
    "Peer",
    "RequestLabels",
]

_PEER_FIELDS = (
    "workload",
    "canonical_service",
    "canonical_revision",
    "workload_namespace",
    "principal",
    "app",
    "version",
    "cluster",
)

LABELS: tuple[str, ...] = (
    "reporter",
    *(f"source_{f}" for f in _PEER_FIELDS),
    "destination_service",
    "destination_service_namespace",
    "destination_service_name",
    *(f"destination_{f}" for f in _PEER_FIELDS),
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
"""Label keys of every HTTP series, in Istio's order."""

# Istio's stats filter buckets for request duration, in milliseconds.
DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
# Istio's size buckets: powers of ten from 1 byte to 100 MB.
BYTES_BUCKETS: tuple[float, ...] = tuple(float(10**n) for n in range(9))


@dataclass(frozen=True)
class RequestLabels:
    """Everything but the outcome of one request's series: who called whom, through
    which Service.

    The outcome (``response_code`` and the flags the proxy engine knows) is passed to
    :meth:`HttpMetrics.record` separately, because the engine decides it after the
    labels were built. Missing values are ``unknown``, as in Istio.
    """

    source: Peer = field(default_factory=Peer)
    destination: Peer = field(default_factory=Peer)
    service: str = UNKNOWN  # FQDN, e.g. reviews.default.svc.cluster.local
    service_namespace: str = UNKNOWN
    service_name: str = UNKNOWN
    reporter: str = "waypoint"
    request_protocol: str = "http"
    response_flags: str = "-"
    mtls: bool = True  # a waypoint is only reached through HBONE, hence mutual TLS
    grpc_response_status: str = ""

    def values(self, status: int, response_flags: str | None = None) -> dict[str, str]:
        """The label values of one series, for ``status`` and the given flags
        (``None`` keeps :attr:`response_flags`)."""
        out: dict[str, str] = {"reporter": self.reporter}
        for prefix, peer in (("source", self.source), ("destination", self.destination)):
            out.update(
                {
                    f"{prefix}_workload": peer.workload,
                    f"{prefix}_canonical_service": peer.canonical_service,
                    f"{prefix}_canonical_revision": peer.canonical_revision,
                    f"{prefix}_workload_namespace": peer.namespace,
                    f"{prefix}_principal": peer.principal,
                    f"{prefix}_app": peer.app,
                    f"{prefix}_version": peer.version,
                    f"{prefix}_cluster": peer.cluster,
                }
            )
        out.update(
            {
                "destination_service": self.service,
                "destination_service_namespace": self.service_namespace,
                "destination_service_name": self.service_name,
                "request_protocol": self.request_protocol,
                "response_code": str(status),
                "grpc_response_status": self.grpc_response_status,
                "response_flags": response_flags or self.response_flags or "-",
                "connection_security_policy": "mutual_tls" if self.mtls else UNKNOWN,
            }
        )
        return out


class HttpMetrics:
    """The four standard Istio HTTP metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # prometheus-client appends "_total" to counters, giving istio_requests_total.
        self.requests = Counter(
            "istio_requests",
            "Requests handled by the waypoint",
            LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration, from the request headers to the end of the response",
            LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.request_bytes = Histogram(
            "istio_request_bytes",
            "Request body size",
            LABELS,
            buckets=BYTES_BUCKETS,
            registry=self.registry,
        )
        self.response_bytes = Histogram(
            "istio_response_bytes",
            "Response body size",
            LABELS,
            buckets=BYTES_BUCKETS,
            registry=self.registry,
        )

    def record(
        self,
        labels: RequestLabels,
        status: int,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
        *,
        response_flags: str | None = None,
    ) -> None:
        """Count one finished request (``response_flags`` overrides the labels')."""
        values = labels.values(status, response_flags)
        self.requests.labels(**values).inc()
        self.duration.labels(**values).observe(max(duration_ms, 0.0))
        self.request_bytes.labels(**values).observe(max(request_bytes, 0))
        self.response_bytes.labels(**values).observe(max(response_bytes, 0))

    def exposition(self) -> bytes:
        """The Prometheus text format of this registry, as served on ``/stats/prometheus``."""
        return generate_latest(self.registry)
