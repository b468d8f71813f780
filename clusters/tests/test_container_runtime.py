"""The node agent as a container runtime for real executables: images mapped to
files of this machine, run with Kubernetes' command rules, environment and volumes
at any path, hostPath folders private to each node, nothing left on the machine."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from clusters.local.images.executables import ENV_VAR
from clusters.local.network.topology import node_netns
from clusters.local.provider import LocalCluster
from clusters.local.state import wait_gone
from clusters.provider import ClusterError

from .waiting import until, until_value

pytestmark = pytest.mark.slow

TOOL = """#!/bin/sh
echo "argv: $0 $*"
echo "pwd: $(pwd)"
"""
# A path no machine has: every volume below is mounted under it or at paths like it.
FRESH = f"/ah-runtime-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """A cluster whose images example.com/ah/tool (file form: entrypoint, cmd,
    workingDir, env) and example.com/ah/sh (simple form: /bin/sh) are mapped."""
    tmp = tmp_path_factory.mktemp("runtime")
    tool = tmp / "tool"
    tool.write_text(TOOL)
    tool.chmod(0o755)
    mapping = tmp / "images.yaml"
    mapping.write_text(
        "images:\n"
        "- image: example.com/ah/tool\n"
        f"  files: {{/usr/local/bin/tool: {tool}}}\n"
        "  entrypoint: [/usr/local/bin/tool]\n"
        "  cmd: [default-arg]\n"
        "  workingDir: /srv/app\n"
        "  env: {PATH: /usr/local/bin:/usr/bin:/bin, IMAGE_ENV: from-image}\n")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    c = LocalCluster(f"rt-{worker}-{os.getpid()}", root=tmp / "state",
                     image_executables=[str(mapping), "example.com/ah/sh=/bin/sh"])
    c.up()
    ns = "rt"
    c.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    c.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ztunnel"}},
             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
              "data": {"mesh": "mesh: 1\n", "KEY": "value", "other": "x"},
              "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}},
             {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
              "data": {"token": base64.b64encode(b"s3cret").decode()}}], namespace=ns)
    yield c
    c.teardown()
    assert not Path(FRESH).exists()


def _pod(name, container, volumes=(), **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name, "tier": "test"},
                         "annotations": {"note": "hello"}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", **container}], "volumes": list(volumes),
                     **spec}}


def _run(cluster, pod, timeout=60):
    """Apply a pod that exits, wait for it to succeed, return its log."""
    cluster.apply([pod], namespace="rt")
    name = pod["metadata"]["name"]
    done = cluster.wait("v1", "Pod", name, namespace="rt", timeout=timeout,
                        description=f"pod {name} to finish",
                        condition=lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    with cluster.api_client() as api:
        log = client.CoreV1Api(api).read_namespaced_pod_log(name, "rt")
    assert done["status"]["phase"] == "Succeeded", (done["status"], log)
    return log


def _sh(script):
    return {"image": "example.com/ah/sh:1.0", "command": ["sh", "-c", script]}


@pytest.mark.parametrize("container, argv, pwd", [
    ({}, "/usr/local/bin/tool default-arg", "/srv/app"),
    ({"args": ["x", "$(MY_NS)"]}, "/usr/local/bin/tool x rt", "/srv/app"),
    ({"command": ["tool"], "args": ["third"], "workingDir": f"{FRESH}/wd"},
     "/usr/local/bin/tool third", f"{FRESH}/wd"),
], ids=["entrypoint-and-cmd", "args-replace-cmd", "command-from-path"])
def test_entrypoint_cmd_command_args_and_working_dir(runtime, container, argv, pwd):
    name = f"tool-{uuid.uuid4().hex[:6]}"
    env = [{"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    log = _run(runtime, _pod(name, {"image": "example.com/ah/tool:2.1", "env": env,
                                    **container}))
    assert log.splitlines() == [f"argv: {argv}", f"pwd: {pwd}"]


def test_environment(runtime):
    env = [
        {"name": "FIRST", "value": "1"},
        {"name": "EXPANDED", "value": "$(FIRST)-$(CM_KEY)"},
        {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "MY_NOTE", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['note']"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MY_SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                             "divisor": "1m"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory",
                                                              "divisor": "1Mi"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "KEY"}}},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "ABSENT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                             "optional": True}}},
    ]
    pod = _pod("env", {**_sh("env"), "env": env,
                       "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
                       "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"},
                                   {"secretRef": {"name": "nope", "optional": True}}]},
               serviceAccountName="ztunnel")
    got = dict(line.split("=", 1) for line in _run(runtime, pod).splitlines() if "=" in line)
    with runtime.api_client() as api:
        status = client.CoreV1Api(api).read_namespaced_pod("env", "rt")
    assert {k: got.get(k) for k in ("FIRST", "EXPANDED", "MY_POD", "MY_LABEL", "MY_NOTE",
                                    "MY_SA", "CPU_M", "MEM_MI", "FROM_CM", "FROM_SECRET",
                                    "CM_KEY", "CM_mesh", "HOSTNAME")} == {
        "FIRST": "1", "EXPANDED": "1-value", "MY_POD": "env", "MY_LABEL": "test",
        "MY_NOTE": "hello", "MY_SA": "ztunnel", "CPU_M": "250", "MEM_MI": "64",
        "FROM_CM": "value", "FROM_SECRET": "s3cret", "CM_KEY": "value", "CM_mesh": "mesh: 1",
        "HOSTNAME": "env"}
    assert got["MY_IP"] == status.status.pod_ip and got["MY_NODE"] == status.spec.node_name
    assert "ABSENT" not in got and "CM_blob" not in got
    assert got["KUBERNETES_SERVICE_HOST"] == "198.19.0.1"


def _jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_every_volume_kind_at_paths_the_machine_lacks(runtime):
    volumes = [
        {"name": "config", "configMap": {"name": "cfg", "defaultMode": 0o600}},
        {"name": "items", "configMap": {"name": "cfg", "items": [
            {"key": "mesh", "path": "sub/mesh.yaml", "mode": 0o640}]}},
        {"name": "cacerts", "secret": {"secretName": "cacerts", "optional": True}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "tokens", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200,
                                     "path": "istio-token"}},
            {"configMap": {"name": "cfg", "items": [{"key": "KEY", "path": "key"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c",
                                                 "resource": "limits.cpu", "divisor": "1m"}}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "cni-bin", "hostPath": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"}},
        {"name": "proc", "hostPath": {"path": "/proc", "type": "Directory"}},
    ]
    mounts = [
        {"name": "config", "mountPath": "/etc/istio/config"},
        {"name": "items", "mountPath": f"{FRESH}/items"},
        {"name": "cacerts", "mountPath": "/etc/cacerts"},
        {"name": "sec", "mountPath": f"{FRESH}/key-file", "subPath": "token"},
        {"name": "tokens", "mountPath": "/var/run/secrets/tokens"},
        {"name": "podinfo", "mountPath": "/etc/podinfo"},
        {"name": "scratch", "mountPath": "/var/run/ztunnel"},
        {"name": "scratch", "mountPath": f"{FRESH}/sub", "subPath": "deep/er"},
        {"name": "cni-bin", "mountPath": "/host/opt/cni/bin", "readOnly": True},
        {"name": "proc", "mountPath": "/host/proc"},
    ]
    script = "; ".join([
        "cat /etc/istio/config/mesh", "stat -c '%a' /etc/istio/config/KEY",
        "cat /etc/istio/config/blob | od -An -tx1",
        f"cat {FRESH}/items/sub/mesh.yaml", f"stat -c '%a' {FRESH}/items/sub/mesh.yaml",
        "ls -A /etc/cacerts | wc -l", f"cat {FRESH}/key-file; echo",
        "ls /var/run/secrets/tokens | tr '\\n' ' '; echo",
        "cat /var/run/secrets/tokens/ns; echo", "cat /var/run/secrets/tokens/key; echo",
        "cat /etc/podinfo/labels; echo", "cat /etc/podinfo/cpu; echo",
        "echo made > /var/run/ztunnel/sock && ls /run/ztunnel", f"echo deep > {FRESH}/sub/f",
        "touch /host/opt/cni/bin/x 2>/dev/null || echo read-only",
        "touch /etc/istio/config/x 2>/dev/null || echo read-only",
        "test -d /host/proc/$$$$ && echo own-pid-in-host-proc",  # $$ escapes $ in a pod spec
        "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo",
        "echo TOKEN $(cat /var/run/secrets/tokens/istio-token)",
    ])
    pod = _pod("vols", {**_sh(script), "volumeMounts": mounts,
                        "resources": {"limits": {"cpu": "500m"}}}, volumes,
               serviceAccountName="ztunnel")
    out = _run(runtime, pod).splitlines()
    token = out.pop().removeprefix("TOKEN ")
    assert out == [
        "mesh: 1", "600", " 00 01", "mesh: 1", "640", "0", "s3cret",
        "istio-token key ns token ", "rt", "value", 'app="vols"', 'tier="test"', "500",
        "deep", "sock",  # the emptyDir holds its subPath's folder and what was written
        "read-only", "read-only", "own-pid-in-host-proc", "rt"]
    claims = _jwt_claims(token)
    assert claims["aud"] == ["istio-ca"]
    assert claims["exp"] - claims["iat"] == 43200
    assert claims["sub"] == "system:serviceaccount:rt:ztunnel"
    assert claims["kubernetes.io"]["pod"]["name"] == "vols"
    for path in (FRESH, "/etc/istio/config", "/etc/cacerts", "/etc/podinfo",
                 "/var/run/ztunnel", "/var/run/secrets/tokens", "/host"):
        assert not os.path.exists(path), f"{path} was made on the machine"
    with runtime.api_client() as api:
        node = client.CoreV1Api(api).read_namespaced_pod("vols", "rt").spec.node_name
    # the emptyDir's subPath and the hostPath live in the pod's and the node's folders
    assert (runtime.dir.path / "nodes" / node / "root" / "opt" / "cni" / "bin").is_dir()


def test_host_paths_are_private_to_each_node(runtime):
    volumes = [{"name": "bin", "hostPath": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"}},
               {"name": "netns", "hostPath": {"path": "/var/run/netns"}}]
    mounts = [{"name": "bin", "mountPath": "/host/opt/cni/bin"},
              {"name": "netns", "mountPath": "/host/var/run/netns"}]
    env = [{"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    writer = _pod("writer", {**_sh(
        f"touch /host/opt/cni/bin/{marker}; ls /host/opt/cni/bin; "
        "test $(stat -L -c %i /host/var/run/netns/pod-$UID) = $(stat -L -c %i /proc/self/ns/net)"
        " && echo own-netns-resolves; ls /host/var/run/netns"), "env": env,
        "volumeMounts": mounts}, volumes, nodeName="node-1")
    out = _run(runtime, writer).split()
    assert marker in out and "own-netns-resolves" in out
    listed = {n for n in out if n.startswith("pod-")}
    reader = _pod("reader", {**_sh("ls -A /host/opt/cni/bin; ls /host/var/run/netns; "
                                   "echo end"), "volumeMounts": mounts}, volumes,
                  nodeName="node-2")
    seen = _run(runtime, reader).split()
    assert marker not in seen
    assert not listed & set(seen), "a node's /var/run/netns shows only its own pods"
    assert (runtime.dir.path / "nodes" / "node-1" / "root" / "opt/cni/bin" / marker).exists()
    assert not (runtime.dir.path / "nodes" / "node-2" / "root" / "opt/cni/bin" /
                marker).exists()
    assert not Path("/opt/cni/bin", marker).exists()


def test_a_missing_config_map_holds_the_pod_until_it_exists(runtime):
    name = f"late-{uuid.uuid4().hex[:6]}"
    volumes = [{"name": "v", "configMap": {"name": name}}]
    pod = _pod("waits", {**_sh("cat /etc/late/k; echo; echo $FROM_ENV"),
                         "volumeMounts": [{"name": "v", "mountPath": "/etc/late"}],
                         "env": [{"name": "FROM_ENV", "valueFrom": {"secretKeyRef": {
                             "name": name, "key": "k"}}}]}, volumes)
    runtime.apply([pod], namespace="rt")
    with runtime.api_client() as api:
        core = client.CoreV1Api(api)
        events = until(core.list_namespaced_event,
                       lambda items: any(e.reason == "FailedMount" for e in items),
                       timeout=30, namespace="rt", field_selector="involvedObject.name=waits")
        assert any(f'configmap "{name}" not found' in e.message for e in events)
        assert core.read_namespaced_pod("waits", "rt").status.phase == "Pending"
    runtime.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                    "data": {"k": "from-volume"}}], namespace="rt")
    runtime.wait("v1", "Pod", "waits", namespace="rt", timeout=60,
                 description="CreateContainerConfigError for the missing Secret",
                 condition=lambda p: any(
                     ((s.get("state") or {}).get("waiting") or {}).get("reason")
                     == "CreateContainerConfigError"
                     for s in p["status"].get("containerStatuses") or ()))
    runtime.apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                    "stringData": {"k": "from-secret"}}], namespace="rt")
    done = runtime.wait("v1", "Pod", "waits", namespace="rt", timeout=60,
                        condition=lambda p: p["status"].get("phase") == "Succeeded")
    assert done["status"]["phase"] == "Succeeded"
    with runtime.api_client() as api:
        log = client.CoreV1Api(api).read_namespaced_pod_log("waits", "rt")
    assert log.split() == ["from-volume", "from-secret"]


def test_an_unmapped_image_fails_like_a_pull_naming_the_ways_to_map_it(runtime):
    runtime.apply([_pod("unmapped", {"image": "docker.io/istio/ztunnel:1.24.0"})],
                  namespace="rt")
    pod = runtime.wait("v1", "Pod", "unmapped", namespace="rt", timeout=30,
                       condition=lambda p: any(
                           ((s.get("state") or {}).get("waiting") or {}).get("reason")
                           in ("ErrImagePull", "ImagePullBackOff")
                           for s in p["status"].get("containerStatuses") or ()))
    message = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    for needed in ("--image-exec", ENV_VAR, "LocalCluster(image_executables=",
                   "example.com/ah/tool"):
        assert needed in message


def test_a_deleted_pod_leaves_no_folder_mount_or_process(runtime):
    runtime.apply([_pod("lived", {**_sh("exec sleep 3650d"), "volumeMounts": [
        {"name": "s", "mountPath": "/data"}]}, [{"name": "s", "emptyDir": {}}],
        restartPolicy="Always", terminationGracePeriodSeconds=5)], namespace="rt")
    pod = runtime.wait("v1", "Pod", "lived", namespace="rt", timeout=60,
                       condition=lambda p: p["status"].get("phase") == "Running")
    uid, node = pod["metadata"]["uid"], pod["spec"]["nodeName"]
    folder = runtime.dir.path / "nodes" / node / "pods" / uid
    assert folder.is_dir()
    pid = int((folder / "containers" / "c" / "pid").read_text())
    node_proc = runtime.dir.path / "nodes" / node / "proc"  # the pid is the node's
    assert (node_proc / str(pid) / "cmdline").read_bytes().startswith(b"sleep\x00")
    # A graceful deletion: the object goes once the node agent confirms it is done.
    runtime.kubectl("delete", "pod", "lived", "-n", "rt", "--wait=true", "--timeout=60s")
    assert not (node_proc / str(pid)).exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"pod-{uid}" not in mounts
    assert not folder.exists()  # removed before the deletion is confirmed


def _ino(path: str | Path) -> int:
    return os.stat(path).st_ino


def test_each_node_has_a_pid_namespace_whose_pid_1_is_in_the_node_network(runtime):
    """A real node has its own PID 1, in the node's network namespace: istio-cni
    stats ``/host/proc/1/ns/net`` for the node's network (istio/istio
    cni/pkg/nodeagent/podcgroupns_linux.go, statHostNetns)."""
    script = ("for f in /host/proc/1/ns/net /host/proc/1/ns/pid /proc/1/ns/pid "
              "/proc/self/ns/pid; do echo $f=$(stat -L -c %i $f); done; "
              "echo comm=$(cat /host/proc/1/comm); echo self=$$; "
              "echo seen=$(ls /host/proc | grep -c '^[0-9]')")
    seen = {}
    for node in ("node-1", "node-2"):
        name = f"pid1-{node}"
        log = _run(runtime, _pod(name, {**_sh(script), "volumeMounts": [
            {"name": "proc", "mountPath": "/host/proc"}]},
            [{"name": "proc", "hostPath": {"path": "/proc"}}], nodeName=node))
        seen[node] = dict(line.split("=", 1) for line in log.split())
    for node, facts in seen.items():
        netns = Path("/run/netns") / node_netns(runtime.name, node)
        assert int(facts["/host/proc/1/ns/net"]) == _ino(netns), facts
        # the node's procfs is its own PID namespace's, neither the machine's nor the
        # pod's (the container's /proc is its pod's)
        assert int(facts["/host/proc/1/ns/pid"]) != _ino("/proc/self/ns/pid")
        assert facts["/proc/self/ns/pid"] != facts["/host/proc/1/ns/pid"]
        assert facts["comm"].startswith("python")  # the node's init (node/pidinit.py)
        # the node's procfs shows the node's processes, not the machine's
        assert int(facts["seen"]) < len([p for p in os.listdir("/proc") if p.isdigit()])
        assert (runtime.dir.path / "nodes" / node / "proc" / "1" / "ns" / "net").exists()
    assert seen["node-1"]["/host/proc/1/ns/pid"] != seen["node-2"]["/host/proc/1/ns/pid"]


def _pid_facts(then: str = "") -> dict:
    """A container that reports its PID namespace as a pod's processes see it (and
    then runs ``then``)."""
    return _sh("echo self=$$$$; echo ns=$(stat -L -c %i /proc/self/ns/pid); "
               "echo init=$(stat -L -c %i /proc/1/ns/pid); "
               "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); "
               "echo pids=$(ls /proc | grep '^[0-9]' | sort -n | tr '\\n' ,); " + then)


def _facts(log: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.splitlines() if "=" in line)


def _in_pid_ns(ns: int) -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and _ns_ino(p) == ns]


def test_each_pod_has_a_pid_namespace_whose_pid_1_is_its_pause(runtime):
    """Kubernetes gives a pod PID namespaces of its own unless it sets hostPID (the
    Pod API's ``hostPID``, ``shareProcessNamespace``); here a pod's containers share
    one, PID 1 being the pod's pause, as with ``shareProcessNamespace: true``."""
    runtime.apply([_pod("pidns-a", _pid_facts("exec sleep 3650d"), restartPolicy="Always")],
                  namespace="rt")
    runtime.wait("v1", "Pod", "pidns-a", namespace="rt", timeout=60,
                 condition=lambda p: p["status"].get("phase") == "Running")
    a = _facts(until_value(lambda: runtime.kubectl("logs", "pidns-a", "-n", "rt").stdout,
                           lambda log: "pids=" in log, timeout=30))
    b = _facts(_run(runtime, _pod("pidns-b", _pid_facts())))  # while pidns-a runs
    node_pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for facts in (a, b):
        assert facts["init"] == facts["ns"], facts  # /proc is the pod's procfs
        assert int(facts["self"]) > 1, facts
        assert "pause.py" in facts["pid1"], facts
        pids = [int(p) for p in facts["pids"].strip(",").split(",")]
        # the pause, the shell and its pipeline: the pod's processes only
        assert 1 in pids and len(pids) < 10 < len(node_pids), facts
        assert int(facts["ns"]) != _ino("/proc/self/ns/pid")
    assert a["ns"] != b["ns"]
    # pidns-b has finished: its pause is stopped with its sandbox; pidns-a's runs on
    until_value(lambda: _in_pid_ns(int(b["ns"])), lambda left: not left, timeout=30)
    assert _in_pid_ns(int(a["ns"]))
    # with a grace period of 0 the API forgets the pod at once; the node stops it after
    runtime.kubectl("delete", "pod", "pidns-a", "-n", "rt", "--wait=true", "--timeout=60s")
    until_value(lambda: _in_pid_ns(int(a["ns"])), lambda left: not left, timeout=30)


def test_a_pod_with_host_pid_shares_its_node_pid_namespace(runtime):
    facts = _facts(_run(runtime, _pod("hostpid", _pid_facts(), hostPID=True)))
    pod = runtime.wait("v1", "Pod", "hostpid", namespace="rt", timeout=5,
                       condition=lambda p: True)
    node_init = runtime.dir.path / "nodes" / pod["spec"]["nodeName"] / "proc" / "1"
    assert int(facts["ns"]) == _ino(node_init / "ns" / "pid"), facts
    assert "pidinit" in facts["pid1"], facts  # the node's init (node/pidinit.py)


def test_the_pause_reaps_orphans_and_takes_their_processes_with_it(runtime):
    """An orphan is re-parented to PID 1 of its namespace, the pause, which reaps it
    (else it would stay a zombie); killing the pause kills what the pod left."""
    script = ("sh -c 'sleep 0.3 & echo $!' > /tmp/orphan; o=$(cat /tmp/orphan); "
              "echo parent=$(awk '/^PPid/ {print $2}' /proc/$o/status); "
              "if timeout 30 sh -c \"while [ -e /proc/$o ]; do sleep 0.05; done\"; "
              "then echo orphan=reaped; else echo orphan=left; fi")
    facts = _facts(_run(runtime, _pod("reaper", _sh(script))))
    assert facts == {"parent": "1", "orphan": "reaped"}


def _pid_ns_of(cluster, pod: dict) -> int:
    node = cluster.dir.path / "nodes" / pod["spec"]["nodeName"]
    pid = (node / "pods" / pod["metadata"]["uid"] / "containers" / "c" / "pid").read_text()
    return _ino(node / "proc" / pid.strip() / "ns" / "pid")


def test_a_killed_pause_is_replaced_and_the_pod_restarts_in_a_new_namespace(runtime):
    """The kernel kills a PID namespace's processes with its PID 1; kubelet re-creates
    a pod sandbox that died (SandboxChanged) and the containers restart in it."""
    runtime.apply([_pod("sandboxed", _sh("exec sleep 3650d"), restartPolicy="Always")],
                  namespace="rt")
    pod = runtime.wait("v1", "Pod", "sandboxed", namespace="rt", timeout=60,
                       condition=lambda p: p["status"].get("phase") == "Running")
    before = _pid_ns_of(runtime, pod)
    pauses = [int(p) for p in os.listdir("/proc") if p.isdigit()
              and b"pause.py" in _cmdline(p) and _ns_ino(p) == before]
    assert len(pauses) == 1, pauses
    os.kill(pauses[0], 9)

    def restarted(p: dict) -> bool:
        status = (p["status"].get("containerStatuses") or [{}])[0]
        return status.get("restartCount", 0) >= 1 and "running" in status.get("state", {})
    pod = runtime.wait("v1", "Pod", "sandboxed", namespace="rt", timeout=60,
                       condition=restarted)
    assert _pid_ns_of(runtime, pod) != before
    events = runtime.kubectl("get", "events", "-n", "rt", "--field-selector",
                             "involvedObject.name=sandboxed").stdout
    assert "SandboxChanged" in events
    runtime.kubectl("delete", "pod", "sandboxed", "-n", "rt", "--wait=true", "--timeout=60s")


def _ns_ino(pid: str) -> int | None:
    try:
        return _ino(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def test_exec_runs_in_the_pod_pid_namespace_and_an_overrun_stops_it_all(runtime):
    runtime.apply([_pod("execd", _sh("exec sleep 3650d"), restartPolicy="Always")],
                  namespace="rt")
    pod = runtime.wait("v1", "Pod", "execd", namespace="rt", timeout=60,
                       condition=lambda p: p["status"].get("phase") == "Running")
    node_proc = runtime.dir.path / "nodes" / pod["spec"]["nodeName"] / "proc"
    pid = (runtime.dir.path / "nodes" / pod["spec"]["nodeName"] / "pods" /
           pod["metadata"]["uid"] / "containers" / "c" / "pid").read_text().strip()
    out = runtime.exec("rt", "execd", ["sh", "-c", "stat -L -c %i /proc/self/ns/pid; pwd; "
                                       "tr '\\0' ' ' < /proc/1/cmdline"])
    assert out.exit_code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [str(_ino(node_proc / pid / "ns" / "pid")), "/"], lines
    assert "pause.py" in lines[2]  # the pod's procfs
    marker = f"{3000 + uuid.uuid4().int % 600}"
    with pytest.raises(ClusterError, match="did not finish"):
        runtime.exec("rt", "execd", ["sleep", marker], timeout=2)
    # nsenter forks into the pod's namespace: its child is stopped with it (an
    # hour's sleep otherwise)
    left = [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) ==
            f"sleep\x00{marker}\x00".encode()]
    assert all(wait_gone(p, 10) for p in left), left
    runtime.kubectl("delete", "pod", "execd", "-n", "rt", "--wait=true", "--timeout=60s")


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
