"""In-pod traffic capture: redirection rules and sockets inside a pod's network namespace.

As istio-cni does for the real ztunnel (facts file, section 2), the rules live in
the pod's own network namespace, so they follow the pod wherever its traffic goes
and nothing on the node changes:

- outbound TCP the application sends (not to localhost) is redirected to 15001;
- inbound TCP arriving for the pod (except HBONE on 15008, and except traffic from
  the node itself, i.e. kubelet probes) is redirected to 15006;
- the ztunnel's own sockets carry the mark 0x539 and are never captured;
- connections the ztunnel opens to the application with the client's address as
  source (transparent sockets) get the connmark 0x111, and the application's
  replies carrying it are routed back into the namespace (policy route to a local
  table) so they reach the ztunnel's socket instead of leaving through eth0.

The rules are nftables (istio-cni has an nftables variant too): one table, made
and removed atomically.  ``render_rules`` is pure; the rest does the I/O.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MARK = 0x539  # the ztunnel's own sockets
CONNMARK = 0x111  # connections the ztunnel delivers to the pod, replies come back
MASK = 0xFFF
OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, HBONE_PORT = 15001, 15006, 15008
TABLE = "ztunnel_capture"
# The programs the ztunnel runs (``run_in_pod``): its image must hold them
# (Dockerfile; a test checks every call names one of these).
COMMANDS = ("nsenter", "nft", "ip")
ROUTE_TABLE = 100
RULE_PREF = 32764

SO_ORIGINAL_DST = 80
IP_TRANSPARENT = 19
CLONE_NEWNET = 0x40000000


class CaptureError(Exception):
    pass


def render_rules(node_addresses: list[str], capturing: bool = True) -> str:
    """The nftables ruleset for one pod namespace.

    ``node_addresses`` are the sources the node itself uses toward the pod (its
    probes); they are never captured, like istio-cni's probe exemption.

    With ``capturing`` false the same chains come without their redirections: no new
    connection is captured, while those captured before keep their translation and
    their marks until they end.  Deleting the table instead would take the
    namespace's last NAT chains, and with them its NAT hooks: the kernel would stop
    translating connections already redirected to the ztunnel, whose replies then
    reach no socket (the client waits until it times out).  istio-cni in its
    default iptables mode leaves the nat table's base chains in place too, deleting
    only its own chains (istio/istio cni/pkg/iptables/iptables.go,
    ``DeleteInpodRules``).
    """
    exempt = ", ".join(node_addresses) if node_addresses else "127.0.0.2"
    not_ours = f"meta mark & {MASK:#x} != {MARK:#x}"
    inbound_redirect = (
        f"ip saddr {{ {exempt} }} accept\n"
        f"    meta l4proto tcp ip daddr != 127.0.0.1 tcp dport != {HBONE_PORT} {not_ours} "
        f"redirect to :{INBOUND_PLAINTEXT_PORT}") if capturing else ""
    outbound_redirect = (
        f"meta l4proto tcp ip daddr != 127.0.0.1 {not_ours} redirect to :{OUTBOUND_PORT}"
        if capturing else "")
    rules = f"""table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
  chain mangle_prerouting {{
    type filter hook prerouting priority -150; policy accept;
    meta mark & {MASK:#x} == {MARK:#x} ct mark set ct mark & {~MASK & 0xFFFFFFFF:#x} | {CONNMARK:#x}
  }}
  chain mangle_output {{
    type route hook output priority -150; policy accept;
    ct mark & {MASK:#x} == {CONNMARK:#x} meta mark set ct mark
  }}
  chain nat_prerouting {{
    type nat hook prerouting priority -100; policy accept;
    {inbound_redirect}
  }}
  chain nat_output {{
    type nat hook output priority -100; policy accept;
    meta l4proto tcp ct mark & {MASK:#x} == {CONNMARK:#x} accept
    oifname "lo" ip daddr != 127.0.0.1 accept
    {outbound_redirect}
  }}
}}
"""
    return "".join(line for line in rules.splitlines(keepends=True) if line.strip())


async def run_in_pod(netns: Path, *argv: str, stdin: str | None = None) -> str:
    """Run a command in the pod's network namespace; its output, or CaptureError.

    The reference's one asynchronous command runner (the harness, a separate
    distribution, has its own).
    """
    command = ["nsenter", f"--net={netns}", "--", *argv]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise CaptureError(f"{' '.join(command)}: {err.decode().strip() or out.decode().strip()}")
    return out.decode()


async def install(netns: Path, node_addresses: list[str]) -> None:
    """Redirection rules and the reply route in the pod namespace (idempotent)."""
    await run_in_pod(netns, "nft", "-f", "-", stdin=render_rules(node_addresses))
    rules = await run_in_pod(netns, "ip", "rule", "show", "pref", str(RULE_PREF))
    if "lookup" not in rules:
        await run_in_pod(netns, "ip", "rule", "add", "fwmark", f"{CONNMARK:#x}/{MASK:#x}",
                         "pref", str(RULE_PREF), "lookup", str(ROUTE_TABLE))
    await run_in_pod(netns, "ip", "route", "replace", "local", "0.0.0.0/0", "dev", "lo",
                     "table", str(ROUTE_TABLE))


async def remove(netns: Path) -> None:
    """Take the pod out of the mesh: its new connections go direct again.

    Connections captured before finish as they began: the chains stay, without
    their redirections (``render_rules``), and so do the reply route and its rule,
    which only packets of the ztunnel's own connections ever use.
    """
    if not netns.exists():
        return
    await run_in_pod(netns, "nft", "-f", "-", stdin=render_rules([], capturing=False))


# -- sockets inside another namespace ------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
# setns changes the calling thread's namespace: one dedicated thread does it, so
# the event loop's thread never leaves the ztunnel's own namespace.
_netns_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns")
_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise CaptureError(f"setns: {os.strerror(err)}")


def inside(netns: Path, fn: Callable[[], T]) -> T:
    """Run ``fn`` with this thread inside ``netns`` (sockets it makes stay there)."""
    with _lock:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(netns, os.O_RDONLY)
        try:
            _setns(target)
            try:
                return fn()
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)


def run_inside(netns: Path, fn: Callable[[], T]) -> T:
    """``inside`` on the dedicated namespace thread, from any thread but the loop's."""
    return _netns_thread.submit(inside, netns, fn).result()


def _make_socket(netns: Path, kind: str, address: tuple[str, int] | None,
                 transparent: bool, mark: int | None) -> socket.socket:
    def make() -> socket.socket:
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they are
        # TCP.  And off it is, here too: every socket of the ztunnel carries small writes
        # (HTTP/2 control frames, relayed segments) that must not wait for a delayed ACK.
        # Sockets accepted from a listener inherit the option.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            if transparent:
                sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            if kind == "listen":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # As Istio's ztunnel binds its in-pod listeners (INPOD_PORT_REUSE, on by
                # default: istio/ztunnel src/inpod/config.rs, InPodSocketPortReuseFactory):
                # a successor that sets SO_REUSEPORT and not SO_REUSEADDR can then bind
                # the pod's ports while this ztunnel's connections still hold them, TIME_WAIT
                # included (accepted sockets inherit the option).  Without it a ztunnel
                # enrolling the pod within a minute of this one leaving fails with
                # EADDRINUSE.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(address or ("0.0.0.0", 0))
                sock.listen(1024)
            elif address is not None:
                sock.bind(address)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    return inside(netns, make)


async def listen_in(netns: Path, port: int, transparent: bool = False) -> socket.socket:
    """A listening socket inside the pod's namespace (0.0.0.0:port)."""
    return await asyncio.get_running_loop().run_in_executor(
        _netns_thread, _make_socket, netns, "listen", ("0.0.0.0", port), transparent, MARK)


async def connect_from(netns: Path, dest: tuple[str, int],
                       source_ip: str | None = None) -> socket.socket:
    """A connected socket opened from inside the pod's namespace, marked so it is not
    captured again; with ``source_ip`` it is transparent and uses that source (the
    original client's address, on inbound delivery)."""
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(
        _netns_thread, _make_socket, netns, "connect",
        (source_ip, 0) if source_ip else None, source_ip is not None, MARK)
    try:
        await loop.sock_connect(sock, dest)
    except OSError:
        sock.close()
        raise
    return sock


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a redirected connection was going (SO_ORIGINAL_DST)."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, ip = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(ip), port
