"""Private roots: run a program with its own view of this machine's filesystem.

A container runtime gives each container a root of its own: the image's files,
the pod's volumes at their mount paths, a private ``/run`` and ``/tmp``, kernel
file systems.  The local cluster has no images, so a root here is built from this
machine's own root: an overlay whose lower layer is ``/`` and whose upper layer is
a tmpfs private to the new mount namespace.  Mount points for volumes (at any
path: ``/etc/istio/config``, ``/host/opt/cni/bin``, ``/var/run/ztunnel``) are made
in that upper layer, so nothing is created on the machine's own filesystem, and
everything (upper layer included) vanishes with the namespace when its last
process exits: there is nothing to clean up.

The whole setup is a handful of system calls made in the child between fork and
exec (``preexec_fn``), so a container costs no helper process:

0. join the container's cgroup, if the spec names one: first, while the machine's
   cgroup file system is reachable at its own path and before anything the
   runtime does for the container, so all of it, and all the program starts,
   is accounted there (runc too moves its init process into the container's
   cgroup before it sets the container up);
1. ``unshare`` a mount namespace (and a UTS one for a hostname); make every mount
   a slave, so mounts made later on the machine (a new pod's ``/run/netns/pod-*``)
   still propagate in, and none made here leak out;
2. join the pod's network namespace (``setns``);
3. mount a tmpfs on ``scratch`` and the overlay on ``scratch/root``;
4. ``pivot_root`` into it with the old root at ``/.ah-host``, mount ``/proc`` (a
   procfs of the pod's PID namespace, which the process was forked into: see
   ``RootSpec.pid_namespace``; or, for a ``hostPID`` pod or a node's own program,
   the node's procfs, ``RootSpec.proc``), a fresh ``/sys`` (showing the joined
   network namespace, as ``ip netns exec`` does) with the machine's cgroup tree, a
   ``/dev`` tmpfs with the usual device nodes, tmpfs ``/run``, ``/tmp``,
   ``/dev/shm``; then each :class:`Bind` with its source read through ``/.ah-host``,
   its target resolved inside the new root (so ``/var/run -> /run`` and other
   absolute symlinks resolve in the root, never on the machine);
5. detach the old root, set the hostname, change to the working directory.

The program is then exec'd by ``subprocess``, looked up through the ``PATH`` of
the environment given, inside the new root.

Interface (also used to run CNI plugins in a node's view, see ``hostpaths.py``):
:class:`RootSpec` and :class:`Bind` describe a root; :func:`spawn` starts a
process in one (asyncio; the fork happens on a thread of its own, so the event
loop is not held while the child sets the root up); :func:`run` runs one to
completion (blocking); :func:`enter` does the setup in the calling process (for
a ``preexec_fn`` of one's own); :func:`spawn_init` starts the PID 1 of a new PID
namespace.  The caller must be root (CAP_SYS_ADMIN).

Since the lower layer is the machine's live root, a file created or removed on
the machine after a container looked it up may be seen late (overlayfs caches
lookups); anything a program must see live is bound explicitly (volumes, the
project and the Python installation for the catalog's programs).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import signal
import stat
import subprocess
import termios
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

HOST = "/.ah-host"  # where the machine's root stays while the container's is set up

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_SLAVE, MS_SHARED = 1 << 19, 1 << 20
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
# pivot_root(2) has no libc wrapper: its system call number, per architecture,
# looked up here rather than in the forked child
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217,
               "armv7l": 218}.get(platform.machine())

# Device nodes a container's /dev has (the set OCI runtimes create), bound from the
# machine's /dev; the rest of /dev is a tmpfs of the container's own.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}

_libc = ctypes.CDLL(None, use_errno=True)


class RootError(Exception):
    """The root could not be set up; the message names the step and the path."""


@dataclass(frozen=True)
class Bind:
    """A recursive bind mount of ``source`` (a path on this machine) at ``target``
    (an absolute path inside the root; made if missing, as a directory or an empty
    file after the source's kind)."""

    source: str
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class RunAs:
    """The user a container's process runs as (``runAsUser``/``runAsGroup`` and the
    pod's ``supplementalGroups``), taken on last, after the root is set up."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class RootSpec:
    """What a private root holds, besides the machine's root read through the overlay.

    ``scratch``: an existing directory of the caller's (e.g. in the pod's folder)
    that no bind source lies under; a tmpfs holding the overlay's writable layer is
    mounted on it, in the new mount namespace only.
    """

    scratch: str
    binds: tuple[Bind, ...] = ()
    netns: str | None = None     # a network namespace file to join; None: the caller's
    hostname: str | None = None  # own UTS namespace with this name; None: the caller's
    workdir: str = "/"
    cgroup: str | None = None    # a cgroup2 directory of this machine to join; None: stay
    # the procfs shown at /proc: the node's (``pidinit.py``), whose PID namespace the
    # process is in; "/proc" is the caller's own.  Unused with a pid_namespace.
    proc: str = "/proc"
    # a pidfd of the process whose PID namespace the process joins (its pod's PID 1,
    # ``pidns.py``); its /proc is then a procfs of that namespace.  None: the caller's
    pid_namespace: int | None = None
    user: RunAs | None = None    # None: root, the user of every image here
    # stdin is a terminal to make the process's controlling one (a container's tty)
    controlling_terminal: bool = False


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise RootError(f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2); raises RootError naming what failed."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {source or fstype} on {target}")


def detach(target: str) -> None:
    """umount2(2) with MNT_DETACH; a path that is no mount point is left alone."""
    _libc.umount2(_b(target), MNT_DETACH)


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _escape(path: str) -> str:
    """A path inside overlayfs' option string (its separators escaped)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _pivot_root(new_root: str, put_old: str) -> None:
    if _PIVOT_ROOT is None:
        raise RootError("pivot_root: system call number unknown on this architecture")
    _check(_libc.syscall(ctypes.c_long(_PIVOT_ROOT), _b(new_root), _b(put_old)),
           f"pivot_root into {new_root}")


def _mount_point(target: str, directory: bool) -> None:
    """Make ``target`` (inside the root) a directory or a file to mount on."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode) and not directory:
        # e.g. /etc/resolv.conf -> ../run/...: the container gets a file of its own there
        os.unlink(target)
        st = None
    if directory:
        if st is None or not stat.S_ISDIR(os.stat(target).st_mode):
            try:
                os.makedirs(target, exist_ok=True)
            except OSError as exc:
                raise RootError(f"mount point {target}: {exc.strerror}") from None
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise RootError(f"mount point {target} is a directory, but its source is a file")
    if st is None:
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as exc:
            raise RootError(f"mount point {target}: {exc.strerror}") from None


def _bind(source: str, target: str, readonly: bool = False) -> None:
    try:
        directory = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as exc:
        raise RootError(f"bind source {source.removeprefix(HOST)}: {exc.strerror}") from None
    _mount_point(target, directory)
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _tmpfs(target: str, mode: int, flags: int = MS_NOSUID | MS_NODEV) -> None:
    _mount_point(target, True)
    mount("tmpfs", target, "tmpfs", flags, f"mode={mode:o}")


def _base_layout(proc: str | None = "/proc") -> None:
    """/proc (the procfs at ``proc`` on the machine; None: a procfs of the process's
    own PID namespace), /sys, /dev, /run, /tmp of a container (the old root is at
    HOST)."""
    if proc is None:
        _mount_point("/proc", True)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    else:
        _bind(HOST + os.path.normpath(proc), "/proc")
    _mount_point("/sys", True)
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir(HOST + "/sys/fs/cgroup"):
        _bind(HOST + "/sys/fs/cgroup", "/sys/fs/cgroup")
    _tmpfs("/dev", 0o755, MS_NOSUID)
    for name in DEVICES:
        if os.path.exists(f"{HOST}/dev/{name}"):
            _bind(f"{HOST}/dev/{name}", f"/dev/{name}")
    if os.path.isdir(HOST + "/dev/pts"):
        _bind(HOST + "/dev/pts", "/dev/pts")
    _tmpfs("/dev/shm", 0o1777)
    for name, dest in DEV_LINKS.items():
        os.symlink(dest, f"/dev/{name}")
    _tmpfs("/run", 0o755)
    os.mkdir("/run/lock", 0o1777)
    _tmpfs("/tmp", 0o1777)


def join_cgroup(directory: str) -> None:
    """Move the calling process into the cgroup at ``directory`` (a cgroup2
    directory of this machine): writing 0 to its cgroup.procs moves the writer."""
    try:
        fd = os.open(os.path.join(directory, "cgroup.procs"), os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as exc:
        raise RootError(f"joining cgroup {directory}: {exc.strerror}") from None


def enter(spec: RootSpec) -> None:
    """Put the calling process into the root ``spec`` describes (its cgroup; mount,
    UTS and network namespaces).  Irreversible: call it in a child before exec (see
    :func:`preexec`), never in a process that goes on doing other work."""
    if spec.cgroup is not None:
        join_cgroup(spec.cgroup)
    netns_fd = os.open(spec.netns, os.O_RDONLY) if spec.netns else None
    flags = CLONE_NEWNS | (CLONE_NEWUTS if spec.hostname is not None else 0)
    _check(_libc.unshare(flags), "unshare")
    mount(None, "/", None, MS_REC | MS_SLAVE)
    if netns_fd is not None:
        _check(_libc.setns(netns_fd, CLONE_NEWNET), f"setns {spec.netns}")
        os.close(netns_fd)
    mount("tmpfs", spec.scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
    upper, work, root = (os.path.join(spec.scratch, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.mkdir(d, 0o755)
    mount("overlay", root, "overlay", 0,
           f"lowerdir=/,upperdir={_escape(upper)},workdir={_escape(work)}")
    os.mkdir(root + HOST, 0o700)
    os.chdir(root)
    _pivot_root(".", HOST.lstrip("/"))
    os.chdir("/")
    _base_layout(None if spec.pid_namespace is not None else spec.proc)
    for b in spec.binds:
        if not os.path.isabs(b.source) or not os.path.isabs(b.target):
            raise RootError(f"bind {b.source} -> {b.target}: both paths must be absolute")
        _bind(HOST + os.path.normpath(b.source), os.path.normpath(b.target), b.readonly)
    _check(_libc.umount2(_b(HOST), MNT_DETACH), f"detach {HOST}")
    os.rmdir(HOST)
    if spec.hostname is not None:
        name = spec.hostname.encode()
        _check(_libc.sethostname(name, len(name)), f"sethostname {spec.hostname}")
    try:
        os.makedirs(spec.workdir, exist_ok=True)
        os.chdir(spec.workdir)
    except OSError as exc:
        raise RootError(f"working directory {spec.workdir}: {exc.strerror}") from None
    if spec.controlling_terminal:  # the session leader (start_new_session) takes it
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if spec.user is not None:
        os.setgroups(list(spec.user.groups))
        os.setgid(spec.user.gid)
        os.setuid(spec.user.uid)


def preexec(spec: RootSpec, report_fd: int | None = None,
            die_with_parent: bool = True) -> Callable[[], None]:
    """A ``preexec_fn`` entering ``spec``; a failure's message goes to ``report_fd``.

    It runs in the forked child of a possibly threaded parent, so it imports
    nothing, logs nothing and takes no lock: only system calls.
    """
    def child() -> None:
        if die_with_parent:  # a container must not outlive its node agent
            _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        try:
            enter(spec)
        except (RootError, OSError) as exc:
            if report_fd is not None:
                os.write(report_fd, str(exc).encode(errors="replace")[:4000])
            raise
        if die_with_parent and spec.user is not None:  # a change of user cleared it
            _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    return child


def _report_pipe() -> tuple[int, int]:
    return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)


def _failure(read_fd: int, argv: Sequence[str]) -> RootError:
    try:
        message = os.read(read_fd, 4096).decode(errors="replace")
    except BlockingIOError:
        message = ""
    return RootError(message or f"setting up the root for {argv[0]} failed")


class Process:
    """A process started by :func:`spawn`, awaited without blocking the event loop
    (through a pidfd); the parts of ``asyncio.subprocess.Process`` callers use."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin, self.stdout, self.stderr = popen.stdin, popen.stdout, popen.stderr

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        if self.popen.poll() is None:
            fd = os.pidfd_open(self.pid)
            loop = asyncio.get_running_loop()
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                if self.popen.poll() is None:
                    await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        return self.popen.wait()

    async def communicate(self, input: bytes | None = None
                          ) -> tuple[bytes | None, bytes | None]:
        return await asyncio.to_thread(self.popen.communicate, input)

    def send_signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@contextlib.contextmanager
def _children_in(pidfd: int | None, new: bool = False) -> Iterator[None]:
    """Within the block, the processes the calling thread forks are created in the
    PID namespace of the process ``pidfd`` refers to (setns(2) takes a pidfd since
    Linux 5.8) or, with ``new``, in a new namespace whose PID 1 is the first of them.

    Only the calling thread's next children change (the kernel's per-thread
    ``pid_for_children``), never its own namespace or another thread's; it is
    restored when the block ends, so a spawner thread serves the next pod as before.
    """
    if pidfd is None and not new:
        yield
        return
    saved = os.open("/proc/thread-self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if new:
            _check(_libc.unshare(CLONE_NEWPID), "unshare a PID namespace")
        elif _libc.setns(pidfd, CLONE_NEWPID) != 0:
            err = ctypes.get_errno()
            raise RootError("joining the pod's PID namespace: " + (
                "its PID 1 has exited" if err == errno.ESRCH else os.strerror(err)))
        try:
            yield
        finally:
            _check(_libc.setns(saved, CLONE_NEWPID),
                   "restoring the spawning thread's PID namespace")
    finally:
        os.close(saved)


def _no_init(spec: RootSpec, exc: OSError) -> bool:
    """fork(2) fails with ENOMEM in a PID namespace whose PID 1 has exited."""
    return spec.pid_namespace is not None and exc.errno == errno.ENOMEM


# The forks happen here, not on the event loop: the child sets the root up before
# exec, and Popen returns only then (tens of ms on a busy machine).  The threads
# live as long as the process, which matters: a child's "parent" for
# PR_SET_PDEATHSIG is the thread that forked it.
_SPAWNER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rootfs-spawn")


async def spawn(spec: RootSpec, argv: Sequence[str], *, env: Mapping[str, str],
                stdin: int | IO[Any] | None = subprocess.DEVNULL,
                stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
                start_new_session: bool = True, die_with_parent: bool = True) -> Process:
    """Start ``argv`` in the root ``spec`` describes (``argv[0]`` looked up through
    ``env["PATH"]`` inside the root).  Raises :class:`RootError` if the root could not
    be made, ``OSError`` (``FileNotFoundError``...) if the program could not be run."""
    def start() -> subprocess.Popen[bytes]:
        read_fd, write_fd = _report_pipe()
        try:
            with _children_in(spec.pid_namespace):
                return subprocess.Popen(
                    list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=dict(env),
                    preexec_fn=preexec(spec, write_fd, die_with_parent),
                    start_new_session=start_new_session)
        except subprocess.SubprocessError:
            raise _failure(read_fd, argv) from None
        except OSError as exc:
            if _no_init(spec, exc):
                raise RootError("the pod's PID namespace has no PID 1 any more") from None
            raise
        finally:
            os.close(write_fd)
            os.close(read_fd)

    loop = asyncio.get_running_loop()
    return Process(await loop.run_in_executor(_SPAWNER, start))


async def spawn_init(argv: Sequence[str], *, env: Mapping[str, str]) -> Process:
    """Start ``argv`` as PID 1 of a new PID namespace (in the caller's root and
    network; output to the caller's stderr), killed if its parent dies: the holder of
    a pod's PID namespace (``pidns.py``).  Its pidfd, ``Process.pid``'s, lets others
    join the namespace (``RootSpec.pid_namespace``)."""
    def start() -> subprocess.Popen[bytes]:
        with _children_in(None, new=True):
            return subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=dict(env), start_new_session=True,
                preexec_fn=lambda: _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0))

    loop = asyncio.get_running_loop()
    return Process(await loop.run_in_executor(_SPAWNER, start))


def run(spec: RootSpec, argv: Sequence[str], *, env: Mapping[str, str],
        input: bytes | None = None, timeout: float | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """:func:`spawn`, to completion, output captured (for short tools: a CNI plugin)."""
    read_fd, write_fd = _report_pipe()
    try:
        with _children_in(spec.pid_namespace):
            return subprocess.run(
                list(argv), input=input, capture_output=True, env=dict(env),
                timeout=timeout, preexec_fn=preexec(spec, write_fd, True),
                stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.SubprocessError as exc:
        if isinstance(exc, subprocess.TimeoutExpired):
            raise
        raise _failure(read_fd, argv) from None
    finally:
        os.close(write_fd)
        os.close(read_fd)
