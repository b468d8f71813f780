"""The main job until the conformance suite exists: a local cluster, Bookinfo and the
sleep/notsleep clients applied with kubectl, traffic from sleep, and what the
cluster made of it, shown; then everything removed."""

from __future__ import annotations

import collections
import re
import sys
import time
from pathlib import Path

from ..provider import ClusterError
from .provider import LocalCluster

MANIFESTS = Path(__file__).resolve().parents[2] / "conformance" / "manifests"
DEFAULT_MANIFEST = MANIFESTS / "bookinfo.yaml"


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
        return 0 if title else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        t0 = time.monotonic()
        cluster.teardown()
        print(f"[demo] cluster removed in {time.monotonic() - t0:.2f}s; "
              f"total {time.monotonic() - started:.2f}s")
