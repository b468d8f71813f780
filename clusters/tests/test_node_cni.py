"""CNI on a running node: a recording plugin of the tests' own (cni_recorder.py),
installed into the node's opt/cni/bin and chained into the node's conflist after the
agent's primary network, sees ADD before the pod's containers start and DEL when the
pod goes; a failing plugin fails the sandbox (FailedCreatePodSandBox) until it
succeeds; host-network pods and nodes without a configuration run no plugin.  The
plugin runs in the node's view: it is told, and finds, host paths (``CNI_PATH``,
``CNI_NETNS``, the node's net.d, its ``/var/run``), and what it writes there is that
node's, as a hostPath pod of the node (and not one of the other node) sees.

Expectations cite the CNI spec 1.0 (containernetworking/cni SPEC.md @ spec-v1.0.0),
containerd (internal/cri/server/sandbox_run.go: CNI_ARGS, capabilities) and kubelet
(the FailedCreatePodSandBox event, pkg/kubelet/kuberuntime/kuberuntime_manager.go).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusters.local.network.topology import node_netns
from clusters.local.node import cni
from clusters.local.nodes import node_host_root
from clusters.local.provider import LocalCluster

from . import cni_recorder
from .conftest import fresh_namespace
from .waiting import until

pytestmark = pytest.mark.slow

PLUGIN = "ah-test-recorder"
NODE = "node-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A two-node cluster of this module's own (node-1's net.d is changed here), whose
    agents retry a failed sandbox after 0.2 s instead of kubelet's 10 s."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    c = LocalCluster(f"cni-{worker}-{os.getpid()}", nodes=2,
                     root=tmp_path_factory.mktemp("cni"))
    old = os.environ.get("AMBIENT_HARNESS_SANDBOX_BACKOFF")
    os.environ["AMBIENT_HARNESS_SANDBOX_BACKOFF"] = "0.2"
    try:
        c.up()
    finally:
        if old is None:
            del os.environ["AMBIENT_HARNESS_SANDBOX_BACKOFF"]
        else:
            os.environ["AMBIENT_HARNESS_SANDBOX_BACKOFF"] = old
    yield c
    c.teardown()


@pytest.fixture
def core(cluster: LocalCluster) -> Iterator[client.CoreV1Api]:
    with cluster.api_client() as api:
        yield client.CoreV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    with fresh_namespace(core, "cni") as name:
        yield name


def _host(cluster: LocalCluster, node: str = NODE) -> Path:
    return node_host_root(cluster.dir.path, node)


@pytest.fixture
def chain(cluster: LocalCluster) -> Iterator[Any]:
    """``chain(**fields)`` appends the recorder to node-1's conflist; the original
    list comes back afterwards.  Returns the folder the records go to (the node's
    ``/var/lib/cni/<name>``, where the plugin writes in the node's view)."""
    conflist = _host(cluster) / "etc/cni/net.d" / cni.PRIMARY_CONFLIST
    original = conflist.read_text()
    cni_recorder.install(_host(cluster) / "opt/cni/bin", PLUGIN)
    name = f"ah-test-records-{uuid.uuid4().hex[:8]}"
    records = _host(cluster) / "var/lib/cni" / name
    records.mkdir(parents=True)

    def add(**fields: Any) -> Path:
        data = json.loads(original)
        data["plugins"].append({"type": PLUGIN, "name": "recorder",
                                "recordDir": f"/var/lib/cni/{name}", **fields})
        tmp = conflist.with_name(".test.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(conflist)
        return records

    yield add
    conflist.write_text(original)


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    # A grace period, so deletion waits for the node agent's confirmation, which comes
    # after the sandbox's teardown (the container, sleep, ends at once on SIGTERM).
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"example.com/note": "hello"}},
            "spec": {"terminationGracePeriodSeconds": 5, "nodeName": NODE,
                     "containers": [{"name": "c", "image": "curlimages/curl",
                                     "command": ["/bin/sleep", "3650d"]}], **spec}}


def _ready(core: client.CoreV1Api, ns: str, name: str, timeout: float = 30) -> Any:
    def ready(items: list[Any]) -> bool:
        return any(p.metadata.name == name and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
            for p in items)

    until(core.list_namespaced_pod, ready, timeout=timeout, namespace=ns)
    return core.read_namespaced_pod(name, ns)


def _delete(core: client.CoreV1Api, ns: str, name: str) -> None:
    core.delete_namespaced_pod(name, ns)
    until(core.list_namespaced_pod, lambda items: not items, namespace=ns)


@pytest.fixture
def lifecycle(cluster, core, ns, chain):
    """One pod created and deleted with the recorder chained: (pod, records)."""
    records = chain(capabilities={"io.kubernetes.cri.pod-annotations": True, "dns": True,
                                  "bandwidth": True})
    core.create_namespaced_pod(ns, _pod("web"))
    pod = _ready(core, ns, "web")
    at_ready = cni_recorder.records(records)
    _delete(core, ns, "web")
    return pod, at_ready, cni_recorder.records(records)


def test_add_runs_before_the_containers_with_the_primary_result(cluster, lifecycle):
    pod, at_ready, _ = lifecycle
    [add] = at_ready
    uid, ip = pod.metadata.uid, pod.status.pod_ip
    env, conf = add["env"], add["stdin"]
    assert env["CNI_COMMAND"] == "ADD"
    assert re.fullmatch(r"[0-9a-f]{64}", env["CNI_CONTAINERID"])
    assert env["CNI_NETNS"] == f"/var/run/netns/pod-{uid}"
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_PATH"] == "/opt/cni/bin"  # the host path, as a real runtime passes it
    assert env["CNI_ARGS"] == (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.metadata.namespace};K8S_POD_NAME=web;"
        f"K8S_POD_INFRA_CONTAINER_ID={env['CNI_CONTAINERID']};K8S_POD_UID={uid}")
    # the list's name and version; the plugin's own fields kept; capabilities gone
    assert (conf["name"], conf["cniVersion"]) == (cni.PRIMARY_NETWORK, "1.0.0")
    assert conf["recordDir"] and "capabilities" not in conf
    # runtimeConfig: what the plugin asked for and the runtime offers (no bandwidth)
    assert conf["runtimeConfig"]["io.kubernetes.cri.pod-annotations"] == {
        "example.com/note": "hello"}
    assert conf["runtimeConfig"]["dns"]["servers"] == ["198.19.0.10"]
    assert set(conf["runtimeConfig"]) == {"io.kubernetes.cri.pod-annotations", "dns"}
    # prevResult: the routed veth, with the address the pod's status shows
    prev = conf["prevResult"]
    eth0 = prev["interfaces"][prev["ips"][0]["interface"]]
    assert eth0["name"] == "eth0" and eth0["sandbox"] == env["CNI_NETNS"]
    assert prev["ips"][0]["address"] == f"{ip}/32"
    assert prev["ips"][0]["gateway"] == "198.18.0.1"
    # the namespace already had its address, and no container ran in it yet
    assert add["eth0"] == [f"{ip}/32"]
    assert add["pids_in_netns"] == []
    # the plugin ran in the node's network namespace
    node_ns = Path("/run/netns") / node_netns(cluster.name, NODE)
    assert add["netns_inode"] == node_ns.stat().st_ino


def test_del_on_delete_with_the_cached_result(lifecycle):
    _, at_ready, after = lifecycle
    [add] = at_ready
    [dele] = after[1:]
    assert dele["command"] == "DEL"
    for key in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"):
        assert dele["env"][key] == add["env"][key]
    assert dele["stdin"]["prevResult"] == add["output"]  # the final ADD result, cached
    assert dele["netns_exists"]  # DEL comes before the namespace goes


def test_failing_plugin_fails_the_sandbox_until_it_succeeds(core, ns, chain):
    records = chain(failAdds=2)
    core.create_namespaced_pod(ns, _pod("flaky"))
    pod = _ready(core, ns, "flaky")
    calls = cni_recorder.records(records)
    assert [(r["command"], r["failed"]) for r in calls] == [
        ("ADD", True), ("DEL", False), ("ADD", True), ("DEL", False), ("ADD", False)]
    # each try is a new sandbox, and each failed ADD's DEL has no result to pass
    ids = [r["env"]["CNI_CONTAINERID"] for r in calls]
    assert ids[0] == ids[1] and ids[2] == ids[3] and len({ids[0], ids[2], ids[4]}) == 3
    assert "prevResult" not in calls[1]["stdin"] and "prevResult" not in calls[3]["stdin"]
    assert calls[4]["stdin"]["prevResult"]["ips"][0]["address"] == f"{pod.status.pod_ip}/32"
    events = until(core.list_namespaced_event,
                   lambda items: sum(e.reason == "FailedCreatePodSandBox" for e in items) >= 2,
                   namespace=ns)
    failed = [e for e in events if e.reason == "FailedCreatePodSandBox"]
    assert all(e.type == "Warning" and e.involved_object.name == "flaky" for e in failed)
    assert sorted(e.message for e in failed) == sorted(
        "Failed to create pod sandbox: failed to setup network for sandbox "
        f'"{call["env"]["CNI_CONTAINERID"]}": plugin type="{PLUGIN}" name="recorder" '
        f"failed (add): test plugin refuses; attempt {attempt}"
        for attempt, call in ((1, calls[0]), (2, calls[2])))
    _delete(core, ns, "flaky")


def test_host_network_pods_get_no_plugin_call(core, ns, chain):
    records = chain()
    core.create_namespaced_pod(ns, _pod("host", hostNetwork=True))
    core.create_namespaced_pod(ns, _pod("own"))
    _ready(core, ns, "host")
    own = _ready(core, ns, "own")
    calls = cni_recorder.records(records)
    # only the pod with a network of its own was added
    assert [(r["command"], r["env"]["CNI_NETNS"]) for r in calls] == [
        ("ADD", f"/var/run/netns/pod-{own.metadata.uid}")]
    core.delete_namespaced_pod("host", ns)
    _delete(core, ns, "own")
    assert [r["command"] for r in cni_recorder.records(records)] == ["ADD", "DEL"]


def test_without_a_network_configuration_no_plugin_runs(cluster, core, ns, chain):
    records = chain()
    net_d = _host(cluster) / "etc/cni/net.d"
    conflist = net_d / cni.PRIMARY_CONFLIST
    parked = net_d / (cni.PRIMARY_CONFLIST + ".off")  # not a configuration file name
    conflist.replace(parked)
    try:
        core.create_namespaced_pod(ns, _pod("plain"))
        pod = _ready(core, ns, "plain")
        assert pod.status.pod_ip  # the routed veth alone
        _delete(core, ns, "plain")
    finally:
        parked.replace(conflist)
    assert cni_recorder.records(records) == []


def _watcher(name: str, node: str, host_path: str, kind: str) -> dict[str, Any]:
    pod = _pod(name, nodeName=node, volumes=[
        {"name": "seen", "hostPath": {"path": host_path, "type": kind}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "seen", "mountPath": "/seen"}]
    return pod


def test_plugins_work_with_the_nodes_host_paths(cluster, core, ns, chain):
    """What istio-cni's plugin relies on (istio/istio cni/pkg/plugin/plugin.go and
    kubernetes.go: its kubeconfig, event socket and log file under the
    cni_agent_run_dir of its conflist entry, /var/run/istio-cni; the pod's
    namespace through CNI_NETNS): the plugin reads node-1's conflist at its host
    path, opens CNI_NETNS as the pod's namespace, and what it writes under
    /var/run is node-1's."""
    shared = f"/var/run/ah-test-cni-{uuid.uuid4().hex[:8]}"
    records = chain(readConfig=f"{cni.NET_DIR}/{cni.PRIMARY_CONFLIST}", nodeRecordDir=shared)
    core.create_namespaced_pod(ns, _pod("web"))
    uid = _ready(core, ns, "web").metadata.uid
    [add] = cni_recorder.records(records)
    # node-1's conflist (not this machine's /etc, which has none of ours): the
    # primary network, then the recorder itself
    assert add["config_read"] == [cni.PRIMARY_TYPE, PLUGIN]
    # CNI_NETNS resolves in the plugin's view to the pod's namespace
    assert add["env"]["CNI_NETNS"] == f"/var/run/netns/pod-{uid}"
    assert add["netns_exists"]
    assert add["netns_file_inode"] == os.stat(f"/run/netns/pod-{uid}").st_ino
    assert not Path(shared).exists()  # nothing written to this machine's /var/run
    # a hostPath pod of node-1 finds the record (type Directory: it must exist on the
    # node already) and, its own sandbox's ADD being earlier than its containers, its
    # own; one of node-2 (no recorder chained there) gets an empty folder of its node
    core.create_namespaced_pod(ns, _watcher("here", NODE, shared, "Directory"))
    core.create_namespaced_pod(ns, _watcher("there", "node-2", shared, "DirectoryOrCreate"))
    here_uid = _ready(core, ns, "here").metadata.uid
    _ready(core, ns, "there")
    here = cluster.exec(ns, "pod/here", ["ls", "/seen"])
    there = cluster.exec(ns, "pod/there", ["ls", "-A", "/seen"])
    assert (here.exit_code, sorted(here.stdout.split())) == (0, sorted([uid, here_uid])), \
        here.stderr
    assert (there.exit_code, there.stdout) == (0, ""), there.stderr
    for name in ("here", "there"):
        core.delete_namespaced_pod(name, ns)
    _delete(core, ns, "web")
    # the DEL too ran in the view, with the pod's namespace still at its node path
    [dele] = [r for r in cni_recorder.records(records)
              if r["command"] == "DEL" and r["env"]["CNI_NETNS"] == add["env"]["CNI_NETNS"]]
    assert dele["netns_file_inode"] == add["netns_file_inode"]
    assert dele["config_read"] == [cni.PRIMARY_TYPE, PLUGIN]
