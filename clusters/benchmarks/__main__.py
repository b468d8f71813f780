"""Benchmarks of the local cluster's API: ``python -m clusters.benchmarks``.

Prints figures; asserts nothing.  Each figure is measured the way a user meets it:
through the official client over HTTPS, against a cluster started for the run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, watch

from clusters.local.provider import LocalCluster


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_up_down(root: Path, rounds: int) -> None:
    ups, downs = [], []
    for i in range(rounds):
        c = LocalCluster(f"updown-{i}", root=root, run_pods=False)
        t0 = time.perf_counter()
        c.up()
        with c.api_client() as api:
            client.VersionApi(api).get_code()
        ups.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c.teardown()
        downs.append(time.perf_counter() - t0)
    print(f"up to first successful request: median {statistics.median(ups) * 1000:.0f} ms, "
          f"max {max(ups) * 1000:.0f} ms ({rounds} rounds)")
    print(f"down: median {statistics.median(downs) * 1000:.0f} ms, "
          f"max {max(downs) * 1000:.0f} ms")


def bench_pod_creates(c: LocalCluster, n: int, threads: int) -> None:
    with c.api_client() as api:
        api.configuration.connection_pool_maxsize = threads
        core = client.CoreV1Api(api)
        for ns in ("bench-seq", "bench-par"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

        def pod(i: int) -> client.V1Pod:
            return client.V1Pod(metadata=client.V1ObjectMeta(name=f"p{i}", labels={"app": "b"}),
                                spec=client.V1PodSpec(containers=[client.V1Container(
                                    name="c", image="curlimages/curl")]))

        t0 = time.perf_counter()
        for i in range(n):
            core.create_namespaced_pod("bench-seq", pod(i))
        seq = time.perf_counter() - t0
        print(f"{n} pod creates, one client thread: {n / seq:.0f}/s ({seq:.2f} s)")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: core.create_namespaced_pod("bench-par", pod(i)), range(n)))
        par = time.perf_counter() - t0
        print(f"{n} pod creates, {threads} client threads: {n / par:.0f}/s ({par:.2f} s)")


def bench_watch_latency(c: LocalCluster, watchers: int, writes: int) -> None:
    with c.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench-w")))
        rv = core.list_namespaced_config_map("bench-w").metadata.resource_version
        written: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()
        connected = threading.Semaphore(0)

        def watcher() -> None:
            wapi = c.api_client()
            w = watch.Watch()
            seen = 0
            for ev in w.stream(client.CoreV1Api(wapi).list_namespaced_config_map, "bench-w",
                               resource_version=rv, timeout_seconds=120):
                now = time.perf_counter()
                name = ev["object"].metadata.name
                if name == "warm-up":
                    connected.release()  # this watcher's stream is live
                    continue
                with lock:
                    latencies.append(now - written[name])
                seen += 1
                if seen == writes:
                    w.stop()
            wapi.close()

        threads = [threading.Thread(target=watcher) for _ in range(watchers)]
        for t in threads:
            t.start()
        core.create_namespaced_config_map("bench-w", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="warm-up")))
        for _ in threads:
            connected.acquire(timeout=30)
        for i in range(writes):
            name = f"w{i}"
            with lock:
                written[name] = time.perf_counter()
            core.create_namespaced_config_map("bench-w", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=name)))
            time.sleep(0.005)  # paced writes: delivery latency, not throughput, is measured
        for t in threads:
            t.join(60)
        ms = [x * 1000 for x in latencies]
        print(f"watch delivery, write to event, {watchers} watchers x {writes} writes: "
              f"p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms "
              "(from before the client sends the write to the watcher's decoded event)")


def bench_memory(c: LocalCluster, objects: int) -> None:
    pid = c.dir.pid()
    assert pid is not None
    before = rss_mib(pid)
    with c.api_client() as api:
        api.configuration.connection_pool_maxsize = 8
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench-m")))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: core.create_namespaced_config_map(
                "bench-m", client.V1ConfigMap(metadata=client.V1ObjectMeta(
                    name=f"cm{i}", labels={"app": "bench", "i": str(i)}),
                    data={"key": "x" * 200})), range(objects)))
        total = sum(1 for _ in core.list_config_map_for_all_namespaces().items)
    after = rss_mib(pid)
    print(f"API process memory: {before:.0f} MiB idle, {after:.0f} MiB after {objects} more "
          f"objects ({total} configmaps in all, plus what the pod benchmark left)")


def _percentiles(values: list[float]) -> str:
    return (f"p50 {pct(values, 50) * 1000:.0f} ms, p99 {pct(values, 99) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms")


def bench_nodes_up_down(root: Path, rounds: int) -> None:
    ups, downs = [], []
    for i in range(rounds):
        c = LocalCluster(f"nodes-{i}", root=root)
        t0 = time.perf_counter()
        c.up()  # returns once every node is Ready and cluster DNS serves
        ups.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c.teardown()
        downs.append(time.perf_counter() - t0)
    print(f"cluster up (2 nodes Ready, DNS ready): {_percentiles(ups)} ({rounds} rounds)")
    print(f"cluster down (all namespaces, links, processes gone): {_percentiles(downs)}")


def _pids_in_pod(uid: str) -> list[int]:
    from clusters.local.network import netns
    from clusters.local.network.topology import pod_netns

    ino = netns.inode(pod_netns(uid))
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns" / "net").stat().st_ino == ino:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def bench_bookinfo(c: LocalCluster) -> None:
    import json
    import sys

    from clusters.local.demo import MANIFESTS

    t0 = time.perf_counter()
    c.apply(MANIFESTS / "bookinfo.yaml", namespace="default")
    c.apply(MANIFESTS / "sleep.yaml", namespace="default")
    c.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "default",
              "--timeout=120s")
    print(f"Bookinfo + sleep + notsleep all Ready after apply: "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    for name, url in (("productpage /health", "http://productpage:9080/health"),
                      ("details via VIP", "http://details:9080/details/0")):
        r = c.exec("default", "deploy/sleep", [sys.executable, "-m",
                                                "clusters.benchmarks.http_load", url,
                                                "--seconds", "5", "--concurrency", "4"],
                   timeout=60)
        res = json.loads(r.stdout)
        print(f"sleep -> {name}, keep-alive, 4 connections, 5 s: {res['rps']:.0f} req/s, "
              f"p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
              f"{res['errors']} errors (no mesh: the baseline)")
    with c.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod("default").items
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        if pod.metadata.labels.get("app") in ("details", "productpage", "sleep"):
            rss = sum(rss_mib(p) for p in _pids_in_pod(pod.metadata.uid))
            print(f"memory of pod {pod.metadata.labels['app']}: {rss:.1f} MiB RSS")


def bench_pod_start(c: LocalCluster, count: int) -> None:
    with c.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="starts")))
        rv = core.list_namespaced_pod("starts").metadata.resource_version
        created: dict[str, float] = {}
        ready: dict[str, float] = {}
        done = threading.Event()

        def watcher() -> None:
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, "starts", resource_version=rv,
                               timeout_seconds=120):
                pod = ev["object"]
                if pod.metadata.name in ready:
                    continue
                if any(cond.type == "Ready" and cond.status == "True"
                       for cond in pod.status.conditions or ()):
                    ready[pod.metadata.name] = time.perf_counter()
                    if len(ready) == count:
                        w.stop()
            done.set()

        t = threading.Thread(target=watcher)
        t.start()
        for i in range(count):
            name = f"p{i}"
            created[name] = time.perf_counter()
            core.create_namespaced_pod("starts", client.V1Pod(
                metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
                    termination_grace_period_seconds=0, containers=[client.V1Container(
                        name="c", image="curlimages/curl", command=["/bin/sleep", "3650d"])])))
        done.wait(150)
        t.join(5)
        latencies = [ready[n] - created[n] for n in ready]
        print(f"pod start, create to Ready, {count} pods created back to back: "
              f"{_percentiles(latencies)} ({len(ready)}/{count} Ready)")


def bench_openapi(rounds: int) -> None:
    """The OpenAPI v3 documents kubectl reads: the first build converts the client's
    models (cached after), a rebuild (after every CRD change) reuses them."""
    from clusters.local.apiserver import openapi
    from clusters.local.apiserver.resources import Registry

    registry = Registry()

    def build_all() -> None:
        docs = {(g, v): openapi.openapi_v3_document(g, v, [
                    openapi.ResourceInfo.of(rt, v) for rt in registry.in_group_version(g, v)])
                for g, versions in registry.group_versions().items() for v in versions}
        hashes = {openapi.group_version_path(*gv): openapi.document_hash(d)
                  for gv, d in docs.items()}
        openapi.openapi_v3_root(hashes, hashes)

    t0 = time.perf_counter()
    build_all()
    first = time.perf_counter() - t0
    again = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        build_all()
        again.append(time.perf_counter() - t0)
    print(f"OpenAPI v3, every built-in group-version and the root: first build "
          f"{first * 1000:.0f} ms, rebuild median {statistics.median(again) * 1000:.1f} ms "
          f"({rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m clusters.benchmarks")
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--start-pods", type=int, default=50)
    parser.add_argument("--only", choices=["api", "openapi", "nodes", "updown"], default=None,
                        help="one group of figures; updown: cluster up and down alone "
                             "(API only, then with 2 nodes), to compare two commits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ambient-bench-") as tmp:
        root = Path(tmp)
        if args.only in (None, "openapi"):
            bench_openapi(args.rounds)
        if args.only in (None, "api"):
            bench_up_down(root, args.rounds)
            with LocalCluster("bench", root=root, run_pods=False) as c:
                bench_pod_creates(c, args.pods, args.threads)
                bench_watch_latency(c, args.watchers, args.writes)
            with LocalCluster("bench-mem", root=root, run_pods=False) as c:
                bench_memory(c, args.objects)
        if args.only == "updown":
            bench_up_down(root, args.rounds)
            bench_nodes_up_down(root, args.rounds)
        if args.only in (None, "nodes"):
            bench_nodes_up_down(root, max(3, args.rounds // 2))
            with LocalCluster("bench-nodes", root=root) as c:
                bench_bookinfo(c)
                bench_pod_start(c, args.start_pods)


if __name__ == "__main__":
    main()
