"""Pod cgroup names: where the cgroup2 hierarchy is, kubelet's layout, and that
istio-cni's parser (ported in istio_cgroups.py) reads our paths as the right pod
and container, also beside a hybrid machine's v1 lines."""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import pytest

from clusters.local.node import rootfs
from clusters.local.node.cgroups import (
    CgroupTree,
    cgroup2_mount,
    node_root,
    pod_path,
    remove_recorded,
)

from . import istio_cgroups

# /proc/self/mountinfo of a hybrid machine (v1 controllers + cgroup2 at .../unified)
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# a cgroup2-only machine (systemd's unified layout); the optional fields before "-"
UNIFIED = """\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
29 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
V1_ONLY = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"

UID = "cca975ea-e767-4c98-8c6e-eb0a6ff80d99"
CID = "5283d69e452009e16f71b38bd5aac5e23f3803e9b6ece8698c72792b0ba95f0b"


@pytest.mark.parametrize(("mountinfo", "mount"), [
    (HYBRID, Path("/sys/fs/cgroup/unified")),
    (UNIFIED, Path("/sys/fs/cgroup")),
    (V1_ONLY, None),
    ("41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n", Path("/mnt/my cgroups")),
])
def test_cgroup2_mount_is_found_in_mountinfo(mountinfo, mount):
    assert cgroup2_mount(mountinfo) == mount


def test_this_machines_cgroup2_mount_is_found():
    text = Path("/proc/self/mountinfo").read_text()
    mount = cgroup2_mount(text)
    if mount is None:
        pytest.skip("no cgroup2 hierarchy mounted on this machine")
    assert (mount / "cgroup.procs").exists()


@pytest.mark.parametrize(("qos", "expected"), [
    ("BestEffort", f"/ambient-harness/c/node-1/kubepods/besteffort/pod{UID}"),
    ("Burstable", f"/ambient-harness/c/node-1/kubepods/burstable/pod{UID}"),
    ("Guaranteed", f"/ambient-harness/c/node-1/kubepods/pod{UID}"),
])
def test_pod_paths_are_kubelets_cgroupfs_names(qos, expected):
    assert pod_path(node_root("c", "node-1"), UID, qos) == expected


def test_istio_parser_port_agrees_with_istios_own_cases():
    """Cases from istio/istio cni/pkg/nodeagent/podcgroupns_linux_test.go
    (TestGetContainerIDFromCGroups) and the path examples in podcgroupns_linux.go."""
    cid = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
    assert istio_cgroups.pod_uid_and_container_id(
        f"1::/user.slice\n0::/kubepods/pod2c48913c_b29f_11e7_9350_020968147796/{cid}\n"
    ) == ("2c48913c-b29f-11e7-9350-020968147796", cid)
    assert istio_cgroups.from_path(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2c48913c-b29f-11e7-"
        f"9350-020968147796.slice/docker-{cid}.scope") == (
            "2c48913c-b29f-11e7-9350-020968147796", cid)
    assert istio_cgroups.from_path(f"/../crio-{cid}.scope") == ("", cid)
    assert istio_cgroups.from_path("/user.slice") is None
    with pytest.raises(istio_cgroups.ParseError, match="multiple pod UIDs"):
        istio_cgroups.pod_uid_and_container_id(
            f"1::/kubepods/pod11111111-b29f-11e7-9350-020968147796/{cid}\n"
            f"0::/kubepods/besteffort/pod22222222-b29f-11e7-9350-020968147796/{cid}\n")


def test_our_path_beside_hybrid_v1_lines_parses_to_pod_and_container():
    """What /proc/<pid>/cgroup of a container shows on a hybrid machine: the v1
    hierarchies keep the agent's paths (here one of them carries a 32-hex name, as
    this machine's memory controller does), only the unified line names the pod."""
    ours = pod_path(node_root("nodes-gw0-1234", "node-1"), UID, "BestEffort") + f"/{CID}"
    text = ("9:name=systemd:/\n8:pids:/\n"
            "4:memory:/process_api/dff363c8c6b3993c95c4ace495bb83dc\n1:cpu:/\n"
            f"0::{ours}\n")
    assert istio_cgroups.pod_uid_and_container_id(text) == (UID, CID)
    # and on a cgroup2-only machine, the single line
    assert istio_cgroups.pod_uid_and_container_id(f"0::{ours}\n") == (UID, CID)


@pytest.mark.skipif(os.geteuid() != 0 or cgroup2_mount(Path("/proc/self/mountinfo")
                                                         .read_text()) is None,
                    reason="needs root and a cgroup2 hierarchy")
def test_a_joined_process_and_its_children_are_found_and_killed_by_cleanup(tmp_path):
    registry = tmp_path / "cgroups"
    tree = CgroupTree.find(node_root(f"unit-{os.getpid()}", "node-1"), registry)
    assert tree is not None
    assert registry.read_text().split() == [str(tree.base)]  # recorded once made
    pod = tree.make_pod(UID, "Burstable")
    leaf = tree.make_container(pod, CID)
    proc = subprocess.Popen(["sh", "-c", "sleep 100 & echo forked; exec sleep 100"],
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=partial(rootfs.join_cgroup, str(tree.dir(leaf))))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "forked\n"
        procs = (tree.dir(leaf) / "cgroup.procs").read_text().split()
        assert str(proc.pid) in procs and len(procs) == 2  # the child inherited it
        text = Path(f"/proc/{proc.pid}/cgroup").read_text()
        assert istio_cgroups.pod_uid_and_container_id(text) == (UID, CID)
        # what `cleanup` does after a SIGKILL of the agent: kill, then remove
        assert remove_recorded(registry) == [tree.base]
        assert proc.wait(10) == -signal.SIGKILL
        assert not tree.base.exists() and not tree.base.parent.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_recorded(registry)
