"""A node's own PID namespace: the node's init, and the launcher that makes it.

A real node is a machine with its own PID 1, and node-level components rely on
it: istio-cni takes the node's network namespace from ``/host/proc/1/ns/net``
(istio/istio ``cni/pkg/nodeagent/podcgroupns_linux.go``, ``statHostNetns``) and
scans ``/host/proc`` for the processes of the pods on its node.  On a machine
whose own PID 1 cannot be inspected (or whose processes are everyone's), that
fails or sees too much.  So each node of the local cluster gets a PID namespace
of its own::

    python -m clusters.local.node.pidinit --proc <state>/nodes/<node>/proc -- <agent argv>

run inside the node's network namespace (``nsenter --net=...``).  Two processes:

- the *launcher* (this machine's PID namespace) unshares a PID namespace, forks
  the node's init, forwards SIGTERM/SIGINT to it and exits with its status;
- the *init* is PID 1 of the new namespace, in the node's network namespace (so
  ``/proc/1/ns/net`` of the node's procfs is the node's network namespace); it
  mounts a procfs of its namespace at ``--proc`` (in this machine's mount
  namespace, so the control plane reads the node's pids there), starts the node
  agent, forwards SIGTERM/SIGINT to it, reaps every orphan of the node, and when
  the agent exits unmounts the procfs and exits with the agent's status (the
  kernel then kills whatever the node still ran).

Both die with their parent (``PR_SET_PDEATHSIG`` SIGTERM: the node shuts down
gracefully); a procfs left by a SIGKILL of everything is removed with the node's
other mounts (``nodes.release_node_roots``).  Pids the agent records (container
pid files) are pids of the node's namespace: read them through the node's procfs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import sys
from pathlib import Path

CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class PidNamespaceError(Exception):
    """The node's PID namespace or its procfs could not be made."""


def _check(result: int, what: str) -> None:
    if result != 0:
        raise PidNamespaceError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _die_with_parent(sig: int) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def mount_procfs(path: Path) -> None:
    """A procfs of the caller's PID namespace at ``path`` (a stale one is replaced)."""
    path.mkdir(parents=True, exist_ok=True)
    while os.path.ismount(path):
        _libc.umount2(os.fsencode(str(path)), MNT_DETACH)
    _check(_libc.mount(b"proc", os.fsencode(str(path)), b"proc",
                       ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC), None),
           f"mount proc on {path}")


def unmount_procfs(path: Path) -> None:
    _libc.umount2(os.fsencode(str(path)), MNT_DETACH)


def _status(wait_status: int) -> int:
    """An exit status as a shell reports it (128 + signal for a killed process)."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def _forward_signals(pid: int) -> None:
    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)


def init(proc: Path, argv: list[str], parent_alive: int) -> int:
    """PID 1 of the node: mount the procfs, run ``argv``, reap, forward signals."""
    _die_with_parent(signal.SIGTERM)
    # the launcher may have died before the line above: its pipe end then reads EOF
    if select.select([parent_alive], [], [], 0)[0]:
        return 1
    os.close(parent_alive)
    mount_procfs(proc)
    try:
        agent = os.fork()
        if agent == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        _forward_signals(agent)
        while True:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                return 1
            if pid == agent:
                return _status(wait_status)
    finally:
        unmount_procfs(proc)


def launch(proc: Path, argv: list[str]) -> int:
    """Unshare a PID namespace and run its init; returns the init's exit status."""
    _die_with_parent(signal.SIGTERM)
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(write_end)
        code = 1
        try:
            code = init(proc, argv, read_end)
        except PidNamespaceError as exc:
            print(f"node init: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    os.close(read_end)
    _forward_signals(child)
    while True:
        try:
            _, wait_status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        return _status(wait_status)


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clusters.local.node.pidinit",
        description="run a command as the child of PID 1 of a new PID namespace whose "
                    "procfs is mounted at --proc")
    parser.add_argument("--proc", required=True, type=Path,
                        help="where to mount the namespace's procfs")
    parser.add_argument("argv", nargs=argparse.REMAINDER,
                        help="-- then the command (the node agent)")
    opts = parser.parse_args(args)
    argv = opts.argv[1:] if opts.argv[:1] == ["--"] else opts.argv
    if not argv:
        parser.error("no command given after --")
    try:
        return launch(opts.proc, argv)
    except PidNamespaceError as exc:
        print(f"node launcher: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
