"""The ztunnel's inbound HBONE decisions (authority, self-calls, policy), without sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ambient_ref.hbone import ConnectRequest, HboneClient
from ambient_ref.identity import parse
from ambient_ref.policy.convert import convert
from ambient_ref.xds.types import Workload
from ambient_ref.ztunnel.metrics import TcpMetrics
from ambient_ref.ztunnel.proxy import PodProxy, Shared
from ambient_ref.ztunnel.state import MeshState

POD_IP = "198.18.0.5"
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
NOTSLEEP = "spiffe://cluster.local/ns/default/sa/notsleep"


def _proxy(policies: list[dict]) -> PodProxy:
    state = MeshState()
    pp = Workload(uid="u1", name="productpage-v1-x", namespace="default",
                  addresses=[POD_IP], node="node-1", service_account="bookinfo-productpage",
                  protocol="HBONE", labels={"app": "productpage"})
    auths = {}
    for p in policies:
        auth = convert(p).authorization
        assert auth is not None
        auths[f"default/{p['metadata']['name']}"] = auth.to_dict()
    state.update({"u1": pp}, {}, auths)

    async def no_certs(_: Workload):  # not reached by these decisions
        raise AssertionError("no certificate needed")

    return PodProxy(Shared(state, no_certs, TcpMetrics(), HboneClient()), pp,
                    Path("/nonexistent"))


def _request(authority: str, identity: str = SLEEP) -> ConnectRequest:
    return ConnectRequest(authority=authority, headers=[], peer_identity=parse(identity),
                          local_address=(POD_IP, 15008), peer_address=("198.18.1.7", 40000))


def test_authority_naming_another_ip_is_400():
    response = asyncio.run(_proxy([])._on_connect(_request("198.18.0.99:9080")))
    assert response.status == 400 and "ip mismatch" in response.reason


def test_calls_to_ztunnel_ports_and_bad_authorities_are_400():
    proxy = _proxy([])
    for authority in (f"{POD_IP}:15008", f"{POD_IP}:15001", f"{POD_IP}:15006", "nonsense"):
        assert asyncio.run(proxy._on_connect(_request(authority))).status == 400


def test_policy_denial_is_401_and_counted_with_the_deny_flag():
    viewer = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "viewer", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
                       "rules": [{"from": [{"source": {"principals": [
                           "cluster.local/ns/default/sa/sleep"]}}]}]}}
    proxy = _proxy([viewer])
    denied = asyncio.run(proxy._on_connect(_request(f"{POD_IP}:9080", NOTSLEEP)))
    assert denied.status == 401 and "none allowed" in denied.reason
    allowed = asyncio.run(proxy._on_connect(_request(f"{POD_IP}:9080", SLEEP)))
    assert allowed.status == 200
    text = proxy.shared.metrics.exposition().decode()
    assert 'response_flags="DENY"' in text and "sa/notsleep" in text


def test_denied_plaintext_is_dropped_after_the_connect_completes(monkeypatch):
    """An out-of-mesh client denied by policy sees its connection end after connecting,
    never a failed connect: real ztunnel accepts, checks RBAC, then drops the stream
    (istio/ztunnel src/proxy/inbound_passthrough.rs).  A reset sent at once races the
    client's connect, which curl then reports as exit 7 instead of 56."""
    import socket

    from ambient_ref.ztunnel import capture

    nothing = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "nothing", "namespace": "default"},
               "spec": {"selector": {"matchLabels": {"app": "productpage"}}}}
    proxy = _proxy([nothing])
    monkeypatch.setattr(capture, "original_destination", lambda sock: (POD_IP, 9080))

    async def body() -> tuple[str, str]:
        server = await asyncio.start_server(proxy._inbound_plaintext, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.socket()
        client.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
            await asyncio.sleep(0.3)  # the decision is taken by now; nothing sent yet
            try:
                client.recv(1, socket.MSG_PEEK)
                before = "data or end"
            except BlockingIOError:
                before = "open"
            except ConnectionResetError:
                before = "reset"
            client.send(b"GET / HTTP/1.1\r\nHost: productpage\r\n\r\n")
            try:
                await asyncio.wait_for(
                    asyncio.get_running_loop().sock_recv(client, 1024), 5)
                after = "answered"
            except ConnectionResetError:
                after = "reset"
            return before, after
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(body()) == ("open", "reset")
    assert 'response_flags="DENY"' in proxy.shared.metrics.exposition().decode()


def _deny(principal: str) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-one", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [principal]}}]}]}}


def test_open_connections_a_new_deny_refuses_are_closed_and_others_kept():
    """ztunnel's PolicyWatcher (istio/ztunnel src/proxy/connection_manager.rs): on a
    policy change every open inbound connection is authorized again, and those now
    refused are closed."""
    import socket

    from ambient_ref.policy.evaluate import Connection

    proxy = _proxy([])

    async def body() -> tuple[int, bytes | str, str, int]:
        ends = []
        for identity in (SLEEP, NOTSLEEP):
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            _, writer = await asyncio.open_connection(sock=ours)
            proxy.inbound.track(Connection.of("198.18.1.7", identity, POD_IP, 9080), writer)
            ends.append(theirs)
        assert proxy.recheck_inbound() == 0  # no policy: both stay
        auth = convert(_deny("cluster.local/ns/default/sa/notsleep")).authorization
        assert auth is not None
        proxy.shared.state.update({"u1": proxy.workload}, {},
                                  {"default/deny-one": auth.to_dict()})
        closed = proxy.recheck_inbound()
        loop = asyncio.get_running_loop()
        try:
            notsleep: bytes | str = await asyncio.wait_for(loop.sock_recv(ends[1], 1), 5)
        except ConnectionResetError:
            notsleep = "reset"
        try:
            ends[0].recv(1)
            sleep = "ended"
        except BlockingIOError:
            sleep = "open"
        for end in ends:
            end.close()
        return closed, notsleep, sleep, len(proxy.inbound)

    closed, notsleep, sleep, still_open = asyncio.run(body())
    assert closed == 1
    assert notsleep in (b"", "reset"), notsleep  # notsleep's connection ended
    assert sleep == "open" and still_open == 1
