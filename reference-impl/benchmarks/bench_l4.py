"""Overhead of the reference ztunnel (L4) and waypoint (L4+L7) on the local cluster.

Run: ``python reference-impl/benchmarks/bench_l4.py``.

Same run, same clients, keep-alive HTTP with 1 KB responses: direct (no mesh), then
through the ztunnels, then through a waypoint, same-node and cross-node; latency at
a fixed rate and the maximum rate; the proxies' CPU seconds per 1,000 requests and
memory (the waypoint figures count every ``ambient_ref.waypoint`` process, the
idle ingress gateway included).  Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from clusters.local.provider import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "reference-impl" / "ambient_ref" / "manifests"


def workloads() -> list[dict]:
    def pod(name: str, node: str, image: str, command: list[str] | None = None) -> dict:
        container: dict = {"name": name, "image": image}
        if command:
            container["command"] = command
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                         "terminationGracePeriodSeconds": 0, "containers": [container]}}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
        pod("server", "node-1", "ambient-harness/bench-server:local"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server",
                                                               "namespace": "bench"},
         "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        pod("client-same", "node-1", "curlimages/curl", ["/bin/sleep", "3650d"]),
        pod("client-cross", "node-2", "curlimages/curl", ["/bin/sleep", "3650d"]),
    ]


def load(c: LocalCluster, client: str, seconds: float, rate: float | None) -> dict:
    argv = [sys.executable, "-m", "clusters.benchmarks.http_load", "http://server/",
            "--seconds", str(seconds), "--concurrency", "4"]
    if rate:
        argv += ["--rate", str(rate)]
    r = c.exec("bench", client, argv, timeout=seconds + 60)
    if r.exit_code != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def ztunnel_usage(c: LocalCluster, module: str = "ambient_ref.ztunnel") -> tuple[float, float]:
    """CPU seconds and RSS (MiB) of every process running ``module``, summed."""
    cpu = rss = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if module.encode() not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return cpu, rss


def measure(c: LocalCluster, label: str, seconds: float, rate: float) -> dict:
    out = {}
    for client in ("client-same", "client-cross"):
        fixed = load(c, client, seconds, rate)
        cpu0, _ = ztunnel_usage(c)
        wcpu0, _ = ztunnel_usage(c, "ambient_ref.waypoint")
        peak = load(c, client, seconds, None)
        cpu1, rss = ztunnel_usage(c)
        wcpu1, wrss = ztunnel_usage(c, "ambient_ref.waypoint")
        out[client] = {"fixed": fixed, "max": peak,
                       "ztunnel_cpu_per_1k": (cpu1 - cpu0) / peak["requests"] * 1000,
                       "ztunnel_rss_mib": rss,
                       "waypoint_cpu_per_1k": (wcpu1 - wcpu0) / peak["requests"] * 1000,
                       "waypoint_rss_mib": wrss}
        where = "same node" if client == "client-same" else "cross node"
        extra = (f"; waypoint CPU {out[client]['waypoint_cpu_per_1k']:.3f} s/1k req, "
                 f"RSS {wrss:.0f} MiB" if label == "waypoint" else "")
        print(f"{label:>8} {where:>10}: at {rate:g}/s p50 {fixed['p50_ms']:.2f} ms "
              f"p99 {fixed['p99_ms']:.2f} ms ({fixed['errors']} errors); max "
              f"{peak['rps']:.0f} req/s p50 {peak['p50_ms']:.2f} ms; ztunnel CPU "
              f"{out[client]['ztunnel_cpu_per_1k']:.3f} s/1k req, RSS {rss:.0f} MiB{extra}",
              flush=True)
    return out


def wait_annotated(c: LocalCluster) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # capture is announced by the annotation
        pods = yaml.safe_load(c.kubectl("get", "pods", "-n", "bench", "-l", "app", "-o",
                                        "yaml").stdout)["items"]
        if all((p["metadata"].get("annotations") or {}).get(
                "ambient.istio.io/redirection") == "enabled" for p in pods
               if p["metadata"]["labels"].get("app", "").startswith(("server", "client"))):
            return


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_l4")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-l4-") as tmp, \
            LocalCluster(f"bench-l4-{os.getpid()}", root=tmp) as c:
        c.apply(MANIFESTS / "crds.yaml")
        c.apply(MANIFESTS / "install.yaml")
        c.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(workloads()))
        for ns in ("istio-system", "bench"):
            c.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", ns,
                      "--timeout=60s")
        direct = measure(c, "direct", args.seconds, args.rate)
        c.kubectl("label", "namespace", "bench", "istio.io/dataplane-mode=ambient")
        wait_annotated(c)
        mesh = measure(c, "ztunnel", args.seconds, args.rate)
        c.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "bench"},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": [
                {"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}))
        c.kubectl("wait", "--for=condition=Programmed", "gateway/waypoint", "-n", "bench",
                  "--timeout=60s")
        c.kubectl("label", "service", "server", "-n", "bench",
                  "istio.io/use-waypoint=waypoint")
        probe = load(c, "client-same", 1, None)  # the binding reaches the ztunnels
        del probe
        waypoint = measure(c, "waypoint", args.seconds, args.rate)
        for label, phase in (("ztunnel", mesh), ("waypoint", waypoint)):
            print(f"\nratios ({label} / direct):")
            for client in ("client-same", "client-cross"):
                d, m = direct[client], phase[client]
                print(f"  {client}: p50 {m['fixed']['p50_ms'] - d['fixed']['p50_ms']:+.2f} ms, "
                      f"p99 {m['fixed']['p99_ms'] - d['fixed']['p99_ms']:+.2f} ms, "
                      f"max throughput {m['max']['rps'] / d['max']['rps']:.0%} of direct")


if __name__ == "__main__":
    main()
