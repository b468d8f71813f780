"""kubectl port-forward (the pinned kubectl 1.37) to pods and Services on the local cluster.

kubectl tunnels SPDY in a WebSocket (clusters/local/apiserver/portforward.py), or,
with KUBECTL_PORT_FORWARD_WEBSOCKETS=false (its fallback), speaks SPDY on the
upgraded connection; the bytes reach a real server process in the pod's network
namespace and come back.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from clusters.provider import kubectl_binary

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

RATINGS = "docker.io/istio/examples-bookinfo-ratings-v1:1.20.2"
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


@pytest.fixture
def pfns(nodes_kubectl):
    name = f"pf-{uuid.uuid4().hex[:8]}"
    k = nodes_kubectl
    k("create", "namespace", name)
    k("create", "deployment", "ratings", "-n", name, f"--image={RATINGS}")
    k("expose", "deployment", "ratings", "-n", name, "--port=80", "--target-port=9080")
    k("rollout", "status", "deployment/ratings", "-n", name, "--timeout=90s", timeout=120)
    yield name
    k("delete", "namespace", name, "--wait=false")


# kubectl's feature gate for the WebSocket tunnel (k8s.io/kubectl pkg/cmd/util
# feature gates, PortForwardWebsockets); false makes it upgrade to SPDY directly
TRANSPORTS = {"websocket": "true", "spdy": "false"}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request) -> str:
    return request.param


@contextmanager
def port_forward(cluster, tmp_path, *args: str, transport: str = "websocket",
                 verbosity: int = 0) -> Iterator[tuple[int, subprocess.Popen]]:
    """kubectl port-forward on a free local port: (that port, the process)."""
    proc = subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}",
         f"--cache-dir={tmp_path / 'kube-cache'}", f"-v={verbosity}", "port-forward",
         "--address=127.0.0.1", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": TRANSPORTS[transport]})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first line once listening, or EOF on failure
        match = FORWARDING.search(line)
        if match is None:
            proc.kill()
            raise AssertionError(f"kubectl port-forward did not start: {line!r} "
                                 f"{proc.communicate(timeout=10)}")
        yield int(match.group(1)), proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
        return r.read()


def test_port_forward_to_a_pod_and_to_a_service(nodes_cluster, tmp_path, pfns, transport):
    with port_forward(nodes_cluster, tmp_path, "-n", pfns, "deployment/ratings", ":9080",
                      transport=transport, verbosity=8) as (port, proc):
        assert json.loads(get(port, "/health")) == {"status": "Ratings is healthy"}
        proc.kill()
        _, log = proc.communicate(timeout=10)
    # the upgrade kubectl was answered (its -v=8 log shows the 101's headers)
    upgraded = {"websocket": "Upgrade: websocket", "spdy": "Upgrade: SPDY/3.1"}[transport]
    assert upgraded in log, log[-3000:]
    # a Service's port 80 is its pods' 9080: kubectl maps it, the server forwards to 9080
    with port_forward(nodes_cluster, tmp_path, "-n", pfns, "svc/ratings", ":80",
                      transport=transport) as (port, _):
        answers = list(concurrent.futures.ThreadPoolExecutor(8).map(
            lambda i: json.loads(get(port, f"/ratings/{i}")), range(24)))
    assert [a["id"] for a in answers] == list(range(24))


def test_port_forward_to_a_closed_port_says_why(nodes_cluster, tmp_path, pfns, transport):
    with port_forward(nodes_cluster, tmp_path, "-n", pfns, "deployment/ratings", ":9999",
                      transport=transport) as (port, proc):
        with pytest.raises(OSError):
            get(port, "/")
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "error forwarding port 9999 to pod" in err
    assert "connection refused" in err.lower()


def test_the_proxy_subresource_reaches_pods_and_services(nodes_kubectl, pfns):
    k = nodes_kubectl
    base = f"/api/v1/namespaces/{pfns}"
    health = k("get", "--raw", f"{base}/services/ratings:80/proxy/health").stdout
    assert json.loads(health) == {"status": "Ratings is healthy"}
    pod = json.loads(k("get", "pods", "-n", pfns, "-l", "app=ratings", "-o", "json").stdout)
    name = pod["items"][0]["metadata"]["name"]
    rating = k("get", "--raw", f"{base}/pods/{name}:9080/proxy/ratings/7?x=1").stdout
    assert json.loads(rating)["id"] == 7
    # a port nothing listens on, and a Service with no ready pods, say so
    closed = k("get", "--raw", f"{base}/pods/{name}:9999/proxy/", check=False)
    assert closed.returncode != 0 and "9999" in closed.stderr
    k("create", "service", "clusterip", "nobody", "-n", pfns, "--tcp=80:80")
    empty = k("get", "--raw", f"{base}/services/nobody:80/proxy/", check=False)
    assert empty.returncode != 0 and 'no endpoints available for service "nobody"' in \
        empty.stderr
