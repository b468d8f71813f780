"""ztunnel TCP metrics: names and labels as the real ztunnel exports them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ambient_ref.ztunnel.metrics import ConnectionLabels, Peer, TcpMetrics


def test_series_and_labels():
    m = TcpMetrics()
    labels = ConnectionLabels(
        reporter="destination",
        source=Peer(workload="sleep", namespace="default",
                    principal="spiffe://cluster.local/ns/default/sa/sleep", app="sleep"),
        destination=Peer(workload="productpage-v1", namespace="default", app="productpage",
                         version="v1"),
        service="productpage.default.svc.cluster.local", service_namespace="default",
        service_name="productpage", mtls=True)
    m.open(labels)
    m.close(labels, sent=120, received=4096)
    samples = {s.name: s for f in text_string_to_metric_families(m.exposition().decode())
               for s in f.samples}
    assert samples["istio_tcp_connections_opened_total"].value == 1
    assert samples["istio_tcp_connections_closed_total"].value == 1
    assert samples["istio_tcp_sent_bytes_total"].value == 120
    assert samples["istio_tcp_received_bytes_total"].value == 4096
    got = samples["istio_tcp_connections_opened_total"].labels
    assert got["connection_security_policy"] == "mutual_tls"
    assert got["source_principal"] == "spiffe://cluster.local/ns/default/sa/sleep"
    assert got["reporter"] == "destination" and got["request_protocol"] == "tcp"
    assert got["destination_canonical_service"] == "unknown"
