"""In-pod capture on real network namespaces made by the test (root needed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from ambient_ref.ztunnel import capture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None,
                       reason="needs root and nftables to make network namespaces"),
]

POD_IP, PEER_IP, GATEWAY = "198.18.200.2", "198.18.200.3", "198.18.200.1"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def pair():
    """Two namespaces joined by a veth: 'pod' (captured) and 'peer'."""
    tag = uuid.uuid4().hex[:6]
    pod, peer = f"ah-test-pod-{tag}", f"ah-test-peer-{tag}"
    sh("ip", "netns", "add", pod)
    sh("ip", "netns", "add", peer)
    try:
        sh("ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", peer)
        for ns, ip in ((pod, POD_IP), (peer, PEER_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield Path("/run/netns") / pod, Path("/run/netns") / peer
    finally:
        sh("ip", "netns", "del", pod)
        sh("ip", "netns", "del", peer)


async def _accept_one(listener: socket.socket) -> socket.socket:
    conn, _ = await asyncio.get_running_loop().sock_accept(listener)
    return conn


async def _captured_outbound(pod: Path, then: str = "") -> tuple[
        socket.socket, socket.socket, asyncio.subprocess.Process]:
    """Capture on, the outbound listener up, and an application in the pod that
    connects to the peer's port 80 and sends ``hi`` (then runs ``then``): returns
    the listener, the connection the ztunnel side accepted, and the application."""
    await capture.install(pod, [GATEWAY])
    listener = await capture.listen_in(pod, capture.OUTBOUND_PORT)
    accept = asyncio.ensure_future(_accept_one(listener))
    # the application: an ordinary process in the pod namespace
    app = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={pod}", "--", "python3", "-c",
        f"import socket; s=socket.create_connection(('{PEER_IP}', 80), 5); s.send(b'hi')\n"
        + then, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return listener, await asyncio.wait_for(accept, 10), app


def test_outbound_is_redirected_with_its_original_destination(pair):
    pod, _ = pair

    async def scenario():
        listener, conn, app = await _captured_outbound(pod)
        assert capture.original_destination(conn) == (PEER_IP, 80)
        assert await asyncio.get_running_loop().sock_recv(conn, 10) == b"hi"
        await app.communicate()
        conn.close()
        listener.close()

    asyncio.run(scenario())


def test_inbound_is_redirected_except_hbone_and_marked_sockets(pair):
    pod, peer = pair

    async def scenario():
        await capture.install(pod, [GATEWAY])
        inbound = await capture.listen_in(pod, capture.INBOUND_PLAINTEXT_PORT)
        accept = asyncio.ensure_future(_accept_one(inbound))
        client = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={peer}", "--", "python3", "-c",
            f"import socket; socket.create_connection(('{POD_IP}', 9080), 5).send(b'in')")
        conn = await asyncio.wait_for(accept, 10)
        assert capture.original_destination(conn) == (POD_IP, 9080)
        await client.wait()
        conn.close()
        # the ztunnel's own (marked) outbound socket goes straight out
        direct = await capture.listen_in(peer, 7000)
        accept = asyncio.ensure_future(_accept_one(direct))
        sock = await capture.connect_from(pod, (PEER_IP, 7000))
        conn = await asyncio.wait_for(accept, 10)
        assert conn.getpeername()[0] == POD_IP
        for s in (sock, conn, direct, inbound):
            s.close()

    asyncio.run(scenario())


def test_remove_restores_direct_traffic(pair):
    pod, peer = pair

    async def scenario():
        await capture.install(pod, [GATEWAY])
        await capture.remove(pod)
        server = await capture.listen_in(peer, 7001)
        accept = asyncio.ensure_future(_accept_one(server))
        app = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={pod}", "--", "python3", "-c",
            f"import socket; socket.create_connection(('{PEER_IP}', 7001), 5).send(b'x')")
        conn = await asyncio.wait_for(accept, 10)
        assert conn.getpeername()[0] == POD_IP
        await app.wait()
        conn.close()
        server.close()
        out = subprocess.run(["nsenter", f"--net={pod}", "--", "nft", "list", "ruleset"],
                             capture_output=True, text=True).stdout
        assert "redirect" not in out

    asyncio.run(scenario())


def test_a_connection_captured_before_removal_keeps_working_after_it(pair):
    """Removal stops capturing new connections only: one already redirected to the
    ztunnel still gets the ztunnel's replies, translated back to the destination the
    application dialled (deleting the NAT chains would strand it until it timed out)."""
    pod, _ = pair

    async def scenario():
        listener, conn, app = await _captured_outbound(
            pod, then="s.settimeout(5); print(s.recv(100).decode(), flush=True)")
        loop = asyncio.get_running_loop()
        assert await loop.sock_recv(conn, 10) == b"hi"
        await capture.remove(pod)
        await loop.sock_sendall(conn, b"reply")
        out, err = await asyncio.wait_for(app.communicate(), 10)
        assert out.decode().strip() == "reply", err.decode()
        conn.close()
        listener.close()

    asyncio.run(scenario())


def test_rules_render_the_documented_exemptions():
    rules = capture.render_rules(["198.18.0.1"])
    assert "ip saddr { 198.18.0.1 } accept" in rules
    assert "tcp dport != 15008" in rules and "redirect to :15006" in rules
    assert "redirect to :15001" in rules and "0x539" in rules


def test_inbound_delivery_keeps_the_client_address(pair):
    """The ztunnel hands a connection to the application with the original client's
    address as source; the application's replies still come back to the ztunnel."""
    pod, _ = pair

    async def scenario():
        loop = asyncio.get_running_loop()
        await capture.install(pod, [GATEWAY])
        app = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={pod}", "--", "python3", "-c",
            "import socket\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('0.0.0.0', 9090)); s.listen(); print('ready', flush=True)\n"
            "c, addr = s.accept(); c.sendall(('seen ' + addr[0]).encode()); c.close()\n",
            stdout=asyncio.subprocess.PIPE)
        assert (await asyncio.wait_for(app.stdout.readline(), 10)).strip() == b"ready"
        sock = await capture.connect_from(pod, (POD_IP, 9090), source_ip=PEER_IP)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 100), 10)
        assert reply == f"seen {PEER_IP}".encode()
        sock.close()
        await app.wait()

    asyncio.run(scenario())


def test_the_ztunnels_sockets_have_nagle_off(pair):
    """Sockets made in a pod's namespace, connected or accepted, send small writes at
    once: with Nagle on, an HBONE frame written after an unacknowledged one waited for
    the peer's delayed ACK, 40 ms per connection through a pooled tunnel."""
    pod, peer = pair

    async def scenario():
        listener = await capture.listen_in(peer, 7002)
        accept = asyncio.ensure_future(_accept_one(listener))
        sock = await capture.connect_from(pod, (PEER_IP, 7002))
        conn = await asyncio.wait_for(accept, 10)
        for s in (sock, conn):
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert s.proto == socket.IPPROTO_TCP  # what asyncio checks before its own setting
        for s in (sock, conn, listener):
            s.close()

    asyncio.run(scenario())


def test_a_successor_binds_the_pods_ports_over_connections_this_ztunnel_closed(pair):
    """After the ztunnel closed a connection first (its side in TIME_WAIT on the pod's
    port) and stopped listening, another ztunnel can bind the port the way Istio's
    does in a pod (IPv6 wildcard, SO_REUSEPORT, no SO_REUSEADDR: istio/ztunnel
    src/inpod/config.rs, InPodSocketPortReuseFactory).  Fails with EADDRINUSE unless
    this ztunnel's listeners set SO_REUSEPORT too."""
    pod, _ = pair
    port = capture.OUTBOUND_PORT

    async def scenario() -> None:
        listener = await capture.listen_in(pod, port)
        client = capture.inside(pod, lambda: socket.create_connection((POD_IP, port)))
        conn = await _accept_one(listener)
        conn.close()  # the ztunnel side closes first: TIME_WAIT on POD_IP:port
        await asyncio.sleep(0.05)
        client.close()
        listener.close()

    asyncio.run(scenario())

    def bind_as_istio() -> None:
        successor = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            successor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            successor.bind(("::", port))
        finally:
            successor.close()

    capture.inside(pod, bind_as_istio)
