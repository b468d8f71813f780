"""Cluster DNS: the record table on its own, the wire over loopback, and the feed
from the local cluster's API.

The table tests need no sockets; the wire tests run the real listeners on
127.0.0.1 with ephemeral ports on a loop in a background thread, and ask with
dnslib's blocking client from the test thread, as a pod's resolver would.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from kubernetes import client

from clusters.local.images.dns import DnsApp, Records, build_app, handle_packet, parse_args

from .waiting import until_value

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# -- objects as the API returns them ---------------------------------------------------


def service(
    name: str,
    ns: str = "app",
    cluster_ip: str = "198.19.0.10",
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clusterIP": cluster_ip,
        "type": "ClusterIP",
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    if cluster_ip != "None":
        body["clusterIPs"] = [cluster_ip]
    body.update(spec)
    return {"metadata": {"name": name, "namespace": ns}, "spec": body}


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [ip], "conditions": {}}
    if ready is not None:
        ep["conditions"]["ready"] = ready
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpoint_slice(
    svc: str,
    endpoints: list[dict[str, Any]],
    ns: str = "app",
    name: str | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name or f"{svc}-abcde",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def rdatas(answers: list[Any]) -> list[str]:
    return [str(rr.rdata) for rr in answers]


def ask(records: Records, qname: str, qtype: str = "A") -> DNSRecord:
    return records.respond(DNSRecord.question(qname, qtype))


@pytest.fixture
def table() -> Records:
    return Records(
        "cluster.local",
        services=[
            service("web"),
            service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}]),
            service(
                "search",
                type="ExternalName",
                externalName="search.example.com",
                cluster_ip="",
                ports=[],
            ),
            service(
                "alias",
                type="ExternalName",
                externalName="web.app.svc.cluster.local",
                cluster_ip="",
                ports=[],
            ),
        ],
        slices=[
            endpoint_slice(
                "db",
                [
                    endpoint("198.18.1.5"),
                    endpoint("198.18.2.7", ready=False),
                    endpoint("198.18.1.9", ready=None, hostname="db-0"),
                ],
                ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}],
            ),
        ],
    )


# -- the table ---------------------------------------------------------------------------


def test_service_name_is_its_cluster_ip(table):
    rcode, answers = table.answer("web.app.svc.cluster.local", "A")
    assert rcode == RCODE.NOERROR
    assert rdatas(answers) == ["198.19.0.10"]
    assert [rr.ttl for rr in answers] == [5]


def test_other_types_of_an_existing_name_are_empty_noerror_with_soa(table):
    for qtype in ("AAAA", "MX", "TXT"):
        assert table.answer("web.app.svc.cluster.local", qtype) == (RCODE.NOERROR, [])
    reply = ask(table, "web.app.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1 and not reply.rr
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


def test_headless_service_lists_ready_endpoints_only(table):
    rcode, answers = table.answer("db.app.svc.cluster.local", "A")
    assert rcode == RCODE.NOERROR
    # ready, and ready unknown (the API says: treat as ready); never ready=False
    assert sorted(rdatas(answers)) == ["198.18.1.5", "198.18.1.9"]


def test_headless_service_publishing_not_ready_addresses_lists_all():
    records = Records(
        services=[service("db", cluster_ip="None", publishNotReadyAddresses=True)],
        slices=[
            endpoint_slice("db", [endpoint("198.18.1.5"), endpoint("198.18.2.7", ready=False)])
        ],
    )
    assert sorted(rdatas(records.answer("db.app.svc.cluster.local", "A")[1])) == [
        "198.18.1.5",
        "198.18.2.7",
    ]


def test_headless_service_without_ready_endpoints_exists_without_addresses():
    records = Records(
        services=[service("db", cluster_ip="None")],
        slices=[endpoint_slice("db", [endpoint("198.18.2.7", ready=False)])],
    )
    assert records.answer("db.app.svc.cluster.local", "A") == (RCODE.NOERROR, [])


def test_headless_endpoints_have_names_of_their_own(table):
    assert rdatas(table.answer("db-0.db.app.svc.cluster.local", "A")[1]) == ["198.18.1.9"]
    assert rdatas(table.answer("198-18-1-5.db.app.svc.cluster.local", "A")[1]) == ["198.18.1.5"]
    # not ready: no name; a cluster-IP service has no endpoint names at all
    assert table.answer("198-18-2-7.db.app.svc.cluster.local", "A")[0] == RCODE.NXDOMAIN
    assert table.answer("x.web.app.svc.cluster.local", "A")[0] == RCODE.NXDOMAIN


def test_external_name_is_a_cname(table):
    rcode, answers = table.answer("search.app.svc.cluster.local", "A")
    assert rcode == RCODE.NOERROR
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in answers] == [
        ("CNAME", "search.example.com.")
    ]
    assert rdatas(table.answer("search.app.svc.cluster.local", "CNAME")[1]) == [
        "search.example.com."
    ]


def test_external_name_into_the_cluster_is_followed(table):
    rcode, answers = table.answer("alias.app.svc.cluster.local", "A")
    assert rcode == RCODE.NOERROR
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in answers] == [
        ("CNAME", "web.app.svc.cluster.local."),
        ("A", "198.19.0.10"),
    ]


def test_srv_for_a_named_port_of_a_cluster_ip_service(table):
    reply = ask(table, "_http._tcp.web.app.svc.cluster.local", "SRV")
    assert reply.header.rcode == RCODE.NOERROR
    assert rdatas(reply.rr) == ["0 100 80 web.app.svc.cluster.local."]
    # the target's address comes along, saving the client a round trip
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.ar] == [
        ("web.app.svc.cluster.local.", "198.19.0.10")
    ]


def test_srv_of_a_headless_service_names_each_ready_endpoint(table):
    rcode, answers = table.answer("_pg._tcp.db.app.svc.cluster.local", "SRV")
    assert rcode == RCODE.NOERROR
    assert sorted(rdatas(answers)) == [
        "0 100 5432 198-18-1-5.db.app.svc.cluster.local.",
        "0 100 5432 db-0.db.app.svc.cluster.local.",
    ]


def test_srv_names_that_do_not_match_a_port(table):
    assert table.answer("_grpc._tcp.web.app.svc.cluster.local", "SRV")[0] == RCODE.NXDOMAIN
    assert table.answer("_http._udp.web.app.svc.cluster.local", "SRV")[0] == RCODE.NXDOMAIN
    # the protocol level exists (an empty non-terminal): NOERROR, nothing
    assert table.answer("_tcp.web.app.svc.cluster.local", "SRV") == (RCODE.NOERROR, [])


def test_pod_names_spell_their_address(table):
    assert rdatas(table.answer("198-18-0-5.app.pod.cluster.local", "A")[1]) == ["198.18.0.5"]
    assert rdatas(table.answer("fd00--5.app.pod.cluster.local", "AAAA")[1]) == ["fd00::5"]
    assert table.answer("198-18-0-5.app.pod.cluster.local", "AAAA") == (RCODE.NOERROR, [])
    assert table.answer("not-an-ip.app.pod.cluster.local", "A")[0] == RCODE.NXDOMAIN


def test_missing_names_in_the_domain_are_nxdomain_with_soa(table):
    for name in (
        "nope.app.svc.cluster.local",
        "web.other.svc.cluster.local",
        "nope.svc.cluster.local",
        "a.b.c.d.e.f.svc.cluster.local",
        "x.cluster.local",
    ):
        reply = ask(table, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.header.aa == 1
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
        assert str(reply.auth[0].rname) == "cluster.local."
        assert reply.auth[0].rdata.times[4] == 5  # negative answers cached 5 s only


def test_names_between_the_domain_and_a_service_exist(table):
    for name in ("cluster.local", "svc.cluster.local", "app.svc.cluster.local"):
        assert table.answer(name, "A") == (RCODE.NOERROR, []), name
    assert [QTYPE[rr.rtype] for rr in table.answer("cluster.local", "SOA")[1]] == ["SOA"]


def test_names_outside_the_domain_are_nxdomain_without_authority(table):
    for name in ("example.com", "web.app.svc.cluster.local.example.com", "local", "."):
        reply = ask(table, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.header.aa == 0 and not reply.auth


def test_names_are_case_insensitive_and_keep_the_askers_spelling(table):
    rcode, answers = table.answer("WeB.APP.Svc.Cluster.LOCAL.", "A")
    assert rcode == RCODE.NOERROR and rdatas(answers) == ["198.19.0.10"]
    assert str(answers[0].rname) == "WeB.APP.Svc.Cluster.LOCAL."


def test_another_cluster_domain():
    records = Records("Corp.Example.", services=[service("web")])
    assert rdatas(records.answer("web.app.svc.corp.example", "A")[1]) == ["198.19.0.10"]
    assert records.answer("web.app.svc.cluster.local", "A")[0] == RCODE.NXDOMAIN


def test_updates_add_move_and_remove_records():
    records = Records()
    name = "db.app.svc.cluster.local"
    assert records.answer(name, "A")[0] == RCODE.NXDOMAIN
    records.set_service(service("db", cluster_ip="None"))
    records.set_slice(endpoint_slice("db", [endpoint("198.18.1.5")], name="s1"))
    records.set_slice(endpoint_slice("db", [endpoint("198.18.1.6")], name="s2"))
    assert sorted(rdatas(records.answer(name, "A")[1])) == ["198.18.1.5", "198.18.1.6"]
    moved = endpoint_slice("other", [endpoint("198.18.1.6")], name="s2")
    records.set_slice(moved)  # its service-name label changed
    assert rdatas(records.answer(name, "A")[1]) == ["198.18.1.5"]
    records.delete_slice(endpoint_slice("db", [], name="s1"))
    assert records.answer(name, "A") == (RCODE.NOERROR, [])
    records.delete_service(service("db", cluster_ip="None"))
    assert records.answer(name, "A")[0] == RCODE.NXDOMAIN
    assert records.answer("app.svc.cluster.local", "A")[0] == RCODE.NXDOMAIN
    assert records.counts == (0, 1)


def test_before_the_first_sync_cluster_names_fail_instead_of_not_existing():
    records = Records(services=[service("web")], synced=False)
    assert records.answer("web.app.svc.cluster.local", "A") == (RCODE.SERVFAIL, [])
    assert records.answer("example.com", "A")[0] == RCODE.NXDOMAIN
    records.synced = True
    assert records.answer("web.app.svc.cluster.local", "A")[0] == RCODE.NOERROR


def test_objects_with_bad_addresses_are_skipped_not_fatal():
    records = Records(
        services=[service("web", cluster_ip="not-an-ip"), service("db", cluster_ip="None")],
        slices=[
            {
                "metadata": {
                    "name": "x",
                    "namespace": "app",
                    "labels": {"kubernetes.io/service-name": "db"},
                },
                "endpoints": [{"addresses": ["bogus", "198.18.1.1"]}, {}],
            }
        ],
    )
    assert records.answer("web.app.svc.cluster.local", "A") == (RCODE.NOERROR, [])
    assert rdatas(records.answer("db.app.svc.cluster.local", "A")[1]) == ["198.18.1.1"]


# -- messages ---------------------------------------------------------------------------


def big_slice(n: int) -> dict[str, Any]:
    """A headless service's slice whose A answer is ``n`` * 16 bytes and more."""
    return endpoint_slice("big", [endpoint(f"198.18.{i // 250}.{i % 250 + 1}") for i in range(n)])


def many_endpoints(n: int = 100) -> Records:
    return Records(services=[service("big", cluster_ip="None")], slices=[big_slice(n)])


def test_malformed_and_reply_messages_are_dropped(table):
    for junk in (b"", b"\x00", b"\x12\x34" + b"\xff" * 30, os.urandom(11)):
        assert handle_packet(table, junk, udp=True) is None
    reply = DNSRecord.question("web.app.svc.cluster.local").reply()
    assert handle_packet(table, reply.pack(), udp=True) is None


def test_reply_echoes_id_question_and_recursion_desired(table):
    query = DNSRecord.question("web.app.svc.cluster.local")
    reply = DNSRecord.parse(handle_packet(table, query.pack(), udp=True))
    assert reply.header.id == query.header.id and reply.header.qr == 1
    assert reply.header.rd == 1 and reply.q == query.q


def test_unsupported_opcode_and_class(table):
    query = DNSRecord.question("web.app.svc.cluster.local")
    query.header.opcode = 2  # STATUS
    assert DNSRecord.parse(handle_packet(table, query.pack(), udp=True)).header.rcode == (
        RCODE.NOTIMP
    )
    chaos = DNSRecord.question("version.bind", "TXT", "CH")
    assert DNSRecord.parse(handle_packet(table, chaos.pack(), udp=True)).header.rcode == (
        RCODE.REFUSED
    )


def test_large_udp_answers_are_truncated_and_whole_over_tcp():
    records = many_endpoints()
    query = DNSRecord.question("big.app.svc.cluster.local")
    udp = DNSRecord.parse(handle_packet(records, query.pack(), udp=True))
    assert udp.header.tc == 1 and not udp.rr and udp.q == query.q
    tcp = DNSRecord.parse(handle_packet(records, query.pack(), udp=False))
    assert tcp.header.tc == 0 and len(tcp.rr) == 100


def test_edns_lets_udp_answers_grow_to_1232_bytes():
    records = many_endpoints(40)  # about 700 bytes: over 512, under 1232
    query = DNSRecord.question("big.app.svc.cluster.local")
    assert DNSRecord.parse(handle_packet(records, query.pack(), udp=True)).header.tc == 1
    query.add_ar(EDNS0(udp_len=4096))
    raw = handle_packet(records, query.pack(), udp=True)
    reply = DNSRecord.parse(raw)
    assert reply.header.tc == 0 and len(reply.rr) == 40 and 512 < len(raw) <= 1232
    assert [QTYPE[rr.rtype] for rr in reply.ar] == ["OPT"]


# -- the wire ----------------------------------------------------------------------------


class LoopThread:
    """An asyncio loop in a daemon thread: the servers run there while the test
    thread uses blocking clients, as separate processes would."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """As ``asyncio.run`` ends: cancel what is left and let closing transports
        finish their callbacks, so nothing is reported unclosed later."""

        async def drain() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
            await self.loop.shutdown_asyncgens()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def served(table: Records, loop_thread: LoopThread) -> Iterator[DnsApp]:
    table.set_service(service("big", cluster_ip="None"))
    table.set_slice(big_slice(100))
    app = DnsApp(table, host="127.0.0.1", port=0, health_port=0)
    loop_thread.run(app.start())
    yield app
    loop_thread.run(app.stop())


def query(port: int, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(q.send("127.0.0.1", port, tcp=tcp, timeout=5))
    assert reply.header.id == q.header.id
    return reply


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_udp_and_tcp_share_one_port_and_answer(served):
    for tcp in (False, True):
        reply = query(served.dns.port, "web.app.svc.cluster.local", tcp=tcp)
        assert rdatas(reply.rr) == ["198.19.0.10"]
        assert query(served.dns.port, "example.com", tcp=tcp).header.rcode == RCODE.NXDOMAIN


def test_truncated_over_udp_then_whole_over_tcp(served):
    udp = query(served.dns.port, "big.app.svc.cluster.local")
    assert udp.header.tc == 1
    tcp = query(served.dns.port, "big.app.svc.cluster.local", tcp=True)
    assert len(tcp.rr) == 100


def test_malformed_udp_datagram_is_dropped_and_serving_goes_on(served):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\x01\x02garbage", ("127.0.0.1", served.dns.port))
        good = DNSRecord.question("web.app.svc.cluster.local")
        sock.sendto(good.pack(), ("127.0.0.1", served.dns.port))
        # the first datagram back answers the good query: the junk got none
        reply = DNSRecord.parse(sock.recvfrom(4096)[0])
    assert reply.header.id == good.header.id and rdatas(reply.rr) == ["198.19.0.10"]


def test_malformed_tcp_message_is_skipped_on_the_same_connection(served):
    good = DNSRecord.question("web.app.svc.cluster.local").pack()
    with socket.create_connection(("127.0.0.1", served.dns.port), timeout=5) as sock:
        junk = b"\xde\xad\xbe\xef"
        sock.sendall(struct.pack("!H", len(junk)) + junk + struct.pack("!H", len(good)) + good)
        (length,) = struct.unpack("!H", _read(sock, 2))
        reply = DNSRecord.parse(_read(sock, length))
    assert rdatas(reply.rr) == ["198.19.0.10"]


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


def test_health_and_readiness(served):
    port = served.health.port
    assert http_status(port, "/health") == 200
    assert http_status(port, "/ready") == 200
    served.records.synced = False
    try:
        assert http_status(port, "/health") == 200
        assert http_status(port, "/ready") == 503
    finally:
        served.records.synced = True


# -- against the local cluster's API --------------------------------------------------


@pytest.mark.slow
def test_follows_services_and_slices_from_the_api(cluster, core, namespace, loop_thread):
    app = build_app(
        parse_args(
            [
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--address",
                "127.0.0.1",
                "--port",
                "0",
                "--health-port",
                "0",
            ]
        )
    )
    loop_thread.run(app.start())
    try:
        loop_thread.run(asyncio.wait_for(app.wait_synced(), 20), 25)
        until_value(lambda: http_status(app.health.port, "/ready"), lambda s: s == 200)
        port = app.dns.port
        web = f"web.{namespace}.svc.cluster.local"
        assert query(port, web).header.rcode == RCODE.NXDOMAIN

        created = core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80)]),
            ),
        )
        reply = until_value(lambda: query(port, web), lambda r: bool(r.rr))
        assert rdatas(reply.rr) == [created.spec.cluster_ip]
        srv = query(port, f"_http._tcp.{web}", "SRV", tcp=True)
        assert rdatas(srv.rr) == [f"0 100 80 {web}."]

        core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="db"),
                spec=client.V1ServiceSpec(
                    cluster_ip="None", ports=[client.V1ServicePort(name="pg", port=5432)]
                ),
            ),
        )
        client.DiscoveryV1Api(core.api_client).create_namespaced_endpoint_slice(
            namespace,
            client.V1EndpointSlice(
                metadata=client.V1ObjectMeta(
                    name="db-1", labels={"kubernetes.io/service-name": "db"}
                ),
                address_type="IPv4",
                endpoints=[
                    client.V1Endpoint(
                        addresses=["198.18.7.1"], conditions=client.V1EndpointConditions(ready=True)
                    ),
                    client.V1Endpoint(
                        addresses=["198.18.7.2"],
                        conditions=client.V1EndpointConditions(ready=False),
                    ),
                ],
                ports=[client.DiscoveryV1EndpointPort(name="pg", port=5432)],
            ),
        )
        db = f"db.{namespace}.svc.cluster.local"
        reply = until_value(lambda: query(port, db), lambda r: bool(r.rr))
        assert rdatas(reply.rr) == ["198.18.7.1"]

        core.delete_namespaced_service("web", namespace)
        reply = until_value(lambda: query(port, web), lambda r: r.header.rcode == RCODE.NXDOMAIN)
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
    finally:
        loop_thread.run(app.stop())


@pytest.mark.slow
def test_process_starts_logs_one_line_and_exits_zero_on_sigterm(cluster):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    flags = ["--address", "127.0.0.1", "--port", "0", "--health-port", "0"]
    kubeconfig = ["--kubeconfig", str(cluster.kubeconfig)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusters.local.images.dns", *flags, *kubeconfig],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    try:
        assert proc.stdout is not None
        # the process logs one line as soon as it listens
        assert select.select([proc.stdout], [], [], 20)[0], "no startup line within 20s"
        first = proc.stdout.readline()
        assert "cluster DNS for cluster.local on 127.0.0.1:" in first, first
        port = int(first.split("127.0.0.1:")[1].split()[0])
        reply = until_value(
            lambda: query(port, "kubernetes.default.svc.cluster.local"),
            lambda r: r.header.rcode != RCODE.SERVFAIL,
        )
        assert reply.header.rcode == RCODE.NOERROR and reply.rr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
