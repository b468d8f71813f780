"""The many pods and services the control plane must account for, without running them.

A benchmark of the control plane needs its inputs to grow, not the machine's process
count: a real pod on the local cluster is a process tree (a Python one for most images),
and 1,000 of them do not fit two cores.  So the scale comes from *fake* pods: Pods bound
(``spec.nodeName``) to node names that have no Node object and no node agent, whose status
this module writes through the ``pods/status`` subresource as a kubelet would (Running, an
address in the cluster's pod range, Ready).  To every reader of the API they are running,
ready workloads; the control plane publishes them to every ztunnel, the endpoints
controller lists them behind their Services.  Nothing schedules or runs them, and with no
Node object no DaemonSet places a ztunnel beside them; deleting one is immediate, as for
any pod on a node without an agent.

Their addresses come from 198.18.128.0/17, inside the local cluster's pod range
(198.18.0.0/16) but far above the /24s its real nodes use (198.18.<node-1>.0/24), so no
fake address is ever a real pod's; nothing sends them traffic.

The builders are pure (tested without a cluster); ``Population.grow_to`` creates objects.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FAKE_LABEL = "perf.ambient-harness/fake"
AMBIENT_LABELS = {"istio.io/dataplane-mode": "ambient"}
FAKE_POD_NET = ipaddress.ip_network("198.18.128.0/17")
FAKE_NODE_PREFIX = "scale-fake-node"
FAKE_IMAGE = "perf.ambient-harness/not-run:fake"  # never pulled: no agent sees these pods


@dataclass(frozen=True)
class Layout:
    """How fake pods are grouped: into Services of ``pods_per_service`` pods and
    namespaces of ``pods_per_namespace`` pods, spread over ``fake_nodes`` node names."""

    pods_per_service: int = 10
    pods_per_namespace: int = 100
    fake_nodes: int = 10
    namespace_prefix: str = "scale"

    def __post_init__(self) -> None:
        if self.pods_per_service < 1 or self.pods_per_namespace < 1 or self.fake_nodes < 1:
            raise ValueError("pods per service, pods per namespace and fake nodes must be >= 1")
        if self.pods_per_namespace % self.pods_per_service:
            raise ValueError(f"pods per namespace ({self.pods_per_namespace}) must be a "
                             f"multiple of pods per service ({self.pods_per_service})")

    def namespace_of(self, pod_index: int) -> str:
        return f"{self.namespace_prefix}-{pod_index // self.pods_per_namespace:03d}"

    def service_of(self, pod_index: int) -> str:
        return f"svc-{pod_index // self.pods_per_service:04d}"

    def counts(self, pods: int) -> dict[str, int]:
        """How many pods, services and namespaces a population of ``pods`` has."""
        return {"pods": pods, "services": -(-pods // self.pods_per_service),
                "namespaces": -(-pods // self.pods_per_namespace)}


def fake_ip(index: int) -> str:
    """The address of fake pod ``index``: .1 to .250 of consecutive /24s of 198.18.128.0/17,
    so no address is a network, broadcast or gateway-looking one."""
    third, fourth = divmod(index, 250)
    if third >= FAKE_POD_NET.num_addresses // 256:
        raise ValueError(f"fake pod {index} does not fit {FAKE_POD_NET}")
    return str(FAKE_POD_NET.network_address + third * 256 + fourth + 1)


def namespace_manifest(name: str, enroll_labels: dict[str, str] | None = None
                       ) -> dict[str, Any]:
    """An enrolled namespace (the fake workloads are mesh workloads, HBONE), labelled
    with the implementation's enrollment labels (Istio's ambient label by default)."""
    labels = {**(AMBIENT_LABELS if enroll_labels is None else enroll_labels), FAKE_LABEL: "true"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service_manifest(layout: Layout, pod_index: int) -> dict[str, Any]:
    """The Service in front of the group of fake pods ``pod_index`` belongs to.

    Its targetPort is the container port's *name*, so the control plane resolves it per pod
    as it must for real applications.
    """
    name = layout.service_of(pod_index)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": layout.namespace_of(pod_index),
                         "labels": {FAKE_LABEL: "true"}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pod_manifest(layout: Layout, index: int) -> dict[str, Any]:
    """Fake pod ``index``, already bound to a node name no agent serves."""
    app = layout.service_of(index)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"fake-{index:05d}", "namespace": layout.namespace_of(index),
                     "labels": {"app": app, "version": "v1", FAKE_LABEL: "true"}},
        "spec": {
            "nodeName": f"{FAKE_NODE_PREFIX}-{index % layout.fake_nodes}",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": FAKE_IMAGE,
                            "ports": [{"name": "http", "containerPort": 8080}]}],
        },
    }


def running_status(layout: Layout, index: int, now: str | None = None) -> dict[str, Any]:
    """The status a kubelet would write for a started, ready pod (the body of a merge
    patch to ``pods/<name>/status``)."""
    now = now or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ip = fake_ip(index)
    conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                  for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    return {"status": {
        "phase": "Running",
        "podIP": ip, "podIPs": [{"ip": ip}],
        "hostIP": f"198.18.254.{index % layout.fake_nodes + 1}",
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": [{"name": "app", "image": FAKE_IMAGE, "imageID": "",
                               "ready": True, "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": now}}}],
    }}


class Population:
    """The fake pods, Services and namespaces created so far in one cluster.

    ``api_client`` makes an official-client ``ApiClient`` (one per worker thread); writes
    go ``threads`` at a time, which is about as fast as the local API takes them.
    """

    def __init__(self, api_client: Callable[[], Any], layout: Layout | None = None,
                 threads: int = 4, enroll_labels: dict[str, str] | None = None) -> None:
        self.api_client = api_client
        self.enroll_labels = enroll_labels
        self.layout = layout or Layout()
        self.threads = max(threads, 1)
        self.pods = 0
        self._namespaces: set[str] = set()
        self._services: set[tuple[str, str]] = set()

    def grow_to(self, pods: int) -> dict[str, Any]:
        """Create fake pods ``self.pods .. pods-1`` (with their namespaces and Services),
        each then marked running; returns counts and seconds taken."""
        from kubernetes import client

        started = time.monotonic()
        new = range(self.pods, pods)
        namespaces = sorted({self.layout.namespace_of(i) for i in new} - self._namespaces)
        services = sorted({(self.layout.namespace_of(i), self.layout.service_of(i))
                           for i in new} - self._services)
        first_of = {(self.layout.namespace_of(i), self.layout.service_of(i)): i
                    for i in reversed(new)}
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for ns in namespaces:
                core.create_namespace(namespace_manifest(ns, self.enroll_labels))
                self._namespaces.add(ns)
            for key in services:
                manifest = service_manifest(self.layout, first_of[key])
                core.create_namespaced_service(key[0], manifest)
                self._services.add(key)

        def create(chunk: list[int]) -> None:
            with self.api_client() as api:
                core = client.CoreV1Api(api)
                for i in chunk:
                    manifest = pod_manifest(self.layout, i)
                    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
                    core.create_namespaced_pod(ns, manifest)
                    core.patch_namespaced_pod_status(name, ns, running_status(self.layout, i))

        chunks = [list(new)[k::self.threads] for k in range(self.threads)]
        with ThreadPoolExecutor(self.threads) as pool:
            for future in [pool.submit(create, c) for c in chunks if c]:
                future.result()
        self.pods = max(self.pods, pods)
        return {**self.layout.counts(self.pods), "created_pods": len(new),
                "created_services": len(services), "created_namespaces": len(namespaces),
                "seconds": round(time.monotonic() - started, 3)}
