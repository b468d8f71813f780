"""The Kubernetes objects a perf scenario needs: its servers and the load generator pod.

Plain manifests, applied with kubectl like any user's, so the runner works on any
cluster whose images exist.  The target server and the load generator are pinned
to different nodes when there are two: a request then crosses both nodes'
ztunnels, the path Istio's published ambient figures measure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOKINFO = ROOT / "conformance" / "manifests" / "bookinfo.yaml"

LOADGEN_IMAGE = "ambient-harness/locust:local"
LOADGEN_PORT = 8089
LOADGEN_NAME = "loadgen"
BENCH_SERVER_IMAGE = "ambient-harness/bench-server:local"
SERVERS = ("bench", "echo")
"""``bench``: the cluster's bench-server; ``echo``: the load generator image's echo
server, which can delay responses (``?delay_ms=``) for fault injection."""


@dataclass(frozen=True)
class ScenarioTarget:
    """Where a scenario sends load, what a waypoint is bound to, what must be ready."""

    scenario: str
    namespace: str
    host: str
    path: str
    waypoint_services: tuple[str, ...]
    deployments: tuple[str, ...]
    manifests: list[dict[str, Any]] = field(default_factory=list, compare=False)


def _pin(spec: dict[str, Any], node: str | None) -> None:
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}


def deployment(name: str, namespace: str, image: str, port: int, *, node: str | None,
               args: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image,
                                 "ports": [{"containerPort": port, "name": "http"}]}
    if args:
        container["args"] = args
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "containers": [container]}
    _pin(spec, node)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def service(name: str, namespace: str, port: int, target_port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": port, "targetPort": target_port}]}}


def namespace_manifest(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"ambient-harness/perf": "true"}}}


def loadgen_manifests(namespace: str, node: str | None) -> list[dict[str, Any]]:
    """The load generator: one pod, its agent listening on ``LOADGEN_PORT``."""
    return [deployment(LOADGEN_NAME, namespace, LOADGEN_IMAGE, LOADGEN_PORT, node=node,
                       args=["agent", "--port", str(LOADGEN_PORT)])]


def direct_target(namespace: str, server_node: str | None, server: str = "bench") -> \
        ScenarioTarget:
    """One service answering 1 KB per request, the Istio benchmarks' payload."""
    if server not in SERVERS:
        raise ValueError(f"server must be one of {SERVERS}, not {server!r}")
    if server == "bench":
        dep = deployment("server", namespace, BENCH_SERVER_IMAGE, 8080, node=server_node)
    else:
        dep = deployment("server", namespace, LOADGEN_IMAGE, 8080, node=server_node,
                         args=["echo", "--port", "8080", "--size", "1024"])
    return ScenarioTarget("direct", namespace, "http://server", "/", ("server",), ("server",),
                          [dep, service("server", namespace, 80, 8080)])


def bookinfo_target(namespace: str) -> ScenarioTarget:
    """The project's Bookinfo, as the conformance suite deploys it, in its own namespace."""
    docs = [d for d in yaml.safe_load_all(BOOKINFO.read_text()) if isinstance(d, dict)]
    manifests = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc.setdefault("metadata", {})["namespace"] = namespace
        manifests.append(doc)
    deployments = tuple(d["metadata"]["name"] for d in manifests if d.get("kind") == "Deployment")
    return ScenarioTarget("bookinfo", namespace, "http://productpage:9080", "/",
                          ("productpage", "details", "reviews"), deployments, manifests)


def target_for(scenario: str, namespace: str, nodes: list[str],
               server: str = "bench") -> ScenarioTarget:
    if scenario == "direct":
        return direct_target(namespace, nodes[0] if nodes else None, server)
    if scenario == "bookinfo":
        return bookinfo_target(namespace)
    raise ValueError(f"unknown scenario {scenario!r}; known: direct, bookinfo")


def loadgen_node(nodes: list[str]) -> str | None:
    """The last node: the direct server is on the first, so traffic crosses nodes."""
    return nodes[-1] if nodes else None
