"""Local cluster nodes: pods run as processes in network namespaces, with service
VIPs, cluster DNS and Bookinfo, observed as a user would (curl from a pod)."""

from __future__ import annotations

import collections
import json
import re
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from clusters.local.provider import LocalCluster

from .waiting import until

pytestmark = pytest.mark.slow

BOOKINFO = Path(__file__).resolve().parents[2] / "conformance" / "manifests" / "bookinfo.yaml"
CLIENTS = BOOKINFO.parent / "sleep.yaml"


@pytest.fixture(scope="module")
def bookinfo(nodes_cluster: LocalCluster) -> str:
    """Bookinfo and the sleep/notsleep clients, all Ready, in their own namespace."""
    ns = f"bookinfo-{uuid.uuid4().hex[:6]}"
    nodes_cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    nodes_cluster.apply(BOOKINFO, namespace=ns)
    nodes_cluster.apply(CLIENTS, namespace=ns)
    nodes_cluster.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", ns,
                          "--timeout=60s")
    yield ns
    nodes_cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s")


def curl(cluster: LocalCluster, ns: str, url: str, *extra: str, client_app: str = "sleep"):
    return cluster.exec(ns, f"deploy/{client_app}", ["curl", "-sS", "-m", "10", *extra, url])


def _pods(cluster: LocalCluster, ns: str, selector: str) -> list[dict]:
    with cluster.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
        return [api.sanitize_for_serialization(p) for p in pods]


def test_bookinfo_and_clients_are_ready_and_notsleep_avoids_productpage(nodes_cluster,
                                                                         bookinfo):
    pods = _pods(nodes_cluster, bookinfo, "")
    assert len(pods) == 8
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert all(re.fullmatch(r"198\.18\.\d+\.\d+", p["status"]["podIP"]) for p in pods)
    [pp] = _pods(nodes_cluster, bookinfo, "app=productpage")
    [notsleep] = _pods(nodes_cluster, bookinfo, "app=notsleep")
    assert notsleep["spec"]["nodeName"] != pp["spec"]["nodeName"]


def test_productpage_from_sleep(nodes_cluster, bookinfo):
    r = curl(nodes_cluster, bookinfo, "http://productpage:9080/productpage")
    assert r.exit_code == 0, r.stderr
    assert "<title>Simple Bookstore App</title>" in r.stdout


def test_all_three_reviews_versions_answer(nodes_cluster, bookinfo):
    script = ("for i in $(seq 60); do curl -sS -m 10 http://productpage:9080/productpage "
              "| grep -o 'reviews-v[0-9]' | head -n 1; done")
    r = nodes_cluster.exec(bookinfo, "deploy/sleep", ["sh", "-c", script], timeout=120)
    assert r.exit_code == 0, r.stderr
    counts = collections.Counter(r.stdout.split())
    assert sum(counts.values()) == 60, counts
    assert set(counts) == {"reviews-v1", "reviews-v2", "reviews-v3"}, counts


def test_reviews_api_through_productpage(nodes_cluster, bookinfo):
    r = curl(nodes_cluster, bookinfo, "http://productpage:9080/api/v1/products/0/reviews")
    assert r.exit_code == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["id"] == "0" and len(body["reviews"]) == 2
    assert body["podname"].startswith("reviews-v")


@pytest.mark.parametrize("name", ["details", "details.{ns}", "details.{ns}.svc.cluster.local"])
def test_dns_names_resolve_in_all_three_forms(nodes_cluster, bookinfo, name):
    r = curl(nodes_cluster, bookinfo, f"http://{name.format(ns=bookinfo)}:9080/details/0")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["id"] == 0


def test_pod_to_pod_across_nodes_by_ip_and_vip(nodes_cluster, bookinfo):
    [sleep] = _pods(nodes_cluster, bookinfo, "app=sleep")
    others = [p for p in _pods(nodes_cluster, bookinfo, "app in (details,ratings,reviews)")
              if p["spec"]["nodeName"] != sleep["spec"]["nodeName"]]
    assert others, "Bookinfo should have pods on the other node"
    target = others[0]
    app = target["metadata"]["labels"]["app"]
    r = curl(nodes_cluster, bookinfo, f"http://{target['status']['podIP']}:9080/health")
    assert r.exit_code == 0, r.stderr
    with nodes_cluster.api_client() as api:
        vip = client.CoreV1Api(api).read_namespaced_service(app, bookinfo).spec.cluster_ip
    assert vip.startswith("198.19.")
    r = curl(nodes_cluster, bookinfo, f"http://{vip}:9080/health")
    assert r.exit_code == 0, r.stderr


def test_service_without_ready_endpoints_refuses_at_once(nodes_cluster, bookinfo):
    nodes_cluster.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"},
                          "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}}],
                        namespace=bookinfo)
    r = curl(nodes_cluster, bookinfo, "http://empty/")
    assert r.exit_code == 7, (r.exit_code, r.stderr)  # connection refused, no timeout


def test_deleted_pod_is_replaced_with_a_new_address(nodes_cluster, bookinfo):
    [old] = _pods(nodes_cluster, bookinfo, "app=ratings")
    nodes_cluster.kubectl("delete", "pod", "-n", bookinfo, old["metadata"]["name"])
    with nodes_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        pods = until(core.list_namespaced_pod, lambda items: len(items) == 1 and all(
            p.metadata.uid != old["metadata"]["uid"] and p.status.pod_ip and any(
                c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
            for p in items), timeout=30, namespace=bookinfo, label_selector="app=ratings")
    assert pods[0].status.pod_ip != old["status"]["podIP"]
    assert curl(nodes_cluster, bookinfo, "http://ratings:9080/ratings/0").exit_code == 0


def test_readiness_probe_failure_removes_pod_from_endpoints(nodes_cluster, bookinfo):
    """The exec probe runs inside the container: removing the file there (by exec)
    makes it fail."""
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed", "labels": {"app": "probed"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "c", "image": "curlimages/curl",
            "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3650d"],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]},
                               "periodSeconds": 1, "failureThreshold": 1}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probed"},
         "spec": {"selector": {"app": "probed"}, "ports": [{"port": 80}]}}],
        namespace=bookinfo)
    with nodes_cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def addresses(kind):
            def check(items):
                eps = [e for e in items if e.metadata.name == "probed"]
                subsets = (eps[0].subsets or []) if eps else []
                return bool(subsets) and bool(getattr(subsets[0], kind))
            return check

        until(core.list_namespaced_endpoints, addresses("addresses"), timeout=30,
              namespace=bookinfo)
        assert nodes_cluster.exec(bookinfo, "probed", ["rm", "/tmp/ready"]).exit_code == 0
        until(core.list_namespaced_endpoints, addresses("not_ready_addresses"), timeout=30,
              namespace=bookinfo)
        ep = core.read_namespaced_endpoints("probed", bookinfo)
        assert not ep.subsets[0].addresses


def test_unknown_image_and_crashing_container_are_reported(nodes_cluster, bookinfo):
    nodes_cluster.apply([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-such-image"},
         "spec": {"containers": [{"name": "c", "image": "example.com/no/such:1"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
         "spec": {"containers": [{"name": "c", "image": "curlimages/curl",
                                  "command": ["sh", "-c", "echo about to fail; exit 3"]}]}},
    ], namespace=bookinfo)
    with nodes_cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def waiting(name, reasons):
            def check(items):
                pod = next((p for p in items if p.metadata.name == name), None)
                statuses = (pod.status.container_statuses or []) if pod else []
                return bool(statuses) and statuses[0].state.waiting is not None and \
                    statuses[0].state.waiting.reason in reasons
            return check

        until(core.list_namespaced_pod, waiting("no-such-image",
                                                {"ErrImagePull", "ImagePullBackOff"}),
              timeout=30, namespace=bookinfo)
        pod = core.read_namespaced_pod("no-such-image", bookinfo)
        assert "image catalog" in pod.status.container_statuses[0].state.waiting.message
        assert pod.status.phase == "Pending"
        until(core.list_namespaced_pod, waiting("crasher", {"CrashLoopBackOff"}), timeout=30,
              namespace=bookinfo)
        status = core.read_namespaced_pod("crasher", bookinfo).status.container_statuses[0]
        assert status.last_state.terminated.exit_code == 3
        assert status.last_state.terminated.reason == "Error"
        assert status.restart_count >= 1
        assert "about to fail" in core.read_namespaced_pod_log("crasher", bookinfo)
    # ...and nothing else was taken down
    assert curl(nodes_cluster, bookinfo, "http://details:9080/details/0").exit_code == 0


def test_environment_from_the_downward_api(nodes_cluster, bookinfo):
    printed = "/tmp/printed"  # inside the container's own /tmp
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in (
        ("MY_POD", "metadata.name"), ("MY_NS", "metadata.namespace"),
        ("MY_IP", "status.podIP"), ("MY_NODE", "spec.nodeName"),
        ("MY_SA", "spec.serviceAccountName"))]
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envy"},
        "spec": {"serviceAccountName": "sleep", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "curlimages/curl", "env": env,
                                 "command": ["sh", "-c", "echo $MY_POD $MY_NS $MY_IP $MY_NODE "
                                             "$MY_SA $(hostname); cat /var/run/secrets/"
                                             "kubernetes.io/serviceaccount/namespace; echo; "
                                             f"touch {printed}; exec sleep 3650d"],
                                 # Ready only once the output is written: no race.
                                 "readinessProbe": {"exec": {"command": ["test", "-e",
                                                                         str(printed)]},
                                                    "periodSeconds": 1}}]}}],
                        namespace=bookinfo)
    nodes_cluster.wait("v1", "Pod", "envy", namespace=bookinfo, timeout=30,
                       condition=lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                               for c in p["status"].get("conditions") or ()))
    with nodes_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        pod = core.read_namespaced_pod("envy", bookinfo)
        out = core.read_namespaced_pod_log("envy", bookinfo).split()
    assert out == ["envy", bookinfo, pod.status.pod_ip, pod.spec.node_name, "sleep", "envy",
                   bookinfo]


def test_kubectl_exec_and_client_stream(nodes_cluster, bookinfo):
    out = nodes_cluster.kubectl("exec", "-n", bookinfo, "deploy/sleep", "--", "curl", "-sS",
                                "http://details:9080/details/0").stdout
    assert json.loads(out)["id"] == 0
    echoed = nodes_cluster.kubectl("exec", "-i", "-n", bookinfo, "deploy/sleep", "--", "cat",
                                   input="through stdin\n").stdout
    assert echoed == "through stdin\n"
    failed = nodes_cluster.kubectl("exec", "-n", bookinfo, "deploy/sleep", "--", "sh", "-c",
                                   "exit 7", check=False)
    assert failed.returncode == 7
    from kubernetes.stream import stream

    [pod] = _pods(nodes_cluster, bookinfo, "app=sleep")
    with nodes_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        text = stream(core.connect_get_namespaced_pod_exec, pod["metadata"]["name"], bookinfo,
                      command=["sh", "-c", "echo out; echo err >&2"], stdout=True,
                      stderr=True, stdin=False, tty=False)
    assert sorted(text.split()) == ["err", "out"]


def test_kubectl_logs(nodes_cluster, bookinfo):
    curl(nodes_cluster, bookinfo, "http://details:9080/details/0")
    logs = nodes_cluster.kubectl("logs", "-n", bookinfo, "deploy/details-v1").stdout
    assert "/details/0" in logs


def test_kubectl_logs_follow_streams_until_the_container_ends(nodes_cluster, bookinfo):
    """``kubectl logs -f`` prints each line as it is written and returns when the
    container ends (it used to print what was there and exit at once)."""
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done"
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "curlimages/curl",
                                 "command": ["/bin/sh", "-c", script]}]}}], namespace=bookinfo)
    nodes_cluster.wait("v1", "Pod", "chatty", namespace=bookinfo, timeout=30,
                       condition=lambda p: p["status"].get("phase") in (
                           "Running", "Succeeded"))
    followed = nodes_cluster.kubectl("logs", "-f", "-n", bookinfo, "chatty", timeout=60)
    assert followed.stdout.split("\n")[:-1] == [f"line {i}" for i in range(1, 7)], followed
    tail = nodes_cluster.kubectl("logs", "-f", "--tail=2", "-n", bookinfo, "chatty", timeout=60)
    assert tail.stdout.split() == ["line", "5", "line", "6"]  # ended already: at once


def test_kubectl_debug_says_ephemeral_containers_are_not_served(nodes_cluster, bookinfo):
    """kubectl debug used to crash (a nil-pointer panic: the 404 had no details); it
    must say what is missing and what to use instead."""
    [pod] = _pods(nodes_cluster, bookinfo, "app=sleep")
    r = nodes_cluster.kubectl("debug", "-n", bookinfo, pod["metadata"]["name"],
                              "--image=busybox", check=False)
    assert r.returncode == 1 and "panic" not in r.stderr, r.stderr[:500]
    assert "ephemeral containers are disabled for this cluster" in r.stderr, r.stderr
    assert "use kubectl exec, or kubectl debug --copy-to" in r.stderr


def test_host_network_pod_runs_in_the_node_and_sees_pod_namespaces(nodes_cluster, bookinfo):
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node-agent"},
        "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "curlimages/curl",
                                 "command": ["/bin/sleep", "3650d"],
                                 "securityContext": {"privileged": True},
                                 "volumeMounts": [{"name": "netns",
                                                   "mountPath": "/var/run/netns"}]}],
                 "volumes": [{"name": "netns", "hostPath": {"path": "/var/run/netns"}}]}}],
        namespace=bookinfo)
    pod = nodes_cluster.wait("v1", "Pod", "node-agent", namespace=bookinfo, timeout=30,
                             condition=lambda p: p["status"].get("phase") == "Running")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    assert pod["status"]["hostIP"].startswith("198.18.255.")
    # The node's /var/run/netns holds the namespaces of its own pods, not the others'.
    listed = set(nodes_cluster.exec(bookinfo, "node-agent", ["ls", "/var/run/netns"]
                                    ).stdout.split())
    others = [p for p in _pods(nodes_cluster, bookinfo, "")  # those with a network sandbox
              if p["status"].get("podIP") and not p["spec"].get("hostNetwork")]
    here = {f"pod-{p['metadata']['uid']}" for p in others
            if p["spec"]["nodeName"] == pod["spec"]["nodeName"]}
    there = {f"pod-{p['metadata']['uid']}" for p in others} - here
    assert here and there, "Bookinfo should have pods on both nodes"
    assert here <= listed and not there & listed, (listed, here, there)
    with nodes_cluster.api_client() as api:
        vip = client.CoreV1Api(api).read_namespaced_service("details", bookinfo).spec.cluster_ip
    r = nodes_cluster.exec(bookinfo, "node-agent",
                           ["curl", "-sS", "-m", "5", f"http://{vip}:9080/details/0"])
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == 0


def test_failing_liveness_probe_restarts_the_container(nodes_cluster, bookinfo):
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unwell"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": "curlimages/curl", "command": ["/bin/sleep", "3650d"],
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                              "failureThreshold": 2}}]}}], namespace=bookinfo)
    pod = nodes_cluster.wait(
        "v1", "Pod", "unwell", namespace=bookinfo, timeout=30,
        description="a restart after the liveness probe failed",
        condition=lambda p: any(s.get("restartCount", 0) >= 1
                                for s in p["status"].get("containerStatuses") or ()))
    status = pod["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    with nodes_cluster.api_client() as api:
        events = client.CoreV1Api(api).list_namespaced_event(
            bookinfo, field_selector="involvedObject.name=unwell").items
    unhealthy = [e for e in events if e.reason == "Unhealthy"]
    assert any("Liveness probe failed" in e.message for e in unhealthy), events
    # Two failures made the restart; as kubelet's correlator does, a repeat of the same
    # failure is counted on one Event rather than stored again.
    assert sum(e.count for e in unhealthy) >= 2, unhealthy
    assert len({e.message for e in unhealthy}) == len(unhealthy), unhealthy


def test_empty_dir_over_the_clusters_own_folder_keeps_the_token(nodes_cluster, bookinfo):
    """Bookinfo's productpage mounts an emptyDir at /tmp; when the cluster's folder (and
    with it the token's source) lies under the mount point, the token must be bound
    first, or the container cannot start (CI caught this where the project is not
    under /tmp)."""
    cover = str(nodes_cluster.dir.path.parent)
    printed = "/run/printed"  # the container's own /run (its /tmp may be the volume)
    script = (f"cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; "
              f"ls -A {cover}; echo end; touch {printed}; exec sleep 3650d")
    nodes_cluster.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "covered"},
        "spec": {"serviceAccountName": "sleep", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "curlimages/curl",
                                 "command": ["sh", "-c", script],
                                 "volumeMounts": [{"name": "scratch", "mountPath": cover}],
                                 "readinessProbe": {"exec": {"command": ["test", "-e",
                                                                         str(printed)]},
                                                    "periodSeconds": 1}}],
                 "volumes": [{"name": "scratch", "emptyDir": {}}]}}], namespace=bookinfo)
    nodes_cluster.wait("v1", "Pod", "covered", namespace=bookinfo, timeout=30,
                       condition=lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                               for c in p["status"].get("conditions") or ()))
    with nodes_cluster.api_client() as api:
        out = client.CoreV1Api(api).read_namespaced_pod_log("covered", bookinfo).split()
    # The token's namespace file, then an empty scratch folder where the cluster's is.
    assert out == [bookinfo, "end"]
