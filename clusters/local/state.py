"""Where a local cluster keeps its files, and how a dead run's leftovers are found.

Everything a cluster creates on disk lives in one folder per cluster name, with
the process ids of what it started, so ``down`` and ``cleanup`` know exactly
what to remove, also after the harness itself was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PID_FILE = "apiserver.pid"
KUBECONFIG = "kubeconfig"
LOG_FILE = "apiserver.log"
# Written last by the daemon, once the API answers: the folder is a live cluster.
READY_FILE = "ready"
# The node agents' cgroup roots, each written before it is made.
CGROUP_REGISTRY = "cgroups"


def runtime_root() -> Path:
    override = os.environ.get("AMBIENT_HARNESS_STATE")
    if override:
        return Path(override)
    if os.geteuid() == 0 and Path("/run").is_dir():
        return Path("/run/ambient-harness")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "ambient-harness"
    return Path(f"/tmp/ambient-harness-{os.geteuid()}")


@dataclass(frozen=True)
class ClusterDir:
    path: Path

    @classmethod
    def for_name(cls, name: str, root: Path | None = None) -> ClusterDir:
        return cls((root or runtime_root()) / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kubeconfig(self) -> Path:
        return self.path / KUBECONFIG

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    def pid(self) -> int | None:
        try:
            return int((self.path / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid, self.path)

    def being_made(self, within: float = 60) -> bool:
        """No daemon recorded yet, and the folder is younger than ``within`` seconds: an
        ``up`` in progress, not a leftover (a run killed before its daemon started
        leaves a folder that ages past it)."""
        if self.pid() is not None:
            return False
        try:
            return time.time() - self.path.stat().st_mtime < within
        except OSError:
            return False

    def stop(self, timeout: float = 10) -> bool:
        """SIGTERM the daemon, SIGKILL it after ``timeout``; True if one was running."""
        pid = self.pid()
        if pid is None or not pid_alive(pid, self.path):
            return False
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
        return True

    def remove(self) -> None:
        """Everything the cluster made: recorded cgroups (and the processes in them),
        the mounts in its nodes' folders, recorded namespaces (and the links and
        processes in them), then its folder."""
        from .network.topology import destroy_recorded
        from .node.cgroups import remove_recorded
        from .nodes import release_node_roots

        remove_recorded(self.path / CGROUP_REGISTRY)
        release_node_roots(self.path)
        if (self.path / "netns").exists():
            destroy_recorded(self.path / "netns")
        shutil.rmtree(self.path, ignore_errors=True)


def pid_alive(pid: int, marker: Path | None = None) -> bool:
    """Is ``pid`` running, and (with ``marker``) is it ours, not a recycled pid?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if marker is None:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        return False
    return str(marker).encode() in cmdline


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit.  A pidfd tells us the moment it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            if _zombie_or_gone(pid):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # A child of ours stays a zombie (the pidfd then reports readable); reap it.
            if poller.poll(min(remaining, 0.2) * 1000):
                _reap(pid)
                return True
    finally:
        os.close(fd)


def _zombie_or_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z" and (_reap(pid) or True)


def _reap(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True


def leftovers(root: Path | None = None) -> list[ClusterDir]:
    """Cluster folders under the root (alive or dead)."""
    base = root or runtime_root()
    if not base.is_dir():
        return []
    return [ClusterDir(p) for p in sorted(base.iterdir()) if p.is_dir()]
