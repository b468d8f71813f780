"""Where a node agent keeps a pod's files, and how others enter its containers.

``<state>/nodes/<node>/pods/<uid>/`` holds a pod's logs, volumes, ``/etc`` files
and, per container, the pid of its running process (a pid of the node's own PID
namespace, read through the node's procfs, ``<state>/nodes/<node>/proc``) and its
scratch folder.  The
API server (``kubectl exec``), the provider's ``exec`` and exec probes enter a
container through that pid: its cgroup, mount, UTS and network namespaces and its
working directory, with its environment, as a runtime's exec does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from . import cgroups

# A node's procfs (its PID namespace's, mounted by pidinit.py) in ``<state>/nodes/<node>``
NODE_PROC = "proc"


def pod_dir(node_state: Path, uid: str) -> Path:
    """``node_state``: the node agent's folder, ``<state>/nodes/<node>``."""
    return node_state / "pods" / uid


def container_dir(pod: Path, container: str) -> Path:
    return pod / "containers" / container


def pid_file(pod: Path, container: str) -> Path:
    return container_dir(pod, container) / "pid"


def write_pid(pod: Path, container: str, pid: int) -> None:
    path = pid_file(pod, container)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def clear_pid(pod: Path, container: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_file(pod, container).unlink()


def running_pid(pod: Path, container: str, proc: str = "/proc") -> int | None:
    """The pid of the container's process, if it runs (and is the one recorded): a
    pid of the node's PID namespace, whose procfs is ``proc``."""
    try:
        pid = int(pid_file(pod, container).read_text())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"{proc}/{pid}") else None


# Joins the cgroup directory given as $0, then execs the rest (nsenter ...): the
# shell's own builtin echo writes, so the shell moves and what it execs stays.
_JOIN_THEN_EXEC = 'echo 0 > "$0/cgroup.procs" && exec "$@"'


def enter_argv(pid: int, proc: str = "/proc") -> list[str]:
    """The argv prefix that runs a command in the namespaces, root and working
    directory of process ``pid`` (a pid of the procfs at ``proc``: the node's; the
    command is looked up in the PATH of the environment it is given, inside that
    root) and, if ``pid`` is in a container's cgroup, in that cgroup too (kubelet's
    exec runs there; it ends with the container).  nsenter cannot join a cgroup, so
    a shell of this machine does it first.

    The namespaces are named by their files in ``proc``, so a pid of a node's own
    PID namespace works from any namespace; the command joins the process's PID
    namespace too (its pod's, whose procfs its root shows at ``/proc``), so nsenter
    forks: whoever stops the command early stops its process group (start it in a
    session of its own)."""
    base = f"{proc}/{pid}"
    argv = [shutil.which("nsenter") or "nsenter", f"--mount={base}/ns/mnt",
            f"--uts={base}/ns/uts", f"--net={base}/ns/net", f"--pid={base}/ns/pid",
            f"--wd={base}/cwd", *_same_user(base), "--"]
    cgroup = cgroups.container_of(pid, proc)
    if cgroup is None:
        return argv
    return [shutil.which("sh") or "/bin/sh", "-c", _JOIN_THEN_EXEC, str(cgroup), *argv]


# The node agent's own marker in a container's environment (perf/ finds a pod's
# processes by it); a command exec'd into the container does not carry it.
AGENT_MARKER = "AH_POD_NAME"


def environ(pid: int, proc: str = "/proc") -> dict[str, str]:
    """The environment of process ``pid`` (a container's, read in the node's procfs
    ``proc``), for commands run in it."""
    try:
        raw = Path(f"{proc}/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs if k != AGENT_MARKER}


def exec_entry(cluster_state: Path, pod: dict[str, Any], container: str
               ) -> tuple[list[str], dict[str, str]] | None:
    """The argv prefix and environment that run a command in ``container`` of
    ``pod`` (None if it is not running on a node of this cluster)."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return None
    folder = pod_dir(cluster_state / "nodes" / node, pod["metadata"]["uid"])
    proc = str(cluster_state / "nodes" / node / NODE_PROC)
    pid = running_pid(folder, container, proc)
    if pid is None:
        return None
    return enter_argv(pid, proc), environ(pid, proc)


def _same_user(base: str) -> list[str]:
    """nsenter options giving the command the container process's user and group (the
    kubelet's exec runs as the container's user); none for root or if unreadable."""
    ids: dict[str, str] = {}
    try:
        with open(f"{base}/status") as status:
            for line in status:
                if line.startswith(("Uid:", "Gid:")):
                    ids[line[:3]] = line.split()[1]  # the real id
    except OSError:
        return []
    if ids.get("Uid", "0") == "0" and ids.get("Gid", "0") == "0":
        return []
    return [f"--setuid={ids.get('Uid', '0')}", f"--setgid={ids.get('Gid', '0')}"]
