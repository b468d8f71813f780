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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m clusters.benchmarks")
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ambient-bench-") as tmp:
        root = Path(tmp)
        bench_up_down(root, args.rounds)
        with LocalCluster("bench", root=root, run_pods=False) as c:
            bench_pod_creates(c, args.pods, args.threads)
            bench_watch_latency(c, args.watchers, args.writes)
        with LocalCluster("bench-mem", root=root, run_pods=False) as c:
            bench_memory(c, args.objects)


if __name__ == "__main__":
    main()
