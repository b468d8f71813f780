"""Where each mesh component runs: workloads named by kind and name, resolved to pods.

The adapter interface says how to *act* on a mesh, not where its processes are,
so the runner names components the way Istio lays them out (istiod Deployment and
ztunnel DaemonSet in ``istio-system``, a waypoint Deployment per Gateway) and lets
the caller override them (``--component ztunnel=kube-system/daemonset/my-node-proxy``)
for an implementation laid out differently.  A component that is not found is
reported unavailable, not silently zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("deployment", "daemonset", "statefulset")


@dataclass(frozen=True)
class ComponentRef:
    component: str
    namespace: str
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"component {self.component}: kind must be one of {KINDS}, "
                             f"not {self.kind!r}")

    def text(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True)
class PodRef:
    """One running pod of a component: what a sampler needs to find its processes."""

    namespace: str
    name: str
    uid: str
    node: str
    host_network: bool = False

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodRef:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        return cls(meta["namespace"], meta["name"], meta["uid"], spec.get("nodeName") or "",
                   bool(spec.get("hostNetwork")))


DEFAULT_COMPONENTS: tuple[ComponentRef, ...] = (
    ComponentRef("ztunnel", "istio-system", "daemonset", "ztunnel"),
    ComponentRef("control_plane", "istio-system", "deployment", "istiod"),
)
MESH_COMPONENT_NAMES = ("ztunnel", "waypoint", "control_plane")


def parse_component(text: str) -> ComponentRef:
    """``name=namespace/kind/workload`` (as given on the command line)."""
    name, sep, where = text.partition("=")
    parts = where.split("/")
    if not sep or not name or len(parts) != 3 or not all(parts):
        raise ValueError(f"component {text!r}: expected name=namespace/kind/workload, e.g. "
                         "ztunnel=istio-system/daemonset/ztunnel")
    return ComponentRef(name, parts[0], parts[1].lower(), parts[2])


def with_overrides(overrides: Iterable[ComponentRef]) -> tuple[ComponentRef, ...]:
    by_name = {c.component: c for c in DEFAULT_COMPONENTS}
    by_name.update({c.component: c for c in overrides})
    return tuple(by_name.values())


def resolve(cluster: Any, refs: Iterable[ComponentRef]) -> tuple[dict[str, list[PodRef]],
                                                                  dict[str, str]]:
    """Pods per component, and why a component has none (blocking: call from a thread)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pods: dict[str, list[PodRef]] = {}
    missing: dict[str, str] = {}
    with cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        readers = {"deployment": apps.read_namespaced_deployment,
                   "daemonset": apps.read_namespaced_daemon_set,
                   "statefulset": apps.read_namespaced_stateful_set}
        for ref in refs:
            pods.setdefault(ref.component, [])
            try:
                workload = readers[ref.kind](ref.name, ref.namespace)
            except ApiException as exc:
                missing[ref.component] = f"{ref.text()} not found ({exc.status})"
                continue
            labels = (workload.spec.selector.match_labels or {}) if workload.spec.selector \
                else {}
            selector = ",".join(f"{k}={v}" for k, v in labels.items())
            found = core.list_namespaced_pod(ref.namespace, label_selector=selector).items
            running = [api.sanitize_for_serialization(p) for p in found
                       if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
            pods[ref.component].extend(PodRef.from_pod(p) for p in running)
            if not running:
                missing[ref.component] = f"{ref.text()} has no running pod"
    return pods, missing
