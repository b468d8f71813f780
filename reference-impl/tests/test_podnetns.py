"""Finding a pod's network namespace from the node's /proc (cgroup name + pod IP), with
no knowledge of how a runtime names namespaces."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ambient_ref.ztunnel import capture, podnetns

UID = "2c48913c-b29f-11e7-9350-020968147796"
OTHER = "0f0e0d0c-0b0a-4909-8807-060504030201"


@pytest.mark.parametrize("cgroup", [
    # kubelet's cgroupfs driver (and the harness's local cluster, under its own root)
    f"0::/kubepods/burstable/pod{UID}/9bca8d63d4fa",
    f"0::/ambient-harness/c1/n1/kubepods/pod{UID}/abc123",
    # the systemd driver: the UID's dashes become underscores
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
    f"{UID.replace('-', '_')}.slice/cri-containerd-9bca8d63.scope",
    # seen from inside another container's cgroup namespace
    f"0::/../../kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-1.scope",
    # a cgroup v1 (hybrid) machine: several hierarchies, one line each
    f"12:memory:/kubepods/pod{UID}/c1\n11:cpu,cpuacct:/kubepods/pod{UID}/c1\n0::/",
])
def test_the_pod_uid_is_read_from_kubelets_cgroup_names(cgroup):
    assert podnetns.pod_uid(cgroup) == UID


@pytest.mark.parametrize("cgroup", [
    "0::/system.slice/containerd.service",
    "0::/init.scope",
    "0::/",
    "0::/user.slice/podman-1.scope",  # "pod" inside a word, no UID
])
def test_processes_of_no_pod_name_none(cgroup):
    assert podnetns.pod_uid(cgroup) is None


def _proc(root: Path, pid: int, cgroup: str, netns: Path) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    (d / "cgroup").write_text(cgroup + "\n")
    (d / "ns" / "net").symlink_to(netns)


def test_candidates_skip_the_node_namespace_and_repeats(tmp_path):
    """One path per namespace of a wanted pod: the node's own namespace never (a
    hostNetwork pod's processes live there), nor a second process of the same pod."""
    proc = tmp_path / "proc"
    node_ns, pod_ns, other_ns = (tmp_path / n for n in ("node-ns", "pod-ns", "other-ns"))
    for f in (node_ns, pod_ns, other_ns):
        f.write_text("")
    _proc(proc, 1, "0::/init.scope", node_ns)
    _proc(proc, 40, f"0::/kubepods/pod{UID}/hostnet", node_ns)
    _proc(proc, 100, f"0::/kubepods/pod{UID}/app", pod_ns)
    _proc(proc, 101, f"0::/kubepods/pod{UID}/sidecar", pod_ns)
    _proc(proc, 200, f"0::/kubepods/pod{OTHER}/app", other_ns)
    (proc / "self").mkdir()  # not a pid
    found = podnetns.candidates({UID}, proc)
    assert found == {UID: [proc / "100" / "ns" / "net"]} or \
        found == {UID: [proc / "101" / "ns" / "net"]}


def test_ip_addr_json_gives_the_local_addresses():
    listed = ('[{"ifname":"lo","addr_info":[{"local":"127.0.0.1"}]},'
              '{"ifname":"eth0","addr_info":[{"local":"198.18.1.5"},{"local":"fe80::1"}]}]')
    assert podnetns.addresses_in(listed) == {"127.0.0.1", "198.18.1.5", "fe80::1"}
    assert podnetns.addresses_in("") == set()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root to make network namespaces")
def test_a_namespace_is_trusted_only_if_it_holds_the_pods_ip(tmp_path):
    """Real namespaces behind a fake /proc: the pod's is found and held open (its path
    enters it), one whose address is not the pod's is refused, and the node's is never
    a candidate."""
    tag = uuid.uuid4().hex[:6]
    names = {"node": f"ah-test-node-{tag}", "pod": f"ah-test-pod-{tag}"}
    for name in names.values():
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", names["pod"], "addr", "add", "198.18.201.2/32", "dev", "lo"],
                       check=True)
        proc = tmp_path / "proc"
        _proc(proc, 1, "0::/init.scope", Path("/run/netns") / names["node"])
        _proc(proc, 7, f"0::/kubepods/pod{UID}/app", Path("/run/netns") / names["pod"])
        _proc(proc, 8, f"0::/kubepods/pod{OTHER}/app", Path("/run/netns") / names["node"])

        found = asyncio.run(podnetns.find({UID: ["198.18.201.2"], OTHER: ["198.18.201.9"]},
                                          proc))
        assert set(found) == {UID}
        try:
            inside = asyncio.run(capture.run_in_pod(found[UID].path, "ip", "-j", "addr"))
            assert "198.18.201.2" in podnetns.addresses_in(inside)
        finally:
            found[UID].close()
        assert asyncio.run(podnetns.find({UID: ["198.18.201.3"]}, proc)) == {}
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_nothing_wanted_reads_nothing(monkeypatch):
    """The ztunnel asks on every configuration change; with every pod served already
    it must not scan the node's processes."""
    def scan(*_):
        raise AssertionError("/proc scanned for no pod")

    monkeypatch.setattr(podnetns, "candidates", scan)
    assert asyncio.run(podnetns.find({})) == {}
