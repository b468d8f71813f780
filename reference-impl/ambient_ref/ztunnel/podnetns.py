"""Finding a pod's network namespace on its node, the way istio-cni's node agent does.

A ztunnel must enter each enrolled pod's network namespace to bind its listeners
and install its rules.  Nothing in the Kubernetes API says where that namespace is,
and runtimes name it differently (containerd ``/var/run/netns/cni-<uuid>``, CRI-O,
the harness's local cluster), so the namespace is found from the node's processes:
the node's ``/proc`` is mounted at ``/host/proc`` (a ``hostPath`` volume, read-only),
every process's ``cgroup`` file names its pod (kubelet puts each pod's containers in
a cgroup whose name holds the pod UID, with the cgroupfs and the systemd driver
alike), and a process's ``ns/net`` is its network namespace.  This is istio-cni's
scan for pods it did not see created (istio/istio cni/pkg/nodeagent/podcgroupns.go,
podcgroupns_linux.go ``processEntry`` and ``GetPodUIDAndContainerID``): skip the
node's own namespace and namespaces already seen, match the pod UID, then check that
the namespace holds one of the pod's IPs before trusting it.

The namespace is then held open (``PodNetns``), so it stays valid while the ztunnel
serves the pod even if the process it was found through exits, and so its path
(``/proc/<ztunnel pid>/fd/<fd>``) means the same namespace to ``nsenter`` and to
``setns``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import capture

HOST_PROC = Path(os.environ.get("HOST_PROC", "/host/proc"))

_HEX = "[0-9a-fA-F]"
# ``pod<uid>`` between punctuation, the UID's dashes kept (cgroupfs) or turned into
# underscores (systemd: ``kubepods-burstable-pod<uid_with_underscores>.slice``); the
# pattern of istio-cni's podcgroupns_linux.go, which takes it from SPIRE.
POD_UID = re.compile(
    rf"[^\w]pod({_HEX}{{8}}[-_]?{_HEX}{{4}}[-_]?{_HEX}{{4}}[-_]?{_HEX}{{4}}[-_]?{_HEX}{{12}})"
    rf"(?=[^\w]|$)")


def pod_uid(cgroup_file: str) -> str | None:
    """The pod UID a ``/proc/<pid>/cgroup`` file names, in the API's form (dashes), or
    None for a process of no pod (the node's own, or a runtime's)."""
    for line in cgroup_file.splitlines():
        path = line.rpartition(":")[2]
        found = POD_UID.search(path)
        if found:
            uid = found.group(1).replace("_", "-").lower()
            if "-" not in uid:  # written without separators: put kubelet's back
                uid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
            return uid
    return None


def candidates(wanted: Collection[str], proc: Path = HOST_PROC) -> dict[str, list[Path]]:
    """For each wanted pod UID, the ``ns/net`` paths of its processes' namespaces (one
    per distinct namespace), the node's own namespace left out.  Blocking: reads
    ``proc``; call it from a thread."""
    try:
        node_ns = (proc / "1" / "ns" / "net").stat().st_ino
    except OSError:
        node_ns = None
    found: dict[str, list[Path]] = {}
    seen: set[int] = set()
    for entry in _pids(proc):
        net = entry / "ns" / "net"
        try:
            inode = net.stat().st_ino
            if inode == node_ns or inode in seen:
                continue
            uid = pod_uid((entry / "cgroup").read_text())
        except OSError:  # the process ended while it was looked at
            continue
        if uid in wanted:
            seen.add(inode)
            found.setdefault(uid, []).append(net)
    return found


def _pids(proc: Path) -> Iterable[Path]:
    try:
        return [entry for entry in proc.iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def addresses_in(ip_addr_json: str) -> set[str]:
    """The local addresses ``ip -j addr show`` lists."""
    try:
        links = json.loads(ip_addr_json or "[]")
    except ValueError:
        return set()
    return {a["local"] for link in links for a in link.get("addr_info") or ()
            if a.get("local")}


@dataclass
class PodNetns:
    """A pod's network namespace, held open by the ztunnel."""

    fd: int

    @classmethod
    def open(cls, path: Path) -> PodNetns:
        return cls(os.open(path, os.O_RDONLY | os.O_CLOEXEC))

    @property
    def path(self) -> Path:
        """A path to the held namespace that any process of this ztunnel's can open."""
        return Path(f"/proc/{os.getpid()}/fd/{self.fd}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def find(pods: Mapping[str, Collection[str]], proc: Path = HOST_PROC) -> dict[str, PodNetns]:
    """The network namespace of each pod (UID -> its IPs) that could be found, opened.

    A candidate counts only if it holds one of the pod's IPs (istio-cni's
    ``netnsContainsAnyPodIP``): a cgroup name alone could be a stale process's.  A pod
    not found yet (its first process not started) is simply absent: the caller tries
    again later.
    """
    if not pods:  # every pod of the node is served already: no scan of /proc
        return {}
    found = await asyncio.to_thread(candidates, set(pods), proc)
    held: dict[str, PodNetns] = {}
    for uid, paths in found.items():
        for path in paths:
            try:
                netns = PodNetns.open(path)
            except OSError:
                continue
            try:
                listed = await capture.run_in_pod(netns.path, "ip", "-j", "addr", "show")
            except (capture.CaptureError, OSError):
                listed = ""
            if addresses_in(listed) & set(pods[uid]):
                held[uid] = netns
                break
            netns.close()
    return held
