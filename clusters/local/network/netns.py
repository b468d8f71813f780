"""Network namespaces, links, addresses and routes, through iproute2.

Everything here acts only inside namespaces the local cluster created (``ip -n NS``
and ``ip netns exec NS``): the host's own network is never touched.  Commands go
in batches (``ip -batch``) so wiring a pod costs one process, not ten.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
CLONE_NEWNET = 0x40000000


class NetworkError(Exception):
    """An iproute2/iptables command failed; the message has its stderr."""


def require_tools() -> None:
    """Fail early, naming what is missing and how to get it."""
    packages = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux",
                "unshare": "util-linux", "mount": "mount"}
    missing = [t for t in packages if shutil.which(t) is None]
    if missing:
        raise NetworkError(
            f"the local cluster's nodes need {', '.join(missing)}; on Debian: apt-get install "
            + " ".join(sorted({packages[t] for t in missing})))
    if os.geteuid() != 0:
        raise NetworkError(
            "the local cluster's nodes need root: they create network namespaces, veth links "
            "and iptables rules. Run as root (for example in a container or VM you own), or "
            "run the API alone with LocalCluster(run_pods=False)")


def run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


async def arun(argv: list[str], stdin: str | None = None) -> str:
    """``run`` without blocking the event loop: the harness's one asynchronous command
    runner (the reference implementation, a separate distribution, has its own)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {err.decode().strip() or out.decode()}")
    return out.decode()


def batch_argv(ns: str | None) -> list[str]:
    """``ip -batch -`` in ``ns``; ``-force`` so every line runs and errors all show."""
    return ["ip", *(["-n", ns] if ns else []), "-batch", "-"]


def sysctl_script(values: dict[str, str]) -> str:
    return "; ".join(f"echo {v} > /proc/sys/{k.replace('.', '/')}" for k, v in values.items())


def exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    if not exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete(name: str) -> None:
    """Remove a namespace and its /etc/netns files; a missing one is fine."""
    if exists(name):
        kill_processes_in(name)
        proc = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
        if proc.returncode != 0 and exists(name):
            raise NetworkError(f"ip netns del {name} failed: {proc.stderr.strip()}")
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def inode(name: str) -> int | None:
    try:
        return (NETNS_DIR / name).stat().st_ino
    except OSError:
        return None


def kill_processes_in(name: str, sig: int = 9) -> list[int]:
    """SIGKILL every process whose network namespace is ``name`` (what a dead run left)."""
    ino = inode(name)
    if ino is None:
        return []
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == ino:
                os.kill(int(entry.name), sig)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return killed


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block with this thread inside namespace ``name`` (sockets made there
    stay there after the thread returns)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetworkError(f"setns into {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetworkError(f"setns back from {name}: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)
