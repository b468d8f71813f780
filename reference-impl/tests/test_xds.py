"""The configuration protocol: messages, the server's store, the client's state, and both
ends over a real WebSocket on 127.0.0.1 (plain HTTP: TLS is the caller's configuration)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ambient_ref.xds.client import XdsClient
from ambient_ref.xds.protocol import (
    XDS_PATH,
    Ack,
    ClientState,
    Delta,
    Hello,
    Nack,
    ProtocolError,
    ResourceStore,
    Snapshot,
    decode,
    decode_client,
    decode_server,
    encode,
    merge_deltas,
)
from ambient_ref.xds.server import Session, XdsEndpoint, install, xds_handler
from ambient_ref.xds.types import Service, ServicePort, Workload, decode_resource

TIMEOUT = 3.0


def wl(name: str, ip: str, protocol: str = "HBONE", **kw: Any) -> Workload:
    return Workload(
        uid=f"uid-{name}",
        name=name,
        namespace="ns",
        addresses=[ip],
        node="node-1",
        service_account="sa",
        protocol=protocol,  # type: ignore[arg-type]
        **kw,
    )


def svc(name: str, vip: str) -> Service:
    return Service(
        name=name,
        namespace="ns",
        hostname=f"{name}.ns.svc.cluster.local",
        vips=[vip],
        ports=[ServicePort("http", 80, 8080)],
    )


def keyed(*workloads: Workload) -> dict[str, Workload]:
    return {w.uid: w for w in workloads}


# -- messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Hello("ztunnel~10.0.0.1~zt.istio-system", "istio-system", {"workload": "e.1"}),
        Hello("n"),
        Ack("e.3"),
        Nack("e.3", "bad"),
        Snapshot("e.1", {"workload": {"u": wl("a", "10.0.0.1").to_dict()}}),
        Delta(
            "e.2",
            "e.1",
            {"service": {"ns/s": svc("s", "10.96.0.1").to_dict()}},
            {"workload": ["u"]},
        ),
    ],
)
def test_messages_round_trip(message: Any) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        ('{"type": "subscribe"}', "unknown message type 'subscribe'"),
        ('{"type": "hello"}', "'node' must be a string"),
        ('{"type": "hello", "node": ""}', "'node' must not be empty"),
        ('{"type": "hello", "node": "n", "resource_versions": {"pods": "1"}}', "'pods'"),
        ('{"type": "hello", "node": "n", "resource_versions": {"workload": 1}}', "string"),
        ('{"type": "ack", "version": 3}', "'version' must be a string"),
        ('{"type": "nack", "version": "1"}', "'error' must be a string"),
        ('{"type": "snapshot", "version": ""}', "'version' must not be empty"),
        ('{"type": "snapshot", "version": "1", "resources": {"pod": {}}}', "'pod'"),
        ('{"type": "snapshot", "version": "1", "resources": {"workload": []}}', "object"),
        ('{"type": "snapshot", "version": "1", "resources": {"workload": {"k": 1}}}', "'k'"),
        ('{"type": "delta", "version": "2"}', "'base' must be a string"),
        ('{"type": "delta", "version": "2", "base": "1", "removals": {"workload": "k"}}', "list"),
        (
            '{"type": "delta", "version": "2", "base": "1",'
            ' "upserts": {"workload": {"k": {}}}, "removals": {"workload": ["k"]}}',
            "both upserted and removed",
        ),
    ],
)
def test_malformed_messages_are_named(text: str, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=None) as err:
        decode(text)
    assert complaint in str(err.value)


def test_each_side_accepts_only_the_other_sides_messages() -> None:
    with pytest.raises(ProtocolError, match="a client does not send 'snapshot'"):
        decode_client(encode(Snapshot("1", {})))
    with pytest.raises(ProtocolError, match="a server does not send 'ack'"):
        decode_server(encode(Ack("1")))


def test_resources_round_trip_and_validate() -> None:
    w = wl("a", "10.0.0.1", services={"ns/s.ns.svc.cluster.local": []})
    assert Workload.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    s = svc("s", "10.96.0.1")
    assert Service.from_dict(s.to_dict()) == s
    bad = [
        ("workload", {**w.to_dict(), "protocol": "UDP"}, "protocol"),
        ("workload", {**w.to_dict(), "addresses": ["10.0.0.300"]}, "not an IP"),
        ("workload", {**w.to_dict(), "uid": ""}, "uid"),
        ("workload", {**w.to_dict(), "services": {"nokey": []}}, "namespace/hostname"),
        ("service", {**s.to_dict(), "ports": [{"service_port": 0}]}, "service_port"),
        ("authorization", [], "JSON object"),
        ("pod", {}, "unknown resource type"),
    ]
    for rtype, data, complaint in bad:
        with pytest.raises(ValueError, match=complaint):
            decode_resource(rtype, data)


# -- the server's store --------------------------------------------------------------------


def test_store_records_a_delta_only_when_something_changed() -> None:
    store = ResourceStore(epoch="e")
    seen: list[Delta] = []
    store.subscribe(seen.append)
    a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
    first = store.set_all("workload", keyed(a, b))
    assert first is not None
    assert (first.base, first.version) == ("e.0", "e.1")
    assert set(first.upserts["workload"]) == {"uid-a", "uid-b"}
    assert store.set_all("workload", keyed(a, b)) is None  # same content: no version
    assert store.version == "e.1"

    a2 = wl("a", "10.0.0.1", app="reviews")
    second = store.set_all("workload", keyed(a2))
    assert second == Delta(
        "e.2", "e.1", {"workload": {"uid-a": a2.to_dict()}}, {"workload": ["uid-b"]}
    )
    assert seen == [first, second]
    assert store.snapshot() == Snapshot(
        "e.2", {"workload": {"uid-a": a2.to_dict()}, "service": {}, "authorization": {}}
    )


def test_store_replaces_several_types_as_one_version() -> None:
    store = ResourceStore(epoch="e")
    delta = store.replace(
        {"workload": keyed(wl("a", "10.0.0.1")), "service": {"ns/s": svc("s", "10.96.0.1")}}
    )
    assert delta is not None and delta.version == "e.1"
    assert set(delta.upserts) == {"workload", "service"}


def test_store_resumes_from_its_history_and_snapshots_otherwise() -> None:
    store = ResourceStore(epoch="e", history=2)
    for i in range(4):
        store.set_all("workload", keyed(*(wl(f"w{j}", f"10.0.0.{j + 1}") for j in range(i + 1))))
    held = {t: "e.3" for t in ("workload", "service", "authorization")}
    resumed = store.resume(held)
    assert isinstance(resumed, Delta)
    assert (resumed.base, resumed.version, list(resumed.upserts["workload"])) == (
        "e.3",
        "e.4",
        ["uid-w3"],
    )
    current = store.resume({t: "e.4" for t in held})
    assert isinstance(current, Delta) and current.empty and current.base == "e.4"
    merged = store.resume({t: "e.2" for t in held})
    assert isinstance(merged, Delta)
    assert sorted(merged.upserts["workload"]) == ["uid-w2", "uid-w3"]
    for versions in (
        {t: "e.1" for t in held},
        {t: "other.4" for t in held},
        {},
        {"workload": "e.4"},
    ):
        assert isinstance(store.resume(versions), Snapshot), versions


def test_merged_deltas_equal_applying_both() -> None:
    one = Delta("2", "1", {"workload": {"a": {"x": 1}, "b": {"x": 1}}}, {"service": ["s"]})
    two = Delta("3", "2", {"service": {"s": {"y": 2}}}, {"workload": ["a"]})
    assert merge_deltas(one, two) == Delta(
        "3", "1", {"workload": {"b": {"x": 1}}, "service": {"s": {"y": 2}}}, {"workload": ["a"]}
    )
    with pytest.raises(ValueError, match="does not follow"):
        merge_deltas(two, one)


# -- the client's state --------------------------------------------------------------------


def test_client_applies_snapshots_and_deltas_in_order() -> None:
    state = ClientState("node")
    a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
    assert state.hello() == Hello("node", None, {})
    got = state.receive(encode(Snapshot("e.1", {"workload": {"uid-a": a.to_dict()}})))
    assert got.applied and got.replies == [Ack("e.1")]
    assert got.changes["workload"].upserts == {"uid-a": a}
    assert state.workloads == {"uid-a": a}

    delta = Delta("e.2", "e.1", {"workload": {"uid-b": b.to_dict(), "uid-a": a.to_dict()}})
    got = state.receive(encode(delta))
    assert got.replies == [Ack("e.2")]
    assert got.changes["workload"] == ({"uid-b": b}, [])  # uid-a unchanged: not reported
    assert state.hello().resource_versions == {
        "workload": "e.2",
        "service": "e.2",
        "authorization": "e.2",
    }


def test_client_rejects_a_delta_on_another_base_and_asks_for_a_snapshot() -> None:
    state = ClientState("node", "istio-system")
    a = wl("a", "10.0.0.1")
    state.receive(Snapshot("e.1", {"workload": {"uid-a": a.to_dict()}}))
    got = state.receive(encode(Delta("e.5", "e.4", {}, {"workload": ["uid-a"]})))
    assert not got.applied and got.changes == {}
    nack, resync = got.replies
    assert isinstance(nack, Nack) and nack.version == "e.5" and "e.4" in nack.error
    assert resync == Hello("node", "istio-system", {})
    assert state.version == "e.1" and state.workloads == {"uid-a": a}  # keeps serving
    # Deltas in flight before the snapshot are dropped quietly, then the snapshot applies.
    assert state.receive(Delta("e.6", "e.5", {}, {})).replies == []
    got = state.receive(Snapshot("e.6", {}))
    assert got.replies == [Ack("e.6")] and got.changes["workload"] == ({}, ["uid-a"])


def test_client_rejects_invalid_resources_whole() -> None:
    state = ClientState("node")
    a = wl("a", "10.0.0.1")
    state.receive(Snapshot("e.1", {"workload": {"uid-a": a.to_dict()}}))
    broken = {**a.to_dict(), "protocol": "QUIC"}
    good_b = wl("b", "10.0.0.2").to_dict()
    got = state.receive(Snapshot("e.2", {"workload": {"uid-a": broken, "uid-b": good_b}}))
    assert [type(r) for r in got.replies] == [Nack]  # the same snapshot would come back
    assert state.version == "e.1" and list(state.workloads) == ["uid-a"]
    got = state.receive(Delta("e.2", "e.1", {"workload": {"uid-b": good_b, "uid-a": broken}}))
    assert [type(r) for r in got.replies] == [Nack, Hello]
    assert state.version == "e.1" and list(state.workloads) == ["uid-a"]
    got = state.receive('{"type": "delta", "version": "e.3"}')
    assert [type(r) for r in got.replies] == [Nack, Hello]
    assert got.replies[0] == Nack("e.3", got.replies[0].error)
    assert state.receive("not json").replies[0].version == ""  # type: ignore[union-attr]


# -- over a WebSocket ----------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 15))


async def authenticate(token: str) -> str | None:
    return "ztunnel" if token == "good-token" else None


class Server:
    """A control plane's endpoint on 127.0.0.1, restartable on the same port."""

    def __init__(self, store: ResourceStore, port: int = 0, **options: Any) -> None:
        self.store = store
        self.port = port
        self.options = options
        self.endpoint: XdsEndpoint
        self.runner: web.AppRunner | None = None

    async def start(self) -> Server:
        app = web.Application()
        self.endpoint = install(app, self.store, authenticate, **self.options)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{XDS_PATH}"

    async def acked(self, version: str, clients: int = 1) -> list[Session]:
        """Wait until ``clients`` sessions acknowledged ``version``."""

        def done() -> bool:
            acks = [s for s in self.endpoint.sessions.values() if s.acked_version == version]
            return len(acks) >= clients

        await self.endpoint.wait(done, TIMEOUT)
        return list(self.endpoint.sessions.values())


class Recorder:
    """A change callback whose calls can be awaited."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], list[str]]] = []
        self._cond = asyncio.Condition()

    async def __call__(self, rtype: str, upserts: dict[str, Any], removals: list[str]) -> None:
        async with self._cond:
            self.calls.append((rtype, dict(upserts), list(removals)))
            self._cond.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT), self._cond:
            await self._cond.wait_for(predicate)


def client(url: str, node: str = "ztunnel-1", **kw: Any) -> XdsClient:
    return XdsClient(
        url,
        lambda: "good-token",
        None,
        node,
        backoff_initial=0.01,
        backoff_max=0.05,
        **kw,
    )


async def wait(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


def test_bad_tokens_and_non_hello_first_messages_are_refused() -> None:
    async def main() -> None:
        server = await Server(ResourceStore()).start()
        try:
            async with aiohttp.ClientSession() as http:
                for headers in ({}, {"Authorization": "Bearer wrong"}):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                        await http.ws_connect(server.url, headers=headers)
                    assert err.value.status == 401
                auth = {"Authorization": "Bearer good-token"}
                async with http.ws_connect(server.url, headers=auth) as ws:
                    await ws.send_str(encode(Ack("1")))
                    msg = await wait(ws.receive())
                    assert msg.type == aiohttp.WSMsgType.CLOSE
                    assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        finally:
            await server.stop()

    run(main())


def test_raw_session_snapshot_resync_and_nack() -> None:
    async def main() -> None:
        store = ResourceStore()
        store.set_all("workload", keyed(wl("a", "10.0.0.1")))
        server = await Server(store).start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(server.url, headers={"Authorization": "Bearer good-token"}) as ws,
            ):
                await ws.send_str(encode(Hello("raw")))
                first = decode_server(await wait(ws.receive_str()))
                assert first == store.snapshot()
                await ws.send_str(encode(Nack(first.version, "cannot")))
                await ws.send_str(encode(Hello("raw")))  # resync: another snapshot
                assert decode_server(await wait(ws.receive_str())) == store.snapshot()
                await server.endpoint.wait(
                    lambda: any(s.nack for s in server.endpoint.sessions.values()), TIMEOUT
                )
                (session,) = server.endpoint.sessions.values()
                assert session.nack == (first.version, "cannot")
                assert (session.node, session.principal, session.snapshots_sent) == (
                    "raw",
                    "ztunnel",
                    2,
                )
        finally:
            await server.stop()

    run(main())


def test_snapshot_on_connect_then_acked_deltas_to_two_clients() -> None:
    async def main() -> None:
        store = ResourceStore()
        a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
        store.replace(
            {"workload": keyed(a), "service": {"ns/s.ns.svc.cluster.local": svc("s", "10.96.0.1")}}
        )
        server = await Server(store).start()
        rec1, rec2 = Recorder(), Recorder()
        c1, c2 = client(server.url, on_change=rec1), client(server.url, "ztunnel-2", on_change=rec2)
        try:
            async with c1, c2:
                await wait(c1.synced.wait())
                await wait(c2.synced.wait())
                for c in (c1, c2):
                    assert c.state.workloads == {"uid-a": a}
                    assert list(c.state.services) == ["ns/s.ns.svc.cluster.local"]
                await server.acked(store.version, clients=2)

                store.set_all("workload", keyed(a, b))
                sessions = await server.acked(store.version, clients=2)
                assert {s.node for s in sessions} == {"ztunnel-1", "ztunnel-2"}
                for c, rec in ((c1, rec1), (c2, rec2)):
                    assert c.state.workloads == {"uid-a": a, "uid-b": b}
                    assert rec.calls[-1] == ("workload", {"uid-b": b}, [])
                    assert c.version == store.version
                assert all(s.snapshots_sent == 1 and s.deltas_sent == 1 for s in sessions)
        finally:
            await server.stop()

    run(main())


def test_a_client_resumes_with_the_changes_it_missed() -> None:
    async def main() -> None:
        store = ResourceStore()
        a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
        store.set_all("workload", keyed(a))
        server = await Server(store).start()
        rec = Recorder()
        c = client(server.url, on_change=rec)
        try:
            async with c:
                await wait(c.synced.wait())
                await server.acked(store.version)
                await server.endpoint.shutdown()  # sessions closed, server still up
                await wait(c.disconnected.wait())
                store.set_all("workload", keyed(b))  # while it is away
                await rec.until(lambda: len(rec.calls) == 2)
                assert rec.calls[-1] == ("workload", {"uid-b": b}, ["uid-a"])
                (session,) = await server.acked(store.version)
                assert (session.snapshots_sent, session.deltas_sent) == (0, 1)  # resumed
                assert c.connections == 2
        finally:
            await server.stop()

    run(main())


def test_client_keeps_its_state_while_the_server_is_down_and_resyncs_after_restart() -> None:
    async def main() -> None:
        a, b, c_ = wl("a", "10.0.0.1"), wl("b", "10.0.0.2"), wl("c", "10.0.0.3")
        store = ResourceStore()
        store.replace({"workload": keyed(a, b), "authorization": {"ns/deny": {"name": "deny"}}})
        server = await Server(store).start()
        rec = Recorder()
        c = client(server.url, on_change=rec)
        async with c:
            await wait(c.synced.wait())
            before = (c.version, dict(c.state.workloads), dict(c.state.authorizations))
            await server.stop()
            await wait(c.disconnected.wait())
            # Down: the last configuration stays, retries go on.
            assert (c.version, c.state.workloads, c.state.authorizations) == before
            calls = len(rec.calls)

            # A new control plane process: a new epoch, different content.
            a2 = wl("a", "10.0.0.1", app="changed")
            fresh = ResourceStore()
            fresh.replace(
                {"workload": keyed(a2, b, c_), "authorization": {"ns/deny": {"name": "deny"}}}
            )
            restarted = await Server(fresh, port=server.port).start()
            try:
                (session,) = await restarted.acked(fresh.version)
                await rec.until(lambda: len(rec.calls) > calls)
                assert rec.calls[calls:] == [("workload", {"uid-a": a2, "uid-c": c_}, [])]
                assert c.state.workloads == {"uid-a": a2, "uid-b": b, "uid-c": c_}
                assert session.snapshots_sent == 1 and c.connections == 2
            finally:
                await restarted.stop()

    run(main())


def test_a_slow_session_gets_one_snapshot_instead_of_a_backlog() -> None:
    async def main() -> None:
        store = ResourceStore()
        endpoint = XdsEndpoint(store, authenticate, queue_limit=3)
        session = Session(id=1, peer="", principal="p")
        endpoint._restart(session, Hello("slow"))
        store.subscribe(lambda delta: endpoint._push(session, delta))
        for i in range(10):
            store.set_all("workload", keyed(wl(f"w{i}", f"10.0.0.{i + 1}")))
        queued = list(session._queue)
        assert len(queued) <= 3 and session.coalesced >= 1
        # What is queued still leads a client from nothing to the store's state.
        state = ClientState("slow")
        for message in queued:
            assert state.receive(message).applied
        assert state.version == store.version
        assert list(state.workloads) == ["uid-w9"]

    run(main())


def test_xds_handler_serves_when_registered_directly() -> None:
    async def main() -> None:
        store = ResourceStore()
        store.set_all("service", {"ns/s.ns.svc.cluster.local": svc("s", "10.96.0.1")})
        handler = xds_handler(store, authenticate)
        endpoint = handler.__self__  # type: ignore[attr-defined]
        app = web.Application()
        app.router.add_get(XDS_PATH, handler)
        app.on_shutdown.append(endpoint.shutdown)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with client(f"http://127.0.0.1:{port}{XDS_PATH}") as c:
                await wait(c.synced.wait())
                assert c.state.services == {"ns/s.ns.svc.cluster.local": svc("s", "10.96.0.1")}
        finally:
            await runner.cleanup()

    run(main())
