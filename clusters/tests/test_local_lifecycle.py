"""Bringing the local cluster up and down leaves nothing behind, even after SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clusters.local.node.cgroups import cgroup2_mount
from clusters.local.provider import LocalCluster
from clusters.local.state import ClusterDir, wait_gone
from clusters.provider import ClusterError

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
# Namespace names are machine-wide: the pid keeps concurrent test runs apart.
TAG = str(os.getpid())
HAS_CGROUP2 = cgroup2_mount(Path("/proc/self/mountinfo").read_text()) is not None


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _netns_of(cluster: str, registry_names: list[str]) -> list[str]:
    present = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    return sorted(n for n in present if n.startswith(f"ah-{cluster}") or n in registry_names)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` in this mount namespace."""
    prefix = str(path)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            out.append(c)
            todo.append(c)
    return out


def _pod_cgroups(cluster_dir: Path) -> list[Path]:
    """The pod cgroup directories under the node roots the cluster recorded."""
    try:
        roots = [Path(line) for line in (cluster_dir / "cgroups").read_text().split()]
    except FileNotFoundError:
        return []
    return sorted(d for root in roots for d in root.glob("kubepods/*/pod*"))


def _run_a_pod(kubeconfig: Path, name: str = "idle",
               container: str = "image: curlimages/curl\n    command: [/bin/sleep, 3650d]"
               ) -> None:
    from clusters.provider import kubectl_binary

    manifest = (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n"
                "  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n"
                f"    {container}\n")
    kubectl = [kubectl_binary(), f"--kubeconfig={kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, text=True, check=True,
                   capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Ready", f"pod/{name}",
                    "--timeout=30s"], check=True, capture_output=True)


def test_up_and_down_leave_no_process_namespace_or_file(tmp_path):
    root = tmp_path / "state"
    c = LocalCluster(f"lifecycle-{TAG}", root=root)
    c.up()
    assert c.kubeconfig.exists()
    _run_a_pod(c.kubeconfig)
    recorded = (c.dir.path / "netns").read_text().split()
    assert any(n.startswith("pod-") for n in recorded)
    assert len(_netns_of(f"lifecycle-{TAG}", recorded)) == 5  # wire, 2 nodes, DNS pod, our pod
    assert _processes_mentioning(str(c.dir.path))
    assert _mounts_under(c.dir.path)  # each node's netns folder, the pod's netns in it
    cgroups = _pod_cgroups(c.dir.path)
    assert len(cgroups) == (2 if HAS_CGROUP2 else 0)  # the DNS pod's and ours
    c.teardown()
    assert _mounts_under(c.dir.path) == []
    assert not any(d.exists() for d in cgroups)
    assert not c.dir.path.exists()
    assert _processes_mentioning(str(c.dir.path)) == []
    assert _processes_mentioning("/bin/sleep 3650d") == []
    assert _netns_of(f"lifecycle-{TAG}", recorded) == []
    assert not any(Path("/etc/netns", n).exists() for n in recorded)
    assert list(root.iterdir()) == []


def test_cli_up_status_down(tmp_path):
    env = dict(os.environ, AMBIENT_HARNESS_STATE=str(tmp_path), PYTHONPATH=str(PROJECT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clusters.local", *args, "--name",
                               f"cli-{TAG}"],
                              capture_output=True, text=True, env=env, timeout=60)

    up = cli("up", "--nodes", "3")
    assert up.returncode == 0, up.stderr
    kubeconfig = tmp_path / f"cli-{TAG}" / "kubeconfig"
    assert str(kubeconfig) in up.stdout
    assert cli("status").returncode == 0
    again = cli("up")
    assert again.returncode == 1 and "already running" in again.stderr
    down = cli("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert cli("status").returncode == 1
    assert not (tmp_path / f"cli-{TAG}").exists()
    assert _processes_mentioning(str(tmp_path / f"cli-{TAG}")) == []


def test_cleanup_after_sigkill(tmp_path):
    env = dict(os.environ, AMBIENT_HARNESS_STATE=str(tmp_path), PYTHONPATH=str(PROJECT))
    try:
        up = subprocess.run([sys.executable, "-m", "clusters.local", "up", "--name",
                             f"killed-{TAG}", "--image-exec", "example.com/ah/sleeper=/bin/sleep"],
                            capture_output=True, text=True, env=env, timeout=60)
        assert up.returncode == 0, up.stderr
        d = ClusterDir(tmp_path / f"killed-{TAG}")
        _run_a_pod(d.kubeconfig)
        # an image mapped to an executable, with a hostPath folder of its node
        _run_a_pod(d.kubeconfig, "mapped", "image: example.com/ah/sleeper:1\n"
                   "    args: [3650d]\n    volumeMounts: [{name: h, mountPath: /host/etc}]\n"
                   "  volumes: [{name: h, hostPath: {path: /etc/cni/net.d}}]")
        assert _processes_mentioning("/usr/local/bin/sleep\x003650d")
        pid = d.pid()
        assert pid is not None
        # Everything at once: the control plane, the node agents, the containers.
        everyone = [pid, *_descendants(pid)]
        for p in everyone:
            # A node's init is PID 1 of its PID namespace: once it is killed the kernel
            # kills the rest of that namespace, so a later pid may already be gone.
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        for p in everyone:
            assert wait_gone(p, 10)
        recorded = (d.path / "netns").read_text().split()
        cgroups = _pod_cgroups(d.path)
        assert len(cgroups) == (3 if HAS_CGROUP2 else 0)  # a killed run leaves cgroups...
        assert _netns_of(f"killed-{TAG}", recorded)  # ...namespaces...
        left = _mounts_under(d.path)  # ...the nodes' mounts (their procfs too)...
        assert {str(d.path / "nodes" / n / "proc") for n in ("node-1", "node-2")} <= set(left)
        assert d.path.exists()  # ...and its folder...
        out = subprocess.run([sys.executable, "-m", "clusters.local", "cleanup"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and "removed 1" in out.stdout
        assert not d.path.exists()  # ...which cleanup removes
        assert _mounts_under(d.path) == []
        assert _processes_mentioning(str(d.path)) == []
        assert _processes_mentioning("/usr/local/bin/sleep\x003650d") == []
        assert _netns_of(f"killed-{TAG}", recorded) == []
        assert not any(c.exists() for c in cgroups)
    finally:
        # A failure above must not leave the cluster behind either, alive or killed.
        for command in (["down", "--name", f"killed-{TAG}"], ["cleanup"]):
            subprocess.run([sys.executable, "-m", "clusters.local", *command],
                           capture_output=True, text=True, env=env, timeout=60)


def test_cleanup_leaves_running_clusters_alone_unless_named(tmp_path):
    """``cleanup`` removes what has no live owner; in the shared state folder a running
    cluster may be someone else's, so it is stopped only when named."""
    env = dict(os.environ, AMBIENT_HARNESS_STATE=str(tmp_path), PYTHONPATH=str(PROJECT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clusters.local", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    running, dead = ClusterDir(tmp_path / f"running-{TAG}"), ClusterDir(tmp_path / f"dead-{TAG}")
    try:
        assert cli("up", "--name", running.name).returncode == 0
        dead.path.mkdir()  # a killed run's folder: its daemon's pid runs no more
        (dead.path / "apiserver.pid").write_text("999999999")
        assert not dead.alive()

        out = cli("cleanup")
        assert out.returncode == 0, out.stderr
        assert f"left alone: {running.name} is running" in out.stdout
        assert f"cleanup --name {running.name}" in out.stdout and "removed 1" in out.stdout
        assert running.alive() and not dead.path.exists()

        out = cli("cleanup", "--name", running.name, "--name", "no-such")
        assert out.returncode == 0 and "no local cluster named 'no-such'" in out.stdout
        assert f"stopping {running.name}" in out.stdout and "removed 1" in out.stdout
        assert not running.path.exists()
        assert _processes_mentioning(str(running.path)) == []
    finally:
        cli("down", "--name", running.name)


def test_port_in_use_is_reported_clearly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = LocalCluster("busy", root=tmp_path, port=port)
        with pytest.raises(ClusterError) as err:
            c.up()
    assert f"127.0.0.1:{port}" in str(err.value) and "--port" in str(err.value)
    assert not c.dir.path.exists()


def test_owner_death_stops_the_cluster(tmp_path):
    """A test process killed with SIGKILL takes its cluster down with it."""
    script = (
        "import sys\n"
        "from clusters.local.provider import LocalCluster\n"
        f"c = LocalCluster('orphan-{TAG}', root={str(tmp_path)!r})\n"
        "c.up()\n"
        "print(c.dir.pid(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=PROJECT,
                             env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert owner.stdout is not None
    daemon_pid = int(owner.stdout.readline())
    owner.kill()
    owner.wait(10)
    # A bound that only stops a hang: taking two nodes' namespaces and processes down
    # took over 15 s with the machine's load average near 30.
    assert wait_gone(daemon_pid, 120)


def test_missing_tool_is_named_with_its_package(tmp_path, monkeypatch):
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "nft" else real_which(name))
    with pytest.raises(ClusterError) as err:
        LocalCluster("no-nft", root=tmp_path).up()
    assert "nft" in str(err.value) and "apt-get install nftables" in str(err.value)


def test_without_root_the_cluster_says_what_it_needs(tmp_path):
    script = (
        "from clusters.local.provider import LocalCluster\n"
        "from clusters.provider import ClusterError\n"
        "import tempfile\n"
        "try:\n"
        "    LocalCluster('unprivileged', root=tempfile.mkdtemp()).up()\n"
        "except ClusterError as exc:\n"
        "    print(exc)\n")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-c"]
    env = dict(os.environ, PYTHONPATH=str(PROJECT), HOME="/tmp")
    probe = subprocess.run([*as_nobody, "import clusters.local.provider"], capture_output=True,
                           cwd="/", env=env, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the interpreter or the project is not readable by an unprivileged user "
                    "on this machine (for example a checkout under /root)")
    proc = subprocess.run([*as_nobody, script], capture_output=True, text=True, cwd="/",
                          env=env, timeout=60)
    assert "need root" in proc.stdout, proc.stdout + proc.stderr
    assert "run_pods=False" in proc.stdout
