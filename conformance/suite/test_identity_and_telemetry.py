"""Identity, encryption and telemetry, observed on the wire and in metrics.

Between enrolled pods on different nodes (a client and a server pinned to two nodes, so
the test runs on any cluster of two or more), traffic crosses the nodes' uplink as TLS
toward the HBONE port 15008 and never in plaintext; the destination knows the
client's principal (a policy naming it lets it in, its metrics say so).  A client
outside the mesh sends plaintext and has no principal.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from clusters.provider import CaptureUnsupported
from conformance import metrics
from conformance.apps import AppNamespace, principal
from conformance.tls_records import APPLICATION_DATA, flow_records
from conformance.waiting import eventually
from profiles import features as F

pytestmark = pytest.mark.xdist_group("identity")

MARKER = "x-plaintext-marker: would-be-visible"


@pytest.fixture(scope="module")
def meshed(namespaces) -> AppNamespace:
    return namespaces("idm")


@pytest.fixture(scope="module")
def outside(namespaces) -> AppNamespace:
    """Clients only, not enrolled."""
    return namespaces("ido", enroll=False, bookinfo=False)


# -- on the wire: a client and a server pinned to different nodes --------------------------

WIRE_CLIENT, WIRE_SERVER = "wire-client", "wire-server"
HOSTNAME_LABEL = "kubernetes.io/hostname"


@pytest.fixture(scope="module")
def two_nodes(cluster) -> tuple[str, str]:
    """The ``kubernetes.io/hostname`` of two Ready, schedulable nodes: the client's
    and the server's.  A cluster of one node has nothing to cross, and says so."""
    nodes = yaml.safe_load(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    usable = sorted(n["metadata"]["labels"][HOSTNAME_LABEL] for n in nodes
                    if not n["spec"].get("unschedulable")
                    and HOSTNAME_LABEL in (n["metadata"].get("labels") or {})
                    and any(c["type"] == "Ready" and c["status"] == "True"
                            for c in n["status"].get("conditions") or ()))
    if len(usable) < 2:
        pytest.skip(f"{len(usable)} schedulable node(s): no traffic crosses between nodes")
    return usable[0], usable[1]


def pinned(app: str, hostname: str, image: str, command: list[str] | None = None,
           ) -> list[dict[str, Any]]:
    """A ServiceAccount and a one-pod Deployment of ``image`` on the node ``hostname``."""
    container: dict[str, Any] = {"name": app, "image": image}
    if command:
        container["command"] = command
    labels = {"app": app}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": app}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": app, "terminationGracePeriodSeconds": 0,
                      "nodeSelector": {HOSTNAME_LABEL: hostname},
                      "containers": [container]}}}},
    ]


def wire_client(hostname: str) -> list[dict[str, Any]]:
    return pinned(WIRE_CLIENT, hostname, "curlimages/curl", ["/bin/sleep", "3650d"])


@pytest.fixture(scope="module")
def wire(namespaces, two_nodes) -> AppNamespace:
    """Enrolled: a curl client on one node, Bookinfo's details as a server on the other."""
    client_node, server_node = two_nodes
    return namespaces("idw", bookinfo=False, clients=False, extra=[
        *wire_client(client_node),
        *pinned(WIRE_SERVER, server_node, "docker.io/istio/examples-bookinfo-details-v1:1.20.2")])


@pytest.fixture(scope="module")
def wire_outside(namespaces, two_nodes) -> AppNamespace:
    """Not enrolled: a curl client on the enrolled client's node."""
    return namespaces("idwo", enroll=False, bookinfo=False, clients=False,
                      extra=wire_client(two_nodes[0]))


def _captured_request(cluster, client_ns: AppNamespace, url: str):
    """The client's request to ``url``, and what its node's uplink carried meanwhile."""
    node = client_ns.pod(WIRE_CLIENT)["spec"]["nodeName"]
    try:
        capture = cluster.capture_node_traffic(node)
    except CaptureUnsupported as exc:
        pytest.skip(str(exc))
    with capture:
        key, _, value = MARKER.partition(": ")
        r = client_ns.request(WIRE_CLIENT, url, headers={key: value})
    return r, capture.stop()


def _server_url(wire: AppNamespace) -> tuple[str, str]:
    server = wire.pod(WIRE_SERVER)
    client = wire.pod(WIRE_CLIENT)
    assert server["spec"]["nodeName"] != client["spec"]["nodeName"], \
        "the pinned client and server share a node"
    ip = server["status"]["podIP"]
    return ip, f"http://{ip}:9080/health"


@pytest.mark.feature(F.MTLS)
def test_traffic_between_enrolled_pods_is_mutual_tls_on_the_wire(cluster, wire):
    server_ip, url = _server_url(wire)
    r, segments = _captured_request(cluster, wire, url)
    assert r.status == 200, r
    flows = flow_records(segments, server_ip, 15008)
    assert flows, f"no traffic toward {server_ip}:15008 (HBONE) on the client node's uplink"
    # The tunnelled request is TLS application data, record by record, on a connection
    # opened for it (handshake first) or one kept from before (caught mid-stream).
    assert any(types and APPLICATION_DATA in types for types in flows.values()), \
        f"no TLS application data toward {server_ip}:15008, TLS record types by flow: {flows}"
    marker = MARKER.split(": ")[1].encode()
    assert not any(marker in s.payload for s in segments), "the request crossed in plaintext"


@pytest.mark.feature(F.CAPTURE)
def test_a_client_outside_the_mesh_sends_plaintext(cluster, wire, wire_outside):
    _, url = _server_url(wire)
    r, segments = _captured_request(cluster, wire_outside, url)
    assert r.status == 200, r
    marker = MARKER.split(": ")[1].encode()
    assert any(marker in s.payload for s in segments), \
        "an un-enrolled client's request should cross in plaintext (it is outside the mesh)"


@pytest.mark.feature(F.MTLS, F.L4_POLICY)
def test_the_destination_knows_the_client_principal_and_not_an_outsiders(meshed, outside):
    ns = meshed.name
    only = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "only-sleep", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "details"}}, "action": "ALLOW",
                     "rules": [{"from": [{"source": {"principals": [principal(ns, "sleep")]}}]}]}}
    url = f"http://details.{ns}:9080/details/0"
    meshed.cluster.apply([only])
    try:
        eventually(lambda: meshed.request("notsleep", url), lambda r: r.exit_code == 56,
                   what="the principal allow-list is in force (notsleep reset)")
        assert meshed.request("sleep", url).status == 200
        # The outsider's sleep has the same account name but no identity at all: its
        # plaintext connection is refused or reset, never answered.
        r = outside.request("sleep", url)
        assert r.status is None and r.exit_code in (7, 52, 56), r
    finally:
        meshed.cluster.delete([only])


@pytest.mark.feature(F.TCP_TELEMETRY, F.MTLS)
def test_ztunnel_tcp_metrics_name_both_principals(meshed):
    target = meshed.pod("details")
    url = f"http://{target['status']['podIP']}:9080/details/0"
    assert meshed.request("sleep", url).status == 200
    node = target["spec"]["nodeName"]
    want = {"reporter": "destination",
            "source_principal": f"spiffe://{principal(meshed.name, 'sleep')}",
            "destination_principal": f"spiffe://{principal(meshed.name, 'bookinfo-details')}",
            "connection_security_policy": "mutual_tls"}
    samples = eventually(lambda: meshed.ztunnel_metrics(node),
                         lambda s: bool(metrics.select(s, "istio_tcp_connections_opened_total",
                                                       **want)),
                         what="the destination ztunnel counts sleep's connection", timeout=30)
    names = {s.name for s in samples}
    for series in ("istio_tcp_connections_opened_total", "istio_tcp_received_bytes_total",
                   "istio_tcp_sent_bytes_total"):
        assert series in names, f"{series} missing at the ztunnel"
    [labels] = [s.labels for s in metrics.select(samples, "istio_tcp_connections_opened_total",
                                                 **want)][:1]
    for label in ("destination_workload", "source_workload", "destination_service",
                  "request_protocol", "response_flags", "source_workload_namespace"):
        assert label in labels, f"label {label} missing on istio_tcp_connections_opened_total"


@pytest.mark.feature(F.WAYPOINT, F.HTTP_TELEMETRY)
def test_waypoint_request_metrics(namespaces, adapter, waypoint_flavour):
    ns = namespaces("tel", bookinfo=True)
    wp = ns.add_waypoint("waypoint", flavour=waypoint_flavour)
    ns.use_waypoint("service", "details", wp)
    eventually(lambda: ns.metrics(ns.name, f"deploy/{wp.deployment}",
                                  adapter.metrics_locations()["waypoint"])
               if ns.request("sleep", "http://details:9080/details/0").status == 200 else "",
               lambda text: bool(metrics.select(metrics.parse(text), "istio_requests_total",
                                                reporter="waypoint", response_code="200")),
               what="the waypoint counts sleep's request to details", timeout=30)
    text = ns.metrics(ns.name, f"deploy/{wp.deployment}", adapter.metrics_locations()["waypoint"])
    samples = metrics.select(metrics.parse(text), "istio_requests_total", reporter="waypoint",
                             response_code="200")
    labels = samples[0].labels
    assert labels.get("source_principal") == f"spiffe://{principal(ns.name, 'sleep')}", labels
    assert labels.get("connection_security_policy") == "mutual_tls", labels
    assert labels.get("request_protocol") == "http", labels
    assert "details" in labels.get("destination_service", ""), labels
