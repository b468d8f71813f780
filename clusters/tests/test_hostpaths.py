"""Node-private host paths: hostPath volumes resolve in the node's own root (with
kubelet's type checks), kernel views resolve to the machine's, and the node's view
shows the node's folders at their host paths."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from clusters.local.node import rootfs
from clusters.local.node.hostpaths import HostPathError, NodeRoot, Source

pytestmark = pytest.mark.slow  # mounts (root)


@pytest.fixture
def node(tmp_path):
    root = NodeRoot(tmp_path / "node-1" / "root")
    root.create()
    yield root
    root.destroy()
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(tmp_path) in line]


def test_paths_are_created_in_the_node_root_not_on_the_machine(node):
    src = node.source("/opt/ah-test-cni/bin", "DirectoryOrCreate")
    assert src.path == str(node.path / "opt/ah-test-cni/bin") and Path(src.path).is_dir()
    assert not Path("/opt/ah-test-cni").exists()
    assert node.source("/var/run/ah-test-sock-dir", "").path == \
        str(node.path / "run/ah-test-sock-dir")  # /var/run is /run in the node too
    lock = node.source("/run/xtables.lock", "FileOrCreate")
    assert Path(lock.path).is_file()
    assert node.used() == ["/opt/ah-test-cni/bin", "/run/ah-test-sock-dir", "/run/xtables.lock"]


@pytest.mark.parametrize("path, kind, says", [
    ("/etc/missing", "Directory", "/etc/missing does not exist on the node"),
    ("/run/xtables.lock", "Directory", "is not a directory"),
    ("/nodir/file", "FileOrCreate", "its parent directory does not exist"),
    ("/etc", "File", "is not a file"),
    ("/etc", "Socket", "is not a socket"),
    ("/proc/no-such-thing", "Directory", "does not exist on this machine"),
    ("/etc", "Bogus", "is not one of"),
    ("relative/path", "", "must be absolute"),
])
def test_type_checks_say_what_kubelet_says(node, path, kind, says):
    node.source("/run/xtables.lock", "FileOrCreate")
    with pytest.raises(HostPathError) as info:
        node.source(path, kind)
    assert says in str(info.value)


def test_a_socket_type(node):
    folder = Path(node.source("/var/run/ah-sock", "DirectoryOrCreate").path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(folder / "s.sock"))
        assert node.source("/var/run/ah-sock/s.sock", "Socket").path == str(folder / "s.sock")


def test_kernel_views_are_the_machines(node):
    assert node.source("/proc", "Directory").path == "/proc"
    if Path("/lib/modules").is_dir():
        assert node.source("/lib/modules", "Directory") == Source("/lib/modules", True)
    else:
        with pytest.raises(HostPathError, match="does not exist on this machine"):
            node.source("/lib/modules", "Directory")
    whole = node.source("/", "")
    assert whole.path == str(node.path)
    assert ("proc", "/proc", False) in whole.beneath and ("dev", "/dev", False) in whole.beneath
    # the node's netns folder, not the machine's /run/netns
    assert node.source("/var/run/netns", "Directory").path == str(node.netns_dir)


def test_links_made_in_the_node_root_never_lead_out_of_it(node):
    (node.path / "etc" / "escape").symlink_to("/usr")
    (node.path / "etc" / "up").symlink_to("../../../../..")
    assert node.canonical("/etc/escape/lib") == "/usr/lib"
    assert node.source("/etc/escape/ah-x", "DirectoryOrCreate").path == \
        str(node.path / "usr/ah-x")
    assert node.canonical("/etc/up/etc") == "/etc"


def test_the_node_netns_folder_holds_only_what_is_added(node):
    subprocess.run(["ip", "netns", "add", f"ah-hp-test-{os.getpid()}"], check=True)
    name = f"ah-hp-test-{os.getpid()}"
    try:
        node.add_pod_netns(name, Path("/run/netns") / name)
        assert sorted(os.listdir(node.netns_dir)) == [name]
        assert os.stat(node.netns_dir / name).st_ino == os.stat(f"/run/netns/{name}").st_ino
        node.remove_pod_netns(name)
        assert os.listdir(node.netns_dir) == []
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_the_node_view_shows_the_nodes_folders_at_host_paths(node):
    conf = Path(node.source("/etc/cni/net.d", "DirectoryOrCreate").path)
    (conf / "10-test.conflist").write_text("{}")
    Path(node.source("/var/run/istio-cni", "DirectoryOrCreate").path, "log").write_text("x")
    spec = node.view(("/var/lib/ah-extra",))
    script = ("ls /etc/cni/net.d; ls /var/run/istio-cni; ls -d /opt/cni/bin /var/lib/ah-extra; "
              "touch /opt/cni/bin/plugin; test -e /etc/passwd && echo machine-etc")
    r = rootfs.run(spec, ["sh", "-c", script], env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["10-test.conflist", "log", "/opt/cni/bin",
                                         "/var/lib/ah-extra", "machine-etc"]
    assert (node.path / "opt/cni/bin/plugin").exists()  # written to the node's root
    assert not Path("/opt/cni/bin/plugin").exists()
