"""Private roots: programs see binds at any path, the machine sees nothing of it,
and nothing remains once the program exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from clusters.local.node import rootfs
from clusters.local.node.cgroups import TOP, cgroup2_mount
from clusters.local.node.hostpaths import unmount_under

pytestmark = pytest.mark.slow
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def _mounts_mentioning(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if text in line]


@pytest.fixture
def scratch(tmp_path):
    d = tmp_path / "scratch"
    d.mkdir()
    yield str(d)
    assert _mounts_mentioning(str(tmp_path)) == []
    assert list(d.iterdir()) == []  # the writable layer lived in the namespace only


def test_binds_at_paths_the_machine_lacks_and_nothing_left(tmp_path, scratch):
    fresh = f"/etc/ah-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mesh").write_text("mesh: 1\n")
    (tmp_path / "hosts").write_text("10.0.0.1 somewhere\n")
    spec = rootfs.RootSpec(scratch=scratch, hostname="pod-a", workdir="/var/lib/wd", binds=(
        rootfs.Bind(str(tmp_path / "cfg"), f"{fresh}/config", readonly=True),
        rootfs.Bind(str(tmp_path / "cfg"), "/var/run/ah-test/cfg"),  # through /var/run -> /run
        rootfs.Bind(str(tmp_path / "hosts"), "/etc/hosts")))
    script = (f"cat {fresh}/config/mesh; cat /etc/hosts; hostname; pwd; "
              f"touch {fresh}/config/x 2>/dev/null || echo read-only; "
              "ls /run/ah-test; echo private > /etc/written; touch /tmp/t /run/r; "
              "ls /dev | tr '\\n' ' '")
    r = rootfs.run(spec, ["sh", "-c", script], env=ENV, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:6] == ["mesh: 1", "10.0.0.1 somewhere", "pod-a", "/var/lib/wd", "read-only",
                         "cfg"]
    assert set(lines[6].split()) >= {"null", "zero", "urandom", "pts", "shm", "fd"}
    for path in (fresh, "/etc/written", "/run/ah-test", "/var/lib/wd"):
        assert not os.path.exists(path), path
    assert not (tmp_path / "cfg" / "x").exists()


def test_a_missing_bind_source_is_reported(scratch):
    spec = rootfs.RootSpec(scratch=scratch, binds=(rootfs.Bind("/no/such/source", "/x"),))
    with pytest.raises(rootfs.RootError, match="bind source /no/such/source: No such file"):
        rootfs.run(spec, ["true"], env=ENV)


def test_a_missing_program_is_not_found_inside_the_root(scratch):
    with pytest.raises(FileNotFoundError):
        rootfs.run(rootfs.RootSpec(scratch=scratch), ["no-such-program-here"], env=ENV)


def test_mounts_made_later_on_the_machine_reach_a_running_container(tmp_path, scratch):
    """A node's netns folder is a shared mount: a pod started after a node-level
    container bound it still shows up inside (HostToContainer propagation)."""
    shared = tmp_path / "netns"
    shared.mkdir()
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    subprocess.run(["mount", "--make-shared", str(shared)], check=True)
    source = tmp_path / "source"
    source.mkdir()
    (source / "hello").write_text("propagated\n")
    try:
        async def scenario() -> str:
            spec = rootfs.RootSpec(scratch=scratch,
                                   binds=(rootfs.Bind(str(shared), "/host/var/run/netns"),))
            proc = await rootfs.spawn(spec, ["sh", "-c", "read line; cat /host/var/run/netns/"
                                             "later/hello"], env=ENV,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            (shared / "later").mkdir()
            subprocess.run(["mount", "--bind", str(source), str(shared / "later")], check=True)
            out, _ = await proc.communicate(b"go\n")
            return out.decode()

        assert asyncio.run(scenario()) == "propagated\n"
    finally:
        unmount_under(shared)


CGROUP2 = cgroup2_mount(Path("/proc/self/mountinfo").read_text())


@pytest.mark.skipif(CGROUP2 is None, reason="no cgroup2 hierarchy on this machine")
def test_the_process_joins_its_cgroup_before_the_root_hides_the_machines(tmp_path,
                                                                         scratch):
    """A container's cgroup is joined first, at the machine's cgroupfs path: the
    program (and what it starts) is in it, although its root hides the machine's
    /sys/fs/cgroup behind an empty folder."""
    assert CGROUP2 is not None
    name = f"/{TOP}/unit-rootfs-{os.getpid()}"
    group = CGROUP2 / name.lstrip("/")
    group.mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    try:
        spec = rootfs.RootSpec(scratch=scratch, cgroup=str(group),
                               binds=(rootfs.Bind(str(tmp_path / "empty"), "/sys/fs/cgroup"),))
        r = rootfs.run(spec, ["sh", "-c", "ls -A /sys/fs/cgroup; sh -c 'cat /proc/self/cgroup'"],
                       env=ENV, timeout=30)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().splitlines()
        assert f"0::{name}" in lines  # the grandchild's
        assert not any(line.startswith("cgroup.") for line in lines)  # hidden in the root
        missing = rootfs.RootSpec(scratch=scratch, cgroup=str(group / "no-such"))
        with pytest.raises(rootfs.RootError, match=f"joining cgroup {group}/no-such: No such"):
            rootfs.run(missing, ["true"], env=ENV)
    finally:
        group.rmdir()
        with contextlib.suppress(OSError):
            group.parent.rmdir()  # the top folder, unless another cluster uses it
