"""The main job until the conformance suite exists: a local cluster, Bookinfo and the
sleep/notsleep clients applied with kubectl, traffic from sleep, and what the
cluster made of it, shown; then everything removed."""

from __future__ import annotations

import collections
import re
import sys
import time
from pathlib import Path

from ..polling import poll
from ..provider import ClusterError
from .provider import LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "conformance" / "manifests"
DEFAULT_MANIFEST = MANIFESTS / "bookinfo.yaml"
# Found on disk, never by importing ``ambient_ref``: the harness and the reference
# implementation are separate distributions that never import each other.
REFERENCE_MANIFESTS = REPO_ROOT / "reference-impl" / "ambient_ref" / "manifests"


def _ambient(cluster: LocalCluster) -> bool:
    """Walkthrough steps 5-7 with the reference implementation, if it is installed."""
    manifests = REFERENCE_MANIFESTS
    if not (manifests / "install.yaml").is_file():
        print(f"[demo] the reference implementation's manifests are not in {manifests}: "
              "skipping the ambient steps")
        return True
    print("[demo] installing the reference ambient implementation")
    cluster.apply(manifests / "crds.yaml")
    cluster.apply(manifests / "install.yaml")
    cluster.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "istio-system",
                    "--timeout=60s")
    cluster.kubectl("label", "namespace", "default", "istio.io/dataplane-mode=ambient")
    for pod in cluster.kubectl("get", "pods", "-n", "default", "-o", "name").stdout.split():
        cluster.kubectl("wait", "--for=jsonpath={.metadata.annotations.ambient\\.istio\\.io/"
                        "redirection}=enabled", pod, "-n", "default", "--timeout=30s")
    print("[demo] namespace default enrolled; every pod captured by its node's ztunnel")
    ok = True
    for app in ("sleep", "notsleep"):
        r = cluster.exec("default", f"deploy/{app}",
                         ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          "http://productpage:9080/productpage"])
        print(f"[demo] {app}$ curl productpage -> HTTP {r.stdout} (through the mesh)")
        ok = ok and r.stdout == "200"
    cluster.apply(MANIFESTS / "productpage-viewer.yaml")
    cluster.wait("security.istio.io/v1", "AuthorizationPolicy", "productpage-viewer",
                 namespace="default", timeout=30, description="status written",
                 condition=lambda p: bool((p.get("status") or {}).get("conditions")))
    return ok and _l4_policy_effect(cluster)


def _l4_policy_effect(cluster: LocalCluster) -> bool:
    import json

    istiod = cluster.find_pod("istio-system", "deploy/istiod")["metadata"]["name"]

    def syncz() -> dict:
        return json.loads(cluster.exec("istio-system", istiod, [
            "curl", "-s", "http://127.0.0.1:15014/debug/syncz"]).stdout or "{}")

    def both_acked(sync: dict) -> bool:
        clients = sync.get("clients") or []
        return len(clients) >= 2 and all(c["acked"] == sync["version"] for c in clients)

    if not poll(syncz, both_acked, timeout=30).held:
        print("[demo] the ztunnels did not acknowledge the policy's configuration in 30s")
        return False
    results = {}
    for app in ("sleep", "notsleep"):
        r = cluster.exec("default", f"deploy/{app}", ["curl", "-s", "-o", "/dev/null",
                                                       "http://productpage:9080/productpage"])
        results[app] = r.exit_code
        print(f"[demo] with the L4 policy productpage-viewer: {app}$ curl exits {r.exit_code}")
    return results == {"sleep": 0, "notsleep": 56}


def run_demo(manifest: Path = DEFAULT_MANIFEST, nodes: int = 2,
             name: str = "ambient-demo") -> int:
    if not manifest.exists():
        print(f"error: manifest {manifest} not found", file=sys.stderr)
        return 2
    cluster = LocalCluster(name, nodes=nodes)
    started = time.monotonic()
    try:
        cluster.up()
        print(f"[demo] local cluster up ({nodes} nodes Ready, DNS serving) in "
              f"{time.monotonic() - started:.2f}s at {cluster.url}")
        t0 = time.monotonic()
        for path in (manifest, MANIFESTS / "sleep.yaml"):
            print(f"[demo] kubectl apply -f {path.relative_to(MANIFESTS.parents[1])}")
            for line in cluster.apply(path, namespace="default"):
                print(f"  {line}")
        cluster.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "default",
                        "--timeout=120s")
        print(f"[demo] every pod Ready {time.monotonic() - t0:.2f}s after apply")
        print(cluster.kubectl("get", "nodes,pods,services", "-o", "wide").stdout)
        page = cluster.exec("default", "deploy/sleep",
                            ["curl", "-sS", "http://productpage:9080/productpage"])
        title = re.search(r"<title>.*</title>", page.stdout)
        print(f"[demo] sleep$ curl -s http://productpage:9080/productpage | grep title -> "
              f"{title.group(0) if title else page.stderr.strip() or 'no title'}")
        loop = ("for i in $(seq 30); do curl -s http://productpage:9080/productpage "
                "| grep -o 'reviews-v[0-9]' | head -n 1; done")
        served = collections.Counter(cluster.exec("default", "deploy/sleep",
                                                  ["sh", "-c", loop]).stdout.split())
        print(f"[demo] 30 requests, reviews served by: {dict(sorted(served.items()))}")
        return 0 if title and _ambient(cluster) else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        t0 = time.monotonic()
        cluster.teardown()
        print(f"[demo] cluster removed in {time.monotonic() - t0:.2f}s; "
              f"total {time.monotonic() - started:.2f}s")
