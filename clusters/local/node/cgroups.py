"""Pod cgroups, named as kubelet names them, so ``/proc/<pid>/cgroup`` says which pod
and container a process belongs to.

Node agents find pods from processes this way: istio-cni's node agent reads
``/proc/<pid>/cgroup`` and takes the pod UID and container ID from the path (for
pods that existed before their namespace was enrolled: istio/istio
cni/pkg/nodeagent/podcgroupns_linux.go, regexes taken from SPIRE), and SPIRE's k8s
workload attestor matches the container ID against the ``containerID`` of the
pod's status (spiffe/spire pkg/agent/plugin/workloadattestor/k8s/k8s.go).  The
layout is kubelet's with the cgroupfs driver, under a root of the node's own (what
kubelet's ``--cgroup-root`` sets), so clusters and nodes on one machine never share
a directory::

    /ambient-harness/<cluster>/<node>/kubepods[/burstable|/besteffort]/pod<uid>/<container-id>

Only the cgroup2 (unified) hierarchy is used, found in /proc/self/mountinfo: on a
hybrid machine it is /sys/fs/cgroup/unified, and the v1 controller hierarchies are
left alone (their paths name no pod, so a parser skips them).  No controller is
enabled and nothing is limited: these cgroups only name processes.  A process
joins its container's cgroup from the child, before exec and before its root is
set up (``rootfs.RootSpec.cgroup``), so all it starts inherits it; a command
exec'd into a running container joins it too (``podfiles.enter_argv``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from pathlib import Path

log = logging.getLogger("node.cgroups")

TOP = "ambient-harness"  # the directory every cluster's cgroups live under
QOS_DIRS = {"Guaranteed": "", "Burstable": "burstable", "BestEffort": "besteffort"}


class CgroupError(Exception):
    pass


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def cgroup2_mount(mountinfo: str) -> Path | None:
    """The mount point of the cgroup2 hierarchy in a mountinfo text (proc(5): the
    filesystem type follows the ``-`` separator), or None without one."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) > sep + 1 and fields[sep + 1] == "cgroup2" and len(fields) > 4:
            return Path(_unescape(fields[4]))
    return None


def container_of(pid: int, proc: str = "/proc") -> Path | None:
    """The cgroup2 directory of process ``pid`` (a pid of the procfs at ``proc``: a
    node's) if it is a local cluster's container cgroup (under
    ``/ambient-harness/``), else None: what a command exec'd into that container
    joins, as runc's exec joins the container's cgroup."""
    try:
        mount = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
        text = Path(f"{proc}/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            path = line[3:]
            if mount is not None and path.startswith(f"/{TOP}/"):
                return mount / path.lstrip("/")
    return None


def node_root(cluster: str, node: str) -> str:
    """The node's cgroup root, as a cgroup path (what kubelet's --cgroup-root takes)."""
    return f"/{TOP}/{cluster}/{node}"


def pod_path(root: str, uid: str, qos_class: str) -> str:
    """kubelet's cgroupfs name of a pod's cgroup: Guaranteed pods directly under
    kubepods, the others under their QoS class."""
    qos = QOS_DIRS.get(qos_class, "besteffort")
    return "/".join(p for p in (root.rstrip("/"), "kubepods", qos, f"pod{uid}") if p)


class CgroupTree:
    """The node's cgroups: makes pod and container directories, records the node's
    root in the cluster's registry before making anything, and removes them."""

    def __init__(self, mount: Path, root: str, registry: Path) -> None:
        self.mount = mount
        self.root = root
        self.registry = registry
        self.base = self.dir(root)
        self._recorded = False

    @classmethod
    def find(cls, root: str, registry: Path) -> CgroupTree | None:
        """None, with a warning saying why, where no writable cgroup2 hierarchy is
        mounted (pods then run without cgroups of their own)."""
        try:
            mount = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
        except OSError:
            mount = None
        if mount is None:
            log.warning("no cgroup2 hierarchy in /proc/self/mountinfo: pods get no cgroups "
                        "(mount one, e.g. at /sys/fs/cgroup/unified, to have them)")
            return None
        if not os.access(mount, os.W_OK):
            log.warning("the cgroup2 hierarchy at %s is not writable: pods get no cgroups",
                        mount)
            return None
        tree = cls(mount, root, registry)
        try:
            tree._make(root)  # the node's root now: a machine that refuses it says so here
        except CgroupError as exc:
            log.warning("%s: pods get no cgroups", exc)
            return None
        return tree

    def dir(self, cgroup_path: str) -> Path:
        return self.mount / cgroup_path.lstrip("/")

    def make_pod(self, uid: str, qos_class: str) -> str:
        """Create the pod's cgroup; returns its cgroup path."""
        path = pod_path(self.root, uid, qos_class)
        self._make(path)
        return path

    def make_container(self, pod: str, container_id: str) -> str:
        path = f"{pod}/{container_id}"
        self._make(path)
        return path

    def _make(self, path: str) -> None:
        if not self._recorded:
            with open(self.registry, "a") as f:
                f.write(f"{self.base}\n")
            self._recorded = True
        for attempt in range(3):
            try:
                self.dir(path).mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                # another cluster's cleanup removed the shared top directory between
                # our mkdirs: make the chain again
                if attempt == 2:
                    raise CgroupError(f"cannot create cgroup {path}: its parent keeps "
                                      "disappearing") from None
            except OSError as exc:
                raise CgroupError(f"cannot create cgroup {path}: {exc}") from None

    def remove(self, path: str) -> None:
        """Kill what remains in ``path`` and below, then remove the directories."""
        remove_tree(self.dir(path))

    def remove_all(self) -> None:
        remove_tree(self.base)
        remove_empty_parents(self.base)


def _populated(d: Path) -> bool:
    try:
        for line in (d / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() != "0"
    except OSError:
        return False
    return bool(_procs(d))


def _procs(d: Path) -> list[int]:
    try:
        return [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _wait_unpopulated(d: Path, timeout: float) -> bool:
    """Until no process is left in ``d``'s subtree.  A change of cgroup.events wakes a
    poll() for POLLPRI (Documentation/admin-guide/cgroup-v2.rst, "populated")."""
    deadline = time.monotonic() + timeout
    try:
        fd = os.open(d / "cgroup.events", os.O_RDONLY)
    except OSError:
        return not _populated(d)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        while _populated(d):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Bounded wake-ups too: a notification between the check and the poll is
            # otherwise missed until the next change.
            poller.poll(min(remaining, 0.1) * 1000)
        return True
    finally:
        os.close(fd)


def remove_tree(d: Path, timeout: float = 10) -> None:
    """Kill every process in ``d``'s subtree (cgroup.kill on kernels >= 5.14, else
    SIGKILL to each listed process until none is left), then rmdir it bottom up."""
    if not d.is_dir():
        return
    kill = d / "cgroup.kill"
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1")
    deadline = time.monotonic() + timeout
    while _populated(d) and time.monotonic() < deadline:
        if not kill.exists():
            for sub, _, _ in os.walk(d):
                for pid in _procs(Path(sub)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        _wait_unpopulated(d, min(1.0, max(0.0, deadline - time.monotonic())))
    for sub, _, _ in sorted(os.walk(d), key=lambda w: w[0].count("/"), reverse=True):
        try:
            os.rmdir(sub)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cgroup %s not removed: %s", sub, exc)


def remove_empty_parents(base: Path) -> None:
    """The cluster's and the top directory, if nothing else lives there (rmdir of a
    cgroup fails while it has children)."""
    for parent in (base.parent, base.parent.parent):
        if TOP not in (parent.name, parent.parent.name):
            return
        try:
            parent.rmdir()
        except OSError:
            return


def remove_recorded(registry: Path) -> list[Path]:
    """Everything under each node root a cluster recorded (what ``down`` and
    ``cleanup`` call, also after a SIGKILL of everything); returns what was there."""
    try:
        bases = [Path(line) for line in registry.read_text().splitlines() if line.strip()]
    except OSError:
        return []
    removed = []
    for base in dict.fromkeys(bases):
        if TOP not in base.parts:
            log.warning("not removing %s: not a local cluster's cgroup", base)
            continue
        if base.is_dir():
            remove_tree(base)
            removed.append(base)
        remove_empty_parents(base)
    return removed
