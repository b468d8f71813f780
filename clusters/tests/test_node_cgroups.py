"""Pod identity in /proc: every process of a pod's container sits in a cgroup that
istio-cni's parser (istio/istio cni/pkg/nodeagent/podcgroupns_linux.go, ported in
istio_cgroups.py) reads as that pod's UID and the container's ID from the pod's
status; the cgroups go with the container and the pod."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusters.local.node.cgroups import cgroup2_mount, node_root, pod_path
from clusters.local.provider import LocalCluster

from . import istio_cgroups
from .conftest import fresh_namespace
from .waiting import until, until_value

pytestmark = pytest.mark.slow

MOUNT = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
if MOUNT is None:
    pytestmark = [pytest.mark.slow, pytest.mark.skip("no cgroup2 hierarchy on this machine")]


@pytest.fixture
def core(nodes_cluster: LocalCluster) -> Iterator[client.CoreV1Api]:
    with nodes_cluster.api_client() as api:
        yield client.CoreV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    with fresh_namespace(core, "cg") as name:
        yield name


def _processes_in_pod(uid: str) -> dict[int, str]:
    """pid -> /proc/<pid>/cgroup of every process in the pod's network namespace."""
    ino = os.stat(f"/run/netns/pod-{uid}").st_ino
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == ino:
                out[int(entry.name)] = (entry / "cgroup").read_text()
        except OSError:
            continue
    return out


def _create(core: client.CoreV1Api, ns: str, name: str, containers: list[dict[str, Any]],
            **spec: Any) -> None:
    core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": containers, **spec}})


def _until_pod(core: client.CoreV1Api, ns: str, name: str, predicate: Any) -> Any:
    until(core.list_namespaced_pod,
          lambda items: any(p.metadata.name == name and predicate(p) for p in items),
          namespace=ns, timeout=30)
    return core.read_namespaced_pod(name, ns)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())


def test_each_container_process_parses_to_its_pod_and_container(core, ns):
    _create(core, ns, "two", [
        # a shell and the child it starts: the child inherits the cgroup
        {"name": "parent", "image": "curlimages/curl",
         "command": ["sh", "-c", "sleep 3650d & wait"]},
        {"name": "single", "image": "curlimages/curl", "command": ["/bin/sleep", "3650d"]},
    ])
    pod = _until_pod(core, ns, "two", _ready)
    uid = pod.metadata.uid
    ids = {c.name: c.container_id for c in pod.status.container_statuses}
    assert all(i.startswith("local://") for i in ids.values())
    # Ready says the containers started, not that the shell has forked its child yet.
    processes = until_value(lambda: _processes_in_pod(uid), lambda found: len(found) >= 3)
    by_container: dict[str, list[int]] = {}
    for pid, text in processes.items():
        parsed_uid, cid = istio_cgroups.pod_uid_and_container_id(text)
        assert parsed_uid == uid, text
        by_container.setdefault(f"local://{cid}", []).append(pid)
        path = text.splitlines()[-1].split(":", 2)[2]
        assert path.endswith(f"/kubepods/besteffort/pod{uid}/{cid}"), path
    assert set(by_container) == set(ids.values())
    assert len(by_container[ids["parent"]]) == 2 and len(by_container[ids["single"]]) == 1
    core.delete_namespaced_pod("two", ns)
    until(core.list_namespaced_pod, lambda items: not items, namespace=ns, timeout=30)


def test_the_pod_cgroup_goes_with_the_pod(core, ns):
    _create(core, ns, "gone", [{"name": "c", "image": "curlimages/curl",
                                "command": ["/bin/sleep", "3650d"]}])
    pod = _until_pod(core, ns, "gone", _ready)
    [text] = _processes_in_pod(pod.metadata.uid).values()
    assert MOUNT is not None
    leaf = MOUNT / text.splitlines()[-1].split(":", 2)[2].lstrip("/")
    pod_dir = leaf.parent
    assert leaf.is_dir() and pod_dir.name == f"pod{pod.metadata.uid}"
    core.delete_namespaced_pod("gone", ns)
    until(core.list_namespaced_pod, lambda items: not items, namespace=ns, timeout=30)
    assert not pod_dir.exists()


def test_what_a_container_leaves_running_ends_with_it(nodes_cluster, core, ns):
    """The container's shell exits, its background child would live on; runc would
    kill it with the container's cgroup, and so does the node agent."""
    _create(core, ns, "stray", [{"name": "c", "image": "curlimages/curl",
                                 "command": ["sh", "-c", "sleep 3650d & exit 3"]}],
            restartPolicy="Never")
    pod = _until_pod(core, ns, "stray", lambda p: p.status.container_statuses and any(
        c.state.terminated for c in p.status.container_statuses))
    [status] = pod.status.container_statuses
    assert status.state.terminated.exit_code == 3
    cid = status.container_id.removeprefix("local://")
    assert MOUNT is not None
    pod_dir = MOUNT / pod_path(node_root(nodes_cluster.name, pod.spec.node_name),
                               pod.metadata.uid, "BestEffort").lstrip("/")
    assert pod_dir.is_dir()
    assert not (pod_dir / cid).exists()
    assert _processes_in_pod(pod.metadata.uid) == {}
    core.delete_namespaced_pod("stray", ns)
    until(core.list_namespaced_pod, lambda items: not items, namespace=ns, timeout=30)


def test_exec_runs_in_the_containers_cgroup(nodes_cluster, core, ns):
    """kubectl exec (and exec probes) run in the container's cgroup, as runc's exec
    joins it: what istio-cni's parser reads from the exec'd process is the pod and
    the container the status names."""
    _create(core, ns, "target", [{"name": "c", "image": "curlimages/curl",
                                  "command": ["/bin/sleep", "3650d"]}])
    pod = _until_pod(core, ns, "target", _ready)
    [status] = pod.status.container_statuses
    result = nodes_cluster.exec(ns, "pod/target", ["cat", "/proc/self/cgroup"])
    assert result.exit_code == 0, result.stderr
    assert istio_cgroups.pod_uid_and_container_id(result.stdout) == (
        pod.metadata.uid, status.container_id.removeprefix("local://"))
    core.delete_namespaced_pod("target", ns)
    until(core.list_namespaced_pod, lambda items: not items, namespace=ns, timeout=30)
