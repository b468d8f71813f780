"""What the control plane computes from Kubernetes objects: pure functions, plain dicts in."""

from __future__ import annotations

import random
from typing import Any

from ambient_ref.xds.compute import (
    compute_services,
    compute_workloads,
    policy_resources,
    workload_name,
)
from ambient_ref.xds.types import PortMapping, ServicePort

AMBIENT = {"istio.io/dataplane-mode": "ambient"}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}}


def pod(
    name: str,
    ns: str = "default",
    *,
    labels: dict[str, str] | None = None,
    ip: str | None = "10.0.0.1",
    ports: dict[str, int] | None = None,
    owner: tuple[str, str] | None = None,
    host_network: bool = False,
    ready: bool = True,
    phase: str = "Running",
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
    sa: str | None = "bookinfo",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{ns}-{name}",
        "labels": labels or {},
        "annotations": annotations or {},
    }
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "nodeName": "node-1",
        "containers": [
            {
                "name": "app",
                "ports": [{"name": n, "containerPort": p} for n, p in (ports or {}).items()],
            }
        ],
    }
    if sa:
        spec["serviceAccountName"] = sa
    if host_network:
        spec["hostNetwork"] = True
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"metadata": meta, "spec": spec, "status": status}


def service(
    name: str,
    ns: str = "default",
    *,
    selector: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    cluster_ip: str = "10.96.0.10",
    type_: str = "ClusterIP",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type_,
        "selector": selector,
        "ports": ports if ports is not None else [{"name": "http", "port": 9080}],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    return {
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": spec,
    }


def workloads(namespaces, pods, services=()):
    return compute_workloads(namespaces, pods, services)


# -- enrollment ----------------------------------------------------------------------------


def test_namespace_label_enrolls_its_pods_and_others_are_published_as_tcp() -> None:
    result = workloads(
        [namespace("mesh", AMBIENT), namespace("plain")],
        [pod("a", "mesh", ip="10.0.0.1"), pod("b", "plain", ip="10.0.0.2")],
    )
    assert result["uid-mesh-a"].protocol == "HBONE"
    assert result["uid-plain-b"].protocol == "TCP"  # still known: a passthrough destination
    assert result["uid-plain-b"].addresses == ["10.0.0.2"]


def test_pod_label_none_opts_out_of_an_enrolled_namespace() -> None:
    result = workloads(
        [namespace("mesh", AMBIENT)],
        [pod("a", "mesh", labels={"istio.io/dataplane-mode": "none"})],
    )
    assert result["uid-mesh-a"].protocol == "TCP"


def test_pod_label_ambient_enrolls_the_pod_alone() -> None:
    result = workloads(
        [namespace("plain")],
        [pod("a", "plain", labels=AMBIENT, ip="10.0.0.1"), pod("b", "plain", ip="10.0.0.2")],
    )
    assert result["uid-plain-a"].protocol == "HBONE"
    assert result["uid-plain-b"].protocol == "TCP"


def test_host_network_pods_are_never_in_the_mesh() -> None:
    result = workloads(
        [namespace("mesh", AMBIENT)],
        [
            pod("a", "mesh", host_network=True),
            pod("b", "mesh", host_network=True, labels=AMBIENT, ip="10.0.0.2"),
        ],
    )
    for uid in ("uid-mesh-a", "uid-mesh-b"):
        assert result[uid].protocol == "TCP"
        assert result[uid].network_mode == "HOST_NETWORK"


def test_sidecar_pods_are_not_ambient() -> None:
    result = workloads(
        [namespace("mesh", AMBIENT)],
        [pod("a", "mesh", annotations={"sidecar.istio.io/status": "{}"})],
    )
    assert result["uid-mesh-a"].protocol == "TCP"


def test_terminating_finished_and_ipless_pods_are_not_workloads() -> None:
    result = workloads(
        [namespace("mesh", AMBIENT)],
        [
            pod("terminating", "mesh", deleting=True),
            pod("done", "mesh", phase="Succeeded"),
            pod("failed", "mesh", phase="Failed"),
            pod("pending", "mesh", ip=None, phase="Pending"),
            pod("starting", "mesh", ip="10.0.0.9", phase="Pending", ready=False),
        ],
    )
    assert list(result) == ["uid-mesh-starting"]
    assert result["uid-mesh-starting"].healthy is False


def test_identity_and_node_come_from_the_pod() -> None:
    (w,) = workloads([namespace("mesh", AMBIENT)], [pod("a", "mesh")]).values()
    assert (w.node, w.service_account, w.trust_domain) == ("node-1", "bookinfo", "cluster.local")
    assert w.identity == "spiffe://cluster.local/ns/mesh/sa/bookinfo"
    (w,) = workloads([namespace("mesh")], [pod("a", "mesh", sa=None)]).values()
    assert w.service_account == "default"


# -- names and labels for telemetry --------------------------------------------------------


def test_workload_name_strips_replicaset_and_pod_hash() -> None:
    labels = {"pod-template-hash": "5d7b8c9f4"}
    owned = pod(
        "reviews-v1-5d7b8c9f4-x2x9q",
        labels=labels,
        owner=("ReplicaSet", "reviews-v1-5d7b8c9f4"),
    )
    assert workload_name(owned) == "reviews-v1"
    assert workload_name(pod("reviews-v1-5d7b8c9f4-x2x9q", labels=labels)) == "reviews-v1"
    assert workload_name(pod("rs-abc12", owner=("ReplicaSet", "rs"))) == "rs"
    assert workload_name(pod("db-0", owner=("StatefulSet", "db"))) == "db"
    assert workload_name(pod("ztunnel-k8x2z", owner=("DaemonSet", "ztunnel"))) == "ztunnel"
    assert workload_name(pod("backup-28012345-abcde", owner=("Job", "backup-28012345"))) == (
        "backup"
    )
    assert workload_name(pod("migrate-x1", owner=("Job", "migrate"))) == "migrate"
    assert workload_name(pod("sleep")) == "sleep"


def test_telemetry_labels() -> None:
    (w,) = workloads(
        [namespace("default")],
        [
            pod(
                "reviews-v2-77f4c-abcde",
                labels={"app": "reviews", "version": "v2", "pod-template-hash": "77f4c"},
                owner=("ReplicaSet", "reviews-v2-77f4c"),
            )
        ],
    ).values()
    assert (w.app, w.version) == ("reviews", "v2")
    assert (w.canonical_name, w.canonical_revision, w.workload_name) == (
        "reviews",
        "v2",
        "reviews-v2",
    )
    (w,) = workloads(
        [namespace("default")],
        [
            pod(
                "x",
                labels={
                    "app": "a",
                    "service.istio.io/canonical-name": "canon",
                    "service.istio.io/canonical-revision": "r7",
                },
            )
        ],
    ).values()
    assert (w.canonical_name, w.canonical_revision) == ("canon", "r7")
    (w,) = workloads([namespace("default")], [pod("bare")]).values()
    assert (w.app, w.canonical_name, w.canonical_revision) == ("", "bare", "latest")


# -- services ------------------------------------------------------------------------------


def test_services_map_lists_each_selecting_service_with_resolved_ports() -> None:
    pods = [pod("reviews-1", labels={"app": "reviews"}, ports={"http": 9080, "admin": 15000})]
    services = [
        service(
            "reviews",
            selector={"app": "reviews"},
            ports=[
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 81, "targetPort": 15000},
                {"name": "plain", "port": 82},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "missing", "port": 83, "targetPort": "nope"},
            ],
        ),
        service("all", selector={"app": "reviews"}, ports=[{"port": 8080, "targetPort": 9080}]),
        service("other", selector={"app": "ratings"}),
        service("manual", selector=None),
        service("elsewhere", "other-ns", selector={"app": "reviews"}),
    ]
    (w,) = workloads([namespace("default")], pods, services).values()
    assert w.services == {
        "default/all.default.svc.cluster.local": [PortMapping(8080, 9080)],
        "default/reviews.default.svc.cluster.local": [
            PortMapping(80, 9080),
            PortMapping(81, 15000),
            PortMapping(82, 82),
        ],
    }
    assert list(w.services) == sorted(w.services)


def test_named_target_port_on_the_service_when_pods_agree() -> None:
    ports = [{"name": "http", "port": 80, "targetPort": "http"}]
    agree = [
        pod("a", labels={"app": "x"}, ports={"http": 9080}, ip="10.0.0.1"),
        pod("b", labels={"app": "x"}, ports={"http": 9080}, ip="10.0.0.2"),
    ]
    svc = compute_services([service("x", selector={"app": "x"}, ports=ports)], agree)
    assert svc["default/x.default.svc.cluster.local"].ports == [ServicePort("http", 80, 9080)]
    disagree = [*agree, pod("c", labels={"app": "x"}, ports={"http": 8080}, ip="10.0.0.3")]
    svc = compute_services([service("x", selector={"app": "x"}, ports=ports)], disagree)
    assert svc["default/x.default.svc.cluster.local"].ports == [ServicePort("http", 80, 0)]


def test_service_resource() -> None:
    services = [
        service(
            "productpage",
            "bookinfo",
            selector={"app": "productpage"},
            annotations={
                "alpha.istio.io/kubernetes-serviceaccounts": "pp, extra",
                "alpha.istio.io/canonical-serviceaccounts": "cluster.local/ns/x/sa/y",
            },
        ),
        service("headless", "bookinfo", cluster_ip="None"),
        service("external", "bookinfo", type_="ExternalName", cluster_ip=""),
    ]
    services[0]["spec"]["externalIPs"] = ["192.0.2.1"]
    result = compute_services(services, [])
    assert list(result) == [
        "bookinfo/headless.bookinfo.svc.cluster.local",
        "bookinfo/productpage.bookinfo.svc.cluster.local",
    ]
    pp = result["bookinfo/productpage.bookinfo.svc.cluster.local"]
    assert (pp.name, pp.namespace, pp.hostname) == (
        "productpage",
        "bookinfo",
        "productpage.bookinfo.svc.cluster.local",
    )
    assert pp.vips == ["10.96.0.10", "192.0.2.1"]
    assert pp.ports == [ServicePort("http", 9080, 9080)]
    assert pp.subject_alt_names == [
        "spiffe://cluster.local/ns/bookinfo/sa/extra",
        "spiffe://cluster.local/ns/bookinfo/sa/pp",
        "spiffe://cluster.local/ns/x/sa/y",
    ]
    assert pp.waypoint is None
    assert result["bookinfo/headless.bookinfo.svc.cluster.local"].vips == []


def test_output_does_not_depend_on_input_order() -> None:
    namespaces = [namespace("a", AMBIENT), namespace("b")]
    pods = [
        pod(f"p{i}", "ab"[i % 2], labels={"app": f"s{i % 3}"}, ip=f"10.0.0.{i + 1}")
        for i in range(12)
    ]
    services = [service(f"s{i}", ns, selector={"app": f"s{i}"}) for i in range(3) for ns in "ab"]
    first_w = compute_workloads(namespaces, pods, services)
    first_s = compute_services(services, pods)
    for seed in range(3):
        rng = random.Random(seed)
        shuffled = [rng.sample(x, len(x)) for x in (namespaces, pods, services)]
        again_w = compute_workloads(*shuffled)
        again_s = compute_services(shuffled[2], shuffled[1])
        assert [w.to_dict() for w in again_w.values()] == [w.to_dict() for w in first_w.values()]
        assert list(again_w) == list(first_w)
        assert [s.to_dict() for s in again_s.values()] == [s.to_dict() for s in first_s.values()]


# -- policies ------------------------------------------------------------------------------


def test_policy_resources_keeps_statuses_and_sends_only_accepted() -> None:
    def policy(name: str, ns: str = "bookinfo") -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": ns}, "spec": {"action": name.upper()}}

    ok = [{"type": "Accepted", "status": "True"}]

    def convert(p: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        meta = p["metadata"]
        if p["spec"]["action"] == "AUDIT":
            return None, [{"type": "Accepted", "status": "False", "reason": "UnsupportedValue"}]
        if p["spec"]["action"] == "BROKEN":
            raise RuntimeError("boom")
        return {"name": meta["name"], "namespace": meta["namespace"], "action": "ALLOW"}, ok

    authz, statuses = policy_resources(
        [policy("deny"), policy("audit"), policy("allow", "a"), policy("broken")], convert
    )
    assert list(authz) == ["a/allow", "bookinfo/deny"]
    assert authz["a/allow"] == {"name": "allow", "namespace": "a", "action": "ALLOW"}
    assert list(statuses) == ["a/allow", "bookinfo/audit", "bookinfo/broken", "bookinfo/deny"]
    assert statuses["bookinfo/audit"][0]["reason"] == "UnsupportedValue"
    assert statuses["bookinfo/broken"][0]["status"] == "False"
    assert "boom" in statuses["bookinfo/broken"][0]["message"]
