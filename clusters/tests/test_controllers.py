"""The cluster's own controllers: scheduling constraints and service endpoints."""

from __future__ import annotations

import pytest
from kubernetes import client

from .waiting import until

pytestmark = pytest.mark.slow


def _deploy(apps, ns, name, replicas, affinity=None, labels=None):
    labels = labels or {"app": name}
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "affinity": affinity or {},
                     "containers": [{"name": "c", "image": "curlimages/curl",
                                     "ports": [{"containerPort": 9080, "name": "http"}]}]}}}})


def _node_of(core, ns, app):
    pods = until(core.list_namespaced_pod, lambda items: items and all(
        p.spec.node_name for p in items), namespace=ns, label_selector=f"app={app}")
    return sorted(p.spec.node_name for p in pods)


def _anti(app, kind="required"):
    term = {"labelSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": [app]}]},
        "topologyKey": "kubernetes.io/hostname"}
    if kind == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": term}]}}


def test_required_anti_affinity_spreads_and_then_refuses(apps, core, namespace):
    _deploy(apps, namespace, "spread", 3, _anti("spread"))
    pods = until(core.list_namespaced_pod, lambda items: len(items) == 3 and sum(
        1 for p in items if p.spec.node_name) == 2 and any(
        c.reason == "Unschedulable" for p in items for c in (p.status.conditions or ())),
        namespace=namespace)
    assert sorted(p.spec.node_name for p in pods if p.spec.node_name) == ["node-1", "node-2"]
    waiting = next(p for p in pods if not p.spec.node_name)
    cond = next(c for c in waiting.status.conditions if c.type == "PodScheduled")
    assert cond.status == "False"
    assert "0/2 nodes are available" in cond.message and "anti-affinity" in cond.message


def test_preferred_anti_affinity_moves_away_like_notsleep(apps, core, namespace):
    _deploy(apps, namespace, "productpage", 1)
    [pp_node] = _node_of(core, namespace, "productpage")
    _deploy(apps, namespace, "notsleep", 1, _anti("productpage", "preferred"))
    [ns_node] = _node_of(core, namespace, "notsleep")
    assert ns_node != pp_node


def test_required_pod_affinity_follows_the_target(apps, core, namespace):
    _deploy(apps, namespace, "db", 1)
    [db_node] = _node_of(core, namespace, "db")
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    _deploy(apps, namespace, "cache", 2, affinity)
    assert _node_of(core, namespace, "cache") == [db_node, db_node]


def test_service_endpoints_follow_pod_readiness(core, namespace):
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[
            client.V1ServicePort(name="http", port=80, target_port="http")])))
    for i, ready in ((1, "True"), (2, "False")):
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
            "spec": {"schedulerName": "manual", "containers": [{
                "name": "c", "image": "curlimages/curl",
                "ports": [{"containerPort": 9080, "name": "http"}]}]}})
        # what a node agent reports for a running pod
        core.patch_namespaced_pod_status(f"web-{i}", namespace, {"status": {
            "phase": "Running", "podIP": f"198.18.0.{10 + i}",
            "conditions": [{"type": "Ready", "status": ready}]}})

    def subsets_are(ready_ips, not_ready_ips):
        def check(items):
            eps = [e for e in items if e.metadata.name == "web"]
            if not eps or not eps[0].subsets:
                return False
            s = eps[0].subsets[0]
            return (sorted(a.ip for a in s.addresses or ()) == ready_ips and
                    sorted(a.ip for a in s.not_ready_addresses or ()) == not_ready_ips)
        return check

    until(core.list_namespaced_endpoints, subsets_are(["198.18.0.11"], ["198.18.0.12"]),
          namespace=namespace)
    ep = core.read_namespaced_endpoints("web", namespace)
    assert [(p.name, p.port) for p in ep.subsets[0].ports] == [("http", 9080)]
    # readiness lost: the pod leaves the addresses
    core.patch_namespaced_pod_status("web-1", namespace, {"status": {
        "conditions": [{"type": "Ready", "status": "False"}]}})
    until(core.list_namespaced_endpoints,
          subsets_are([], ["198.18.0.11", "198.18.0.12"]), namespace=namespace)
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=web").items
    assert len(slices) == 1
    assert sorted((e.addresses[0], e.conditions.ready) for e in slices[0].endpoints) == [
        ("198.18.0.11", False), ("198.18.0.12", False)]
    # the service goes: its Endpoints and slice go too
    core.delete_namespaced_service("web", namespace)
    until(core.list_namespaced_endpoints, lambda items: not items, namespace=namespace)
