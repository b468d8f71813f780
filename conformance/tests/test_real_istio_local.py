"""Acceptance: real Istio ambient (istiod, istio-cni, ztunnel built from source) on the
local cluster, installed with ``istioctl install``, serving upstream-shaped Bookinfo
with mutual TLS and enforcing an L4 AuthorizationPolicy.

Skips unless ``AMBIENT_HARNESS_ISTIO_BIN`` names a folder with ``pilot-discovery``,
``istioctl``, ``istio-cni``, ``install-cni`` and ``ztunnel`` (README: "Real Istio on
the local cluster").  ``AMBIENT_HARNESS_ISTIO_SRC`` may name an istio/istio checkout
whose ``samples/bookinfo/platform/kube/bookinfo.yaml`` is then applied; without it
the project's copy (``conformance/manifests/bookinfo.yaml``, same objects) is.

The tests run in order on one cluster: install, apps, enrollment, traffic, policy.
Every wait is on a condition (the API, or ztunnel's own admin and metrics
endpoints); the timeouts are hang guards.  What each step expects comes from
Istio's ambient docs and code:

- enrollment: istio-cni annotates running pods of a namespace labelled
  ``istio.io/dataplane-mode=ambient`` with ``ambient.istio.io/redirection: enabled``
  (istio/istio ``cni/pkg/nodeagent/server.go``, ``pkg/kube/annotation``: AmbientRedirection);
- telemetry: ztunnel counts connections in ``istio_tcp_connections_opened_total`` with
  ``connection_security_policy="mutual_tls"`` and SPIFFE principals (istio/ztunnel
  ``src/proxy/metrics.rs``);
- policy: an ALLOW policy with ``from.source.principals`` on a selected workload is
  enforced by ztunnel at L4, and a peer it does not allow is refused (istio.io docs,
  "Ambient mode: Secure application access", the ``productpage-viewer`` policy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.local.images import istio_build
from clusters.local.provider import LocalCluster
from conformance import metrics
from conformance.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real-istio-local"),
              pytest.mark.timeout(1800)]

PROJECT = Path(__file__).resolve().parents[2]
MANIFESTS = PROJECT / "conformance" / "manifests"
# The ambient profile as istioctl installs it; istio-cni shares the node's network
# namespace (values.cni.ambient.shareHostNetworkNamespace, istio/istio
# manifests/charts/istio-cni/values.yaml), so it runs as on a node, without
# switching namespaces through ALLOW_SWITCH_TO_HOST_NS.
INSTALL_SETS = ("profile=ambient", "values.cni.ambient.shareHostNetworkNamespace=true")
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
PRODUCTPAGE = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
POLICY = {
    "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
    "metadata": {"name": "productpage-viewer", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": [
                 "cluster.local/ns/default/sa/sleep"]}}]}]}}
TITLE = "<title>Simple Bookstore App</title>"


def _bookinfo() -> Path:
    src = os.environ.get("AMBIENT_HARNESS_ISTIO_SRC")
    if src:
        upstream = Path(src) / "samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
        if not upstream.is_file():
            pytest.fail(f"AMBIENT_HARNESS_ISTIO_SRC={src} has no {upstream.relative_to(src)}")
        return upstream
    return MANIFESTS / "bookinfo.yaml"


@pytest.fixture(scope="module")
def istio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    try:
        build = istio_build.find()
    except istio_build.IstioBuildMissing as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("real-istio")
    mapping = istio_build.write_mapping(build, tmp / "istio-images.yaml")
    cluster = LocalCluster(f"istio-{os.getpid()}", root=tmp / "state",
                           image_executables=[str(mapping)], start_timeout=120)
    cluster.up()
    try:
        yield cluster, build
    finally:
        cluster.teardown()


def _run(argv: list[str], cluster: LocalCluster, timeout: float = 900) -> str:
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.stdout


def _pods(cluster: LocalCluster, namespace: str, selector: str | None = None) -> list[dict]:
    args = ["get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return json.loads(cluster.kubectl(*args).stdout)["items"]


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def _app(pod: dict) -> str:
    """The chart's app label (istio-cni's is ``k8s-app``)."""
    labels = pod["metadata"].get("labels") or {}
    return labels.get("app") or labels.get("k8s-app") or ""


def _names(pods: list[dict]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


def _ztunnel(cluster: LocalCluster, path: str, port: int) -> list[str]:
    """``path`` of each ztunnel's admin (15000, its localhost) or stats (15020) port,
    fetched from inside its pod."""
    pods = _pods(cluster, "istio-system", "app=ztunnel")
    assert len(pods) == 2, _names(pods)
    out = []
    for pod in pods:
        got = cluster.exec("istio-system", pod["metadata"]["name"],
                           ["curl", "-sf", f"http://localhost:{port}{path}"], timeout=60)
        assert got.exit_code == 0, got.stderr
        out.append(got.stdout)
    return out


def _curl_productpage(cluster: LocalCluster, client: str) -> tuple[int, str]:
    got = cluster.exec("default", f"deploy/{client}",
                       ["curl", "-s", "--max-time", "10", "productpage:9080/productpage"],
                       timeout=60)
    return got.exit_code, got.stdout


def test_istioctl_install_brings_istiod_cni_and_ztunnel_up(istio):
    cluster, build = istio
    sets = [a for s in INSTALL_SETS for a in ("--set", s)]
    # istioctl waits until the Deployment and DaemonSets are ready (its own 5 min)
    _run([str(build / "istioctl"), "install", *sets, "-y"], cluster)
    pods = _pods(cluster, "istio-system")
    apps = sorted(_app(p) for p in pods)
    assert apps == ["istio-cni-node", "istio-cni-node", "istiod", "ztunnel", "ztunnel"], apps
    assert all(_ready(p) for p in pods), [(p["metadata"]["name"], p["status"]) for p in pods]
    # one istio-cni and one ztunnel per node
    for app in ("istio-cni-node", "ztunnel"):
        nodes = {p["spec"]["nodeName"] for p in pods if _app(p) == app}
        assert nodes == {"node-1", "node-2"}, (app, nodes)


def test_bookinfo_and_clients_run(istio):
    cluster, _ = istio
    cluster.apply(_bookinfo(), namespace="default")
    cluster.apply(MANIFESTS / "sleep.yaml", namespace="default")
    pods = eventually(lambda: _pods(cluster, "default"),
                      lambda ps: len(ps) == 8 and all(_ready(p) for p in ps),
                      what="Bookinfo (6 pods), sleep and notsleep are Ready", timeout=300)
    assert len(pods) == 8


def test_labelling_the_namespace_enrolls_the_running_pods(istio):
    cluster, _ = istio
    before = _names(_pods(cluster, "default"))
    cluster.kubectl("label", "namespace", "default", "istio.io/dataplane-mode=ambient")

    def enrolled(pods: list[dict]) -> bool:
        return all((p["metadata"].get("annotations") or {}).get(
            "ambient.istio.io/redirection") == "enabled" for p in pods)
    pods = eventually(lambda: _pods(cluster, "default"), enrolled,
                      what="istio-cni annotated every pod of default", timeout=120)
    assert _names(pods) == before  # the same pods, not restarted ones
    # ztunnel knows them: its workloads list them with the HBONE protocol
    dumps = eventually(lambda: [json.loads(d) for d in _ztunnel(cluster, "/config_dump",
                                                                15000)],
                       lambda ds: all(sum(1 for w in d.get("workloads") or ()
                                          if w.get("namespace") == "default"
                                          and w.get("protocol") == "HBONE") == 8
                                      for d in ds),
                       what="every ztunnel has the 8 default pods as HBONE workloads",
                       timeout=120)
    assert len(dumps) == 2


def test_sleep_reaches_productpage_through_ztunnel_with_mutual_tls(istio):
    cluster, _ = istio
    code, page = _curl_productpage(cluster, "sleep")
    assert code == 0 and TITLE in page, page[:500]

    def sleep_to_productpage() -> list[metrics.Sample]:
        samples = [s for text in _ztunnel(cluster, "/metrics", 15020)
                   for s in metrics.parse(text)]
        return metrics.select(samples, "istio_tcp_connections_opened_total",
                              source_principal=SLEEP, destination_principal=PRODUCTPAGE)
    seen = eventually(sleep_to_productpage, lambda ss: {s.labels["reporter"] for s in ss}
                      >= {"source", "destination"},
                      what="both ztunnels counted sleep's connection to productpage",
                      timeout=60)
    assert all(s.labels["connection_security_policy"] == "mutual_tls" for s in seen), seen
    assert all(s.value >= 1 for s in seen)


def test_an_l4_policy_refuses_notsleep_and_still_allows_sleep(istio):
    cluster, _ = istio
    code, page = _curl_productpage(cluster, "notsleep")
    assert code == 0 and TITLE in page  # allowed before the policy
    cluster.apply([POLICY], namespace="default")

    def has_policy(dumps: list[str]) -> bool:
        return all(any(p.get("name") == "productpage-viewer"
                       for p in json.loads(d).get("policies") or ()) for d in dumps)
    eventually(lambda: _ztunnel(cluster, "/config_dump", 15000), has_policy,
               what="every ztunnel received the productpage-viewer policy", timeout=120)
    code, page = _curl_productpage(cluster, "notsleep")
    assert code != 0 and TITLE not in page, (code, page[:300])
    code, page = _curl_productpage(cluster, "sleep")
    assert code == 0 and TITLE in page, page[:500]
