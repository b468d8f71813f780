"""The reference implementation installed on the harness's local cluster, observed as a
user would: walkthrough steps 5-7, mutual TLS on the wire, policies, un-enrolling.

The local cluster is the test bed (it comes from the harness, installed beside this
distribution); the implementation is reached only through manifests, kubectl, curl
and metrics.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest
import yaml

provider = pytest.importorskip("clusters.local.provider",
                               reason="needs the ambient-harness local cluster")

pytestmark = [
    pytest.mark.slow,
    # One mesh cluster at a time: two on two cores starve each other.
    pytest.mark.xdist_group("mesh-cluster"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the local cluster's nodes need root"),
]

MANIFESTS = Path(__file__).resolve().parents[1] / "ambient_ref" / "manifests"
APPS = Path(__file__).resolve().parents[2] / "conformance" / "manifests"
ANNOTATION = "ambient.istio.io/redirection"
VIEWER = {
    "apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
    "metadata": {"name": "productpage-viewer", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": [
                 "cluster.local/ns/default/sa/sleep",
                 "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}}]}]},
}


def _captured(cluster, value: str | None) -> None:
    """Wait (watching) until every pod in default has / has not the capture annotation."""
    from kubernetes import client, watch

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        pods = core.list_namespaced_pod("default")
        state = {p.metadata.name: (p.metadata.annotations or {}).get(ANNOTATION)
                 for p in pods.items}
        if all(v == value for v in state.values()):
            return
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default",
                           resource_version=pods.metadata.resource_version, timeout_seconds=30):
            pod = ev["object"]
            state[pod.metadata.name] = (pod.metadata.annotations or {}).get(ANNOTATION)
            if all(v == value for v in state.values()):
                w.stop()
                return
    raise AssertionError(f"capture annotation not {value!r} on every pod: {state}")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    c = provider.LocalCluster(f"ref-{worker}-{os.getpid()}", root=root)
    c.up()
    try:
        c.apply(MANIFESTS / "crds.yaml")
        c.apply(MANIFESTS / "install.yaml")
        c.apply(APPS / "bookinfo.yaml", namespace="default")
        c.apply(APPS / "sleep.yaml", namespace="default")
        c.apply(APPS / "bookinfo-gateway.yaml", namespace="default")
        c.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "istio-system",
                  "--timeout=60s")
        c.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "default",
                  "--timeout=60s")
        # Walkthrough step 5: enroll the namespace.
        c.kubectl("label", "namespace", "default", "istio.io/dataplane-mode=ambient")
        _captured(c, "enabled")
        yield c
    finally:
        c.teardown()


def wait_synced(cluster, ztunnels: int = 2, timeout: float = 60) -> None:
    """Until every ztunnel acknowledged the control plane's current configuration (the
    control plane's own account, ``/debug/syncz``): only then is a change in force."""
    import json

    [istiod] = yaml.safe_load(cluster.kubectl("get", "pods", "-n", "istio-system", "-l",
                                              "app=istiod", "-o", "yaml").stdout)["items"]
    deadline = time.monotonic() + timeout
    while True:
        r = cluster.exec("istio-system", istiod["metadata"]["name"],
                         ["curl", "-sS", "http://127.0.0.1:15014/debug/syncz"])
        state = json.loads(r.stdout) if r.exit_code == 0 else {}
        clients = state.get("clients") or []
        if len(clients) >= ztunnels and all(c["acked"] == state["version"] for c in clients):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"ztunnels not in sync after {timeout}s: {state}")


def applied(cluster, objects: list[dict]) -> None:
    """Apply policies and wait until the control plane computed them (their status) and
    every ztunnel acknowledged the result."""
    cluster.apply(objects)
    for obj in objects:
        cluster.wait(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                     namespace=obj["metadata"]["namespace"], timeout=20,
                     condition=lambda p: bool((p.get("status") or {}).get("conditions")))
    wait_synced(cluster)


def removed(cluster, objects: list[dict]) -> None:
    cluster.delete(objects)
    wait_synced(cluster)


def curl(cluster, client_app: str, url: str, *extra: str):
    return cluster.exec("default", f"deploy/{client_app}",
                        ["curl", "-sS", "-m", "10", *extra, url])


def ztunnel_metrics(cluster, node: str) -> str:
    pods = yaml.safe_load(cluster.kubectl("get", "pods", "-n", "istio-system", "-l",
                                          "app=ztunnel", "-o", "yaml").stdout)["items"]
    [pod] = [p for p in pods if p["spec"]["nodeName"] == node]
    return cluster.exec("istio-system", pod["metadata"]["name"],
                        ["curl", "-sS", "http://127.0.0.1:15020/metrics"]).stdout


def pod(cluster, app: str) -> dict:
    return yaml.safe_load(cluster.kubectl("get", "pods", "-n", "default", "-l", f"app={app}",
                                          "-o", "yaml").stdout)["items"][0]


def test_step6_clients_reach_productpage_through_the_mesh(mesh):
    for app in ("sleep", "notsleep"):
        r = curl(mesh, app, "http://productpage:9080/productpage")
        assert r.exit_code == 0, r.stderr
        assert "<title>Simple Bookstore App</title>" in r.stdout


def test_step6_ingress_gateway_reaches_productpage_before_and_after_the_l4_policy(mesh):
    url = "http://istio-ingressgateway.istio-system/productpage"
    r = curl(mesh, "sleep", url)
    assert r.exit_code == 0 and "<title>Simple Bookstore App</title>" in r.stdout, r.stderr
    applied(mesh, [VIEWER])
    try:  # the policy allows the ingress gateway's account
        r = curl(mesh, "sleep", url)
        assert r.exit_code == 0 and "<title>Simple Bookstore App</title>" in r.stdout
        r = curl(mesh, "notsleep", url)  # notsleep via the gateway is the gateway's call
        assert r.exit_code == 0
    finally:
        removed(mesh, [VIEWER])


def test_step7_l4_policy_lets_sleep_through_and_resets_notsleep(mesh):
    applied(mesh, [VIEWER])
    try:
        status = mesh.wait("security.istio.io/v1", "AuthorizationPolicy", "productpage-viewer",
                           namespace="default", timeout=5, condition=lambda p: True)
        assert status["status"]["conditions"][0]["type"] == "ZtunnelAccepted"
        ok = curl(mesh, "sleep", "http://productpage:9080/productpage")
        assert ok.exit_code == 0 and "Simple Bookstore App" in ok.stdout
        denied = curl(mesh, "notsleep", "http://productpage:9080/productpage")
        assert denied.exit_code == 56, (denied.exit_code, denied.stderr)
        node = pod(mesh, "productpage")["spec"]["nodeName"]
        metrics = ztunnel_metrics(mesh, node)
        assert any('response_flags="DENY"' in line and "sa/notsleep" in line
                   for line in metrics.splitlines()
                   if line.startswith("istio_tcp_connections_closed_total{"))
    finally:
        removed(mesh, [VIEWER])


def _open_sniffer(netns: Path) -> socket.socket:
    """A packet socket on the node's uplink, open before any traffic of interest."""
    from ambient_ref.ztunnel import capture

    def make() -> socket.socket:
        # ETH_P_ALL: a protocol-specific packet socket sees only incoming frames
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        s.bind(("eth0", 0))
        return s

    return capture.run_inside(netns, make)


def _sniff(sock: socket.socket, seconds: float) -> list[tuple[int, int, bytes]]:
    """TCP payloads (sport, dport, data) the socket sees for a while."""
    sock.settimeout(0.2)
    seen = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                frame = sock.recv(65535)
            except TimeoutError:
                continue
            if frame[12:14] != b"\x08\x00":  # IPv4 only
                continue
            ip = frame[14:]
            if len(ip) < 20 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            tcp = ip[ihl:]
            sport, dport = struct.unpack("!HH", tcp[:4])
            offset = (tcp[12] >> 4) * 4
            payload = tcp[offset:]
            if payload:
                seen.append((sport, dport, payload))
    finally:
        sock.close()
    return seen


def test_cross_node_traffic_is_mutual_tls_on_the_wire(mesh):
    import threading

    sleep_pod = pod(mesh, "sleep")
    # A destination sleep has not talked to yet: its tunnel starts with a handshake.
    target = next(p for app in ("ratings", "details", "reviews")
                  for p in [pod(mesh, app)]
                  if p["spec"]["nodeName"] != sleep_pod["spec"]["nodeName"])
    node = sleep_pod["spec"]["nodeName"]
    netns = Path("/run/netns") / f"ah-{mesh.name}-n{node.rsplit('-', 1)[-1]}"
    captured: list = []
    sock = _open_sniffer(netns)
    sniffer = threading.Thread(target=lambda: captured.extend(_sniff(sock, 3.0)))
    sniffer.start()
    url = f"http://{target['status']['podIP']}:9080/health"
    r = curl(mesh, "sleep", url, "-H", "x-secret-marker: plaintext-would-show-this")
    sniffer.join()
    assert r.exit_code == 0, r.stderr
    to_hbone = [p for sport, dport, p in captured if dport == 15008]
    assert to_hbone, "no traffic to 15008 seen on the node's uplink"
    assert any(p[:3] == b"\x16\x03\x01" or p[:3] == b"\x16\x03\x03" for p in to_hbone), \
        "no TLS handshake toward 15008"
    assert any(p[:3] == b"\x17\x03\x03" for p in to_hbone), "no TLS application data"
    assert not any(b"plaintext-would-show-this" in p or b"GET /health" in p
                   for _, _, p in captured), "request visible in plaintext on the wire"
    metrics = ztunnel_metrics(mesh, target["spec"]["nodeName"])
    lines = [line for line in metrics.splitlines()
             if line.startswith("istio_tcp_connections_opened_total{")
             and 'reporter="destination"' in line]
    assert any('connection_security_policy="mutual_tls"' in line
               and 'source_principal="spiffe://cluster.local/ns/default/sa/sleep"' in line
               for line in lines)


@pytest.mark.parametrize(("name", "spec", "sleep_ok", "notsleep_ok"), [
    ("l7-only-allow", {"action": "ALLOW", "rules": [{"to": [{"operation": {
        "methods": ["GET"]}}]}]}, False, False),
    ("l7-only-deny", {"action": "DENY", "rules": [{"to": [{"operation": {
        "methods": ["GET"]}}]}]}, True, True),
    ("deny-notsleep-by-principal", {"action": "DENY", "rules": [{"from": [{"source": {
        "principals": ["*/sa/notsleep"]}}]}]}, True, False),
    ("allow-nothing", {}, False, False),
    ("allow-by-namespace", {"action": "ALLOW", "rules": [{"from": [{"source": {
        "namespaces": ["default"]}}]}]}, True, True),
    ("deny-other-port-only", {"action": "DENY", "rules": [{"to": [{"operation": {
        "ports": ["9999"]}}]}]}, True, True),
    ("allow-sleep-account", {"action": "ALLOW", "rules": [{"from": [{"source": {
        "serviceAccounts": ["default/sleep"]}}]}]}, True, False),
])
def test_policy_matrix_through_the_data_path(mesh, name, spec, sleep_ok, notsleep_ok):
    policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": name, "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "details"}}, **spec}}
    applied(mesh, [policy])
    try:
        for app, expected in (("sleep", sleep_ok), ("notsleep", notsleep_ok)):
            r = curl(mesh, app, "http://details:9080/details/0")
            assert (r.exit_code == 0) is expected, (app, r.exit_code, r.stderr)
            if not expected:
                assert r.exit_code == 56
    finally:
        removed(mesh, [policy])


def test_bad_policies_are_refused_or_reported_not_crashed_on(mesh):
    # The CRD's schema refuses an unknown action, as Istio's own CRD does...
    refused = mesh.kubectl("apply", "-f", "-", check=False, input=yaml.safe_dump(
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
         "metadata": {"name": "unknown-action", "namespace": "default"},
         "spec": {"action": "MAYBE", "rules": [{}]}}))
    assert refused.returncode != 0
    assert 'spec.action: Unsupported value: "MAYBE"' in refused.stderr
    # ...and what passes the schema but not the control plane is reported in status.
    bad = [
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
         "metadata": {"name": "bad-principal", "namespace": "default"},
         "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "action": "DENY",
                  "rules": [{"from": [{"source": {"principals": ["a*b*c"]}}]}]}},
    ]
    mesh.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(bad))
    try:
        for obj in bad:
            got = mesh.wait("security.istio.io/v1", "AuthorizationPolicy",
                            obj["metadata"]["name"], namespace="default", timeout=20,
                            condition=lambda p: bool((p.get("status") or {}).get(
                                "conditions")))
            [cond] = got["status"]["conditions"]
            assert cond["type"] == "ZtunnelAccepted"
            assert cond["status"] == "False" or "principal" in cond["message"]
        # ...and the mesh still works
        assert curl(mesh, "sleep", "http://productpage:9080/productpage").exit_code == 0
    finally:
        removed(mesh, bad)


def test_unlabelling_returns_traffic_to_direct_paths(mesh):
    mesh.kubectl("label", "namespace", "default", "istio.io/dataplane-mode-")
    try:
        _captured(mesh, None)
        p = pod(mesh, "productpage")
        out = mesh.exec("default", p["metadata"]["name"], ["nft", "list", "ruleset"]).stdout
        assert "redirect" not in out  # the chains stay, without redirections
        before = ztunnel_metrics(mesh, p["spec"]["nodeName"]).count("reporter=\"destination\"")
        r = curl(mesh, "sleep", "http://productpage:9080/productpage")
        assert r.exit_code == 0 and "Simple Bookstore App" in r.stdout
        after = ztunnel_metrics(mesh, p["spec"]["nodeName"]).count("reporter=\"destination\"")
        assert after == before  # the ztunnel saw nothing of it
    finally:
        mesh.kubectl("label", "namespace", "default", "istio.io/dataplane-mode=ambient")
        _captured(mesh, "enabled")


def test_ztunnels_keep_serving_without_the_control_plane_and_resync(mesh):
    mesh.kubectl("scale", "deployment/istiod", "-n", "istio-system", "--replicas=0")
    try:
        mesh.kubectl("wait", "--for=delete", "pods", "-l", "app=istiod", "-n",
                     "istio-system", "--timeout=30s")
        # Last configuration still in force: traffic flows...
        assert curl(mesh, "notsleep", "http://productpage:9080/productpage").exit_code == 0
        # ...and a change made meanwhile is not (nobody computes it).
        mesh.apply([VIEWER])
        assert curl(mesh, "notsleep", "http://productpage:9080/productpage").exit_code == 0
    finally:
        mesh.kubectl("scale", "deployment/istiod", "-n", "istio-system", "--replicas=1")
    mesh.kubectl("wait", "--for=condition=Ready", "pods", "-l", "app=istiod", "-n",
                 "istio-system", "--timeout=60s")
    try:
        # The new control plane (same root of trust, from its Secret) resynchronises
        # the ztunnels; the policy is in force once both acknowledged its version.
        mesh.wait("security.istio.io/v1", "AuthorizationPolicy", "productpage-viewer",
                  namespace="default", timeout=30,
                  condition=lambda p: bool((p.get("status") or {}).get("conditions")))
        wait_synced(mesh)
        r = curl(mesh, "notsleep", "http://productpage:9080/productpage")
        assert r.exit_code == 56, (r.exit_code, r.stderr)
        assert curl(mesh, "sleep", "http://productpage:9080/productpage").exit_code == 0
    finally:
        removed(mesh, [VIEWER])
