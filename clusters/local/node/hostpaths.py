"""Node-private host paths: what ``hostPath`` volumes and node-level programs see.

Every node of a real cluster is its own machine, so ``/etc/cni/net.d``,
``/opt/cni/bin`` or ``/var/run/istio-cni`` of node n1 and of node n2 are different
folders.  Here each node has a root of its own, ``<state>/nodes/<node>/root/``, and
a ``hostPath`` volume's path is read in it: nothing is written to this machine's
``/etc``, ``/opt`` or ``/var/run``, and the files of n1 are not n2's.

Exceptions resolve to kernel views, as they would on a node: ``/proc`` is the procfs of
the node's own PID namespace (``pidinit.py``; istio-cni scans ``/host/proc`` and takes
the node's network namespace from ``/host/proc/1/ns/net``: istio/istio
cni/pkg/nodeagent/podcgroupns.go, podcgroupns_linux.go), ``/sys``, ``/dev`` and
``/lib/modules`` (read-only) are this machine's. ``/var/run/netns`` (``/run/netns``) is
the node's own folder holding a bind of the network namespace of each pod of this node,
and only those: a node-level component (istio-cni opening ``/host`` + the pod's netns
path, cni/pkg/nodeagent/pod_cache.go) finds its node's pods there, and a bug that
reaches for another node's pod fails as it would on a real cluster. The folder is a
shared mount, so a pod started later appears in containers that mounted it earlier (as
with ``mountPropagation: HostToContainer``).

``NodeRoot.view()`` gives "the node's view" for programs that run on the node
itself rather than in a pod (CNI plugins, which read ``/etc/cni/net.d`` and talk to
``/var/run/istio-cni/pluginevent.sock`` by host path): a root (``rootfs.RootSpec``)
where the node's paths appear at their host paths.

Paths are resolved inside the node's root the way a chroot would (``/var/run`` is a
link to ``/run`` there, as on Debian; a link a pod made never leads out of it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import rootfs

# host path -> (path on this machine, read-only): the node's kernel views
KERNEL_VIEWS = {"/proc": ("/proc", False), "/sys": ("/sys", False), "/dev": ("/dev", False),
                "/lib/modules": ("/lib/modules", True)}
NETNS = "/run/netns"
SKELETON = ("etc", "opt", "run", "tmp", "var/lib", "var/log", "usr/local")
# Folders every node view shows from the node's root, hostPath volume or not: where
# a container runtime looks for CNI configuration, plugins and their state, and
# the node's /run (/var/run): what a program on the node leaves there (a socket, a
# record) is the node's, found by later programs and hostPath pods of that node
# whether or not a volume used the path before.
NODE_PATHS = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/run")
TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
         "CharDevice", "BlockDevice")


class HostPathError(Exception):
    """A hostPath volume that cannot be mounted; the message is kubelet's kind."""


@dataclass(frozen=True)
class Source:
    """What a host path is on this node: a path of this machine to bind, and the
    kernel views beneath it (each a path relative to it and its machine source)."""

    path: str
    readonly: bool = False
    beneath: tuple[tuple[str, str, bool], ...] = ()

    def binds(self, target: str, readonly: bool = False) -> list[rootfs.Bind]:
        out = [rootfs.Bind(self.path, target, readonly or self.readonly)]
        out += [rootfs.Bind(src, os.path.join(target, rel), readonly or ro)
                for rel, src, ro in self.beneath]
        return out


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    return ("Directory" if stat.S_ISDIR(mode) else "File" if stat.S_ISREG(mode)
            else "Socket" if stat.S_ISSOCK(mode) else "CharDevice" if stat.S_ISCHR(mode)
            else "BlockDevice" if stat.S_ISBLK(mode) else "other")


class NodeRoot:
    def __init__(self, path: Path, proc: str = "/proc") -> None:
        """``proc``: the node's procfs on this machine (its PID namespace's), shown
        at the node's ``/proc``."""
        self.path = path
        self.proc = proc
        self.kernel_views = {**KERNEL_VIEWS, "/proc": (proc, False)}
        self.netns_dir = path / NETNS.lstrip("/")
        self._used = path.parent / "hostpaths"  # host paths a volume used, for view()
        # where a node view's writable layer hangs (in each view's own namespace only)
        self.scratch = path.parent / "view-scratch"

    # -- life cycle -------------------------------------------------------------------

    def create(self) -> None:
        """The skeleton and the node's netns folder (a shared mount point)."""
        for d in SKELETON:
            (self.path / d).mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(exist_ok=True)
        link = self.path / "var" / "run"
        if not link.is_symlink():
            link.symlink_to("../run")
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(self.netns_dir):
            rootfs.mount(str(self.netns_dir), str(self.netns_dir), None, rootfs.MS_BIND)
            rootfs.mount(None, str(self.netns_dir), None, rootfs.MS_SHARED)

    def destroy(self) -> None:
        """Undo every mount under the node's folder (pods' netns binds included)."""
        unmount_under(self.path)

    def add_pod_netns(self, name: str, source: Path) -> None:
        """Show pod network namespace ``source`` (``/run/netns/<name>``) in this node."""
        target = self.netns_dir / name
        target.touch()
        rootfs.mount(str(source), str(target), None, rootfs.MS_BIND)

    def remove_pod_netns(self, name: str) -> None:
        """Before the namespace is deleted: a bind left here would keep it alive."""
        target = self.netns_dir / name
        if os.path.ismount(target):
            rootfs.detach(str(target))
        with contextlib.suppress(FileNotFoundError):
            target.unlink()

    # -- resolving host paths -----------------------------------------------------------

    def canonical(self, host_path: str) -> str:
        """``host_path`` with links inside the node's root followed, as an absolute
        path of the node (``/var/run/x`` -> ``/run/x``); never leaves the root."""
        if not host_path.startswith("/"):
            raise HostPathError(f"hostPath {host_path!r} must be absolute")
        done: list[str] = []
        todo = [p for p in host_path.split("/") if p not in ("", ".")]
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            here = "/" + "/".join([*done, part])
            if _view_of(here) is not None:  # the machine's: no link of the node applies
                done.append(part)
                continue
            real = self.path / here.lstrip("/")
            if real.is_symlink():
                hops += 1
                if hops > 40:
                    raise HostPathError(f"hostPath {host_path}: too many levels of links")
                target = os.readlink(real)
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                if target.startswith("/"):
                    done = []
                continue
            done.append(part)
        return "/" + "/".join(done)

    def source(self, host_path: str, kind: str = "") -> Source:
        """The mount source of a ``hostPath`` volume on this node, after kubelet's
        type check; ``...OrCreate`` (and the empty type, as containerd does) create
        what is missing in the node's root, never on this machine."""
        if kind not in TYPES:
            raise HostPathError(f"hostPath type {kind!r} of {host_path} is not one of "
                                f"{', '.join(repr(t) for t in TYPES)}")
        path = self.canonical(host_path)
        view = _view_of(path, self.kernel_views)
        if view is not None:
            machine, readonly = view
            _check_type(host_path, machine, kind, machine_path=True)
            return Source(machine, readonly)
        real = self.path / path.lstrip("/")
        if not os.path.lexists(real):
            if kind in ("", "DirectoryOrCreate"):
                real.mkdir(mode=0o755, parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                if not real.parent.is_dir():
                    raise HostPathError(f"hostPath type check failed: {host_path}: its parent "
                                        "directory does not exist on the node (FileOrCreate "
                                        "makes the file, not its directory)")
                real.touch(mode=0o644)
        _check_type(host_path, str(real), kind, machine_path=False)
        self._record(path)
        beneath = tuple((os.path.relpath(p, path), machine, ro)
                        for p, (machine, ro) in self.kernel_views.items()
                        if path == "/" or p.startswith(path + "/"))
        return Source(str(real), False, beneath)

    def _record(self, path: str) -> None:
        if path not in self.used():
            with open(self._used, "a") as f:
                f.write(path + "\n")

    def used(self) -> list[str]:
        try:
            return self._used.read_text().split()
        except FileNotFoundError:
            return []

    # -- the node's view --------------------------------------------------------------

    def view(self, extra: tuple[str, ...] = (), *, scratch: str | None = None,
             netns: str | None = None, hostname: str | None = None) -> rootfs.RootSpec:
        """A root where this node's paths appear at their host paths: the folders
        of ``NODE_PATHS`` (``/run`` included), every path a hostPath volume of
        this node used, and ``extra`` (created in the node's root if missing),
        over this machine's root; ``/run/netns`` is the node's (its pods only).
        Writes there land in the node's folders; elsewhere they stay in the view
        (gone when its processes exit).  ``scratch``: see ``rootfs.RootSpec`` (default: the
        node's own, usable by any number of views at once); ``netns`` and
        ``hostname`` as there (default: the caller's network, the node's
        namespace when called from its agent)."""
        wanted = sorted({self.canonical(p) for p in (*NODE_PATHS, NETNS, *self.used(), *extra)},
                        key=lambda p: (p.count("/"), p))
        binds: list[rootfs.Bind] = []
        covered: list[str] = []
        for path in wanted:
            if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
                continue
            covered.append(path)
            binds += self.source(path, "" if _view_of(path) is None else "Directory").binds(path)
        return rootfs.RootSpec(scratch=scratch or str(self.scratch), binds=tuple(binds),
                               netns=netns, hostname=hostname, proc=self.proc)


def _view_of(path: str, views: dict[str, tuple[str, bool]] = KERNEL_VIEWS
             ) -> tuple[str, bool] | None:
    """The machine path (and read-only flag) for a node path under a kernel view."""
    for prefix, (machine, readonly) in views.items():
        if path == prefix or path.startswith(prefix + "/"):
            return machine + path[len(prefix):], readonly
    return None


def _check_type(host_path: str, real: str, kind: str, machine_path: bool) -> None:
    try:
        st = os.stat(real)
    except OSError:
        where = "this machine" if machine_path else "the node"
        raise HostPathError(f"hostPath type check failed: {host_path} does not exist on "
                            f"{where}") from None
    want = {"DirectoryOrCreate": "Directory", "FileOrCreate": "File"}.get(kind, kind)
    if want and _kind(st) != want:
        raise HostPathError(f"hostPath type check failed: {host_path} is not a {_NAMES[want]}")


_NAMES = {"Directory": "directory", "File": "file", "Socket": "socket",
          "CharDevice": "character device", "BlockDevice": "block device"}


def unmount_under(folder: Path) -> int:
    """Detach every mount at or under ``folder`` in this mount namespace, deepest
    first (what a killed node agent left: its netns folder, pods' netns binds)."""
    prefix = str(folder.resolve() if folder.exists() else folder)
    points = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        rootfs.detach(point)
    return len(points)
