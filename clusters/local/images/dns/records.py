"""The cluster DNS record table, without any I/O.

``Records`` holds the Services and EndpointSlices it was given and answers a
question from them on demand (a dictionary lookup by name, nothing precomputed),
so an informer event costs O(1) and the table is tested with plain dicts and no
sockets.  ``handle_packet`` turns a wire message into a wire reply (or ``None``
to drop it); the servers in ``server.py`` only move bytes.

Names follow the Kubernetes DNS specification
(https://github.com/kubernetes/dns/blob/master/docs/specification.md) and what
CoreDNS's ``kubernetes`` plugin answers, with ``pods insecure``:

- ``<svc>.<ns>.svc.<domain>``: the cluster IPs; for a headless Service the
  addresses of its ready endpoints; for an ExternalName Service a CNAME.
- ``<host>.<svc>.<ns>.svc.<domain>``: one endpoint of a headless Service, by its
  ``hostname`` or its dashed address.
- ``_<port>._<proto>.<svc>.<ns>.svc.<domain>``: SRV for a named port.
- ``<a-b-c-d>.<ns>.pod.<domain>``: the address spelled in the name.

A name that exists but lacks the asked type is NOERROR with no answers and the
zone's SOA (glibc asks A and AAAA together and must not fail the A lookup because
AAAA came back NXDOMAIN).  A name outside the cluster domain is NXDOMAIN: the
cluster has no upstream, so "this does not exist" is the true answer and lets a
resolver give up at once (REFUSED or SERVFAIL would make it try other servers
and report a temporary failure instead).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from dnslib import (
    AAAA,
    CLASS,
    CNAME,
    EDNS0,
    OPCODE,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    A,
    DNSHeader,
    DNSLabel,
    DNSRecord,
)
from dnslib.dns import RD

log = logging.getLogger("dns")

TTL = 5
# Negative answers are cached for the SOA minimum: as short as positive ones, so a
# Service created right after a failed lookup resolves within TTL seconds.
NEGATIVE_TTL = 5
PLAIN_UDP_SIZE = 512  # RFC 1035 limit without EDNS
EDNS_UDP_SIZE = 1232  # what we offer and accept with EDNS: no IP fragmentation
MAX_TCP_SIZE = 65535
MAX_CNAME_CHAIN = 8
CLASS_ANY = 255  # dnslib spells it "*"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = dict[str, Any]
RData = dict[int, list[RD]]


def qtype_code(qtype: int | str) -> int:
    """``"AAAA"`` or 28 -> 28, so callers and tests may say types by name."""
    return qtype if isinstance(qtype, int) else getattr(QTYPE, qtype.upper())


def _labels(name: str | DNSLabel) -> tuple[str, ...]:
    """Lower-case labels of a name: DNS names compare case-insensitively (and
    resolvers randomise case, DNS 0x20), Kubernetes names are lower case."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.decode("latin-1").lower() for part in label.label)


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address_rdata(addresses: Iterable[str]) -> RData:
    """A and AAAA rdata from address strings, skipping any that do not parse (an
    object from the API is data, not something to crash on)."""
    data: RData = {QTYPE.A: [], QTYPE.AAAA: []}
    seen: set[Any] = set()
    for text in addresses:
        ip = _ip(text)
        if ip is None or ip in seen:
            continue
        seen.add(ip)
        if ip.version == 4:
            data[QTYPE.A].append(A(str(ip)))
        else:
            data[QTYPE.AAAA].append(AAAA(str(ip)))
    return data


def _dashed(address: str) -> str:
    """The DNS label Kubernetes makes of an address: ``198-18-0-5``, ``fd00--1``."""
    return address.replace(".", "-").replace(":", "-")


class Records:
    """What cluster DNS knows: Services and EndpointSlices, indexed for lookup.

    ``synced`` is False until the first complete list arrived; until then names
    in the cluster domain get SERVFAIL rather than an NXDOMAIN a client would
    cache and believe.
    """

    def __init__(
        self,
        domain: str = "cluster.local",
        services: Iterable[Obj] = (),
        slices: Iterable[Obj] = (),
        *,
        synced: bool = True,
    ) -> None:
        self.domain = DNSLabel(domain.strip(".").lower() + ".")
        self._domain_labels = _labels(self.domain)
        self.synced = synced
        self.serial = 1
        self._services: dict[tuple[str, str], Obj] = {}
        # (namespace, service name) -> slice name -> slice
        self._slices: dict[tuple[str, str], dict[str, Obj]] = {}
        # (namespace, slice name) -> the service name it was indexed under
        self._slice_owner: dict[tuple[str, str], str] = {}
        self._namespaces: Counter[str] = Counter()
        for svc in services:
            self.set_service(svc)
        for eps in slices:
            self.set_slice(eps)

    # -- updates (from informer events) ------------------------------------------------

    def set_service(self, svc: Obj) -> None:
        key = (svc["metadata"].get("namespace", ""), svc["metadata"]["name"])
        if key not in self._services:
            self._namespaces[key[0]] += 1
        self._services[key] = svc
        self.serial += 1

    def delete_service(self, svc: Obj) -> None:
        key = (svc["metadata"].get("namespace", ""), svc["metadata"]["name"])
        if self._services.pop(key, None) is not None:
            self._namespaces[key[0]] -= 1
            if self._namespaces[key[0]] <= 0:
                del self._namespaces[key[0]]
        self.serial += 1

    def set_slice(self, eps: Obj) -> None:
        """Index a slice under the Service its label names; a slice whose label
        changed moves, one without the label is kept out (it serves no Service)."""
        self.delete_slice(eps)
        meta = eps["metadata"]
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            ns = meta.get("namespace", "")
            self._slices.setdefault((ns, owner), {})[meta["name"]] = eps
            self._slice_owner[(ns, meta["name"])] = owner

    def delete_slice(self, eps: Obj) -> None:
        meta = eps["metadata"]
        ns = meta.get("namespace", "")
        owner = self._slice_owner.pop((ns, meta["name"]), None)
        if owner is not None:
            by_name = self._slices.get((ns, owner), {})
            by_name.pop(meta["name"], None)
            if not by_name:
                self._slices.pop((ns, owner), None)
        self.serial += 1

    @property
    def counts(self) -> tuple[int, int]:
        """(services, endpoint slices) known, for the log."""
        return len(self._services), len(self._slice_owner)

    # -- questions -----------------------------------------------------------------------

    def in_domain(self, qname: str | DNSLabel) -> bool:
        return self._relative(qname) is not None

    def _relative(self, qname: str | DNSLabel) -> tuple[str, ...] | None:
        """The labels before the cluster domain, or None for a name outside it."""
        labels = _labels(qname)
        n = len(self._domain_labels)
        if len(labels) < n or labels[len(labels) - n :] != self._domain_labels:
            return None
        return labels[: len(labels) - n]

    def answer(self, qname: str | DNSLabel, qtype: int | str) -> tuple[int, list[RR]]:
        """(rcode, answer records) for one question; owner names keep the asker's
        spelling (case included), as a resolver checking 0x20 expects."""
        return self._answer(
            qname if isinstance(qname, DNSLabel) else DNSLabel(qname), qtype_code(qtype), 0
        )

    def soa(self) -> RR:
        times = (self.serial % 2**32, 7200, 1800, 86400, NEGATIVE_TTL)
        return RR(
            self.domain,
            QTYPE.SOA,
            ttl=TTL,
            rdata=SOA(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", times),
        )

    def respond(self, request: DNSRecord) -> DNSRecord:
        """The full reply to a parsed query: header flags, answers, the SOA in
        authority for negative answers, addresses of SRV targets in additional."""
        header = DNSHeader(
            id=request.header.id,
            bitmap=0,
            qr=1,
            opcode=request.header.opcode,
            rd=request.header.rd,
            ra=1,
        )
        reply = DNSRecord(header, questions=list(request.questions))
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE))
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.questions[0]
        if question.qclass not in (CLASS.IN, CLASS_ANY):
            reply.header.rcode = RCODE.REFUSED
            return reply
        rcode, answers = self.answer(question.qname, question.qtype)
        reply.header.rcode = rcode
        reply.rr = answers
        if not self.in_domain(question.qname):
            return reply
        # Not authoritative before the first sync: then we know nothing.
        reply.header.aa = int(rcode != RCODE.SERVFAIL)
        if rcode == RCODE.NXDOMAIN or (rcode == RCODE.NOERROR and not answers):
            reply.add_auth(self.soa())
        extra: list[RR] = []
        targets = {rr.rdata.target for rr in answers if rr.rtype == QTYPE.SRV}
        for target in sorted(targets, key=str):
            if self.in_domain(target):
                for qtype in (QTYPE.A, QTYPE.AAAA):
                    extra += self._answer(target, qtype, MAX_CNAME_CHAIN)[1]
        reply.ar[:0] = extra  # before the OPT record, which goes last
        return reply

    # -- lookup --------------------------------------------------------------------------

    def _answer(self, qname: DNSLabel, qtype: int, depth: int) -> tuple[int, list[RR]]:
        rel = self._relative(qname)
        if rel is None:
            return RCODE.NXDOMAIN, []
        if not self.synced:
            return RCODE.SERVFAIL, []
        data = self._rdata(rel)
        if data is None:
            return RCODE.NXDOMAIN, []
        cnames = data.get(QTYPE.CNAME)
        if cnames and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            answers = [RR(qname, QTYPE.CNAME, ttl=TTL, rdata=cnames[0])]
            target = cnames[0].label
            if depth < MAX_CNAME_CHAIN and self.in_domain(target):
                rcode, more = self._answer(target, qtype, depth + 1)
                return rcode, answers + more
            return RCODE.NOERROR, answers  # outside: the client's to chase
        if qtype == QTYPE.ANY:
            wanted = [(t, rd) for t, rds in data.items() for rd in rds]
        else:
            wanted = [(qtype, rd) for rd in data.get(qtype, ())]
        return RCODE.NOERROR, [RR(qname, t, ttl=TTL, rdata=rd) for t, rd in wanted]

    def _rdata(self, rel: tuple[str, ...]) -> RData | None:
        """Records of a name relative to the domain, by type; {} for a name that
        exists without data (an empty non-terminal), None for one that does not."""
        if not rel:
            return {QTYPE.SOA: [self.soa().rdata]}
        kind, depth = rel[-1], len(rel)
        if kind == "svc":
            if depth == 1:
                return {}
            if depth == 2:
                return {} if rel[0] in self._namespaces else None
            if depth == 3:
                return self._service_rdata(rel[1], rel[0])
            if depth == 4:
                if rel[0].startswith("_"):
                    return self._protocol_rdata(rel[2], rel[1], rel[0][1:])
                return self._endpoint_rdata(rel[2], rel[1], rel[0])
            if depth == 5 and rel[0].startswith("_") and rel[1].startswith("_"):
                return self._srv_rdata(rel[3], rel[2], rel[0][1:], rel[1][1:])
            return None
        if kind == "pod":
            if depth <= 2:
                return {}  # pods insecure: every namespace has a pod subdomain
            if depth == 3:
                return self._pod_rdata(rel[0])
        return None

    def _service(self, ns: str, name: str) -> Obj | None:
        return self._services.get((ns, name))

    def _fqdn(self, *labels: str) -> str:
        return ".".join(labels) + "." + str(self.domain)

    def _ready(self, ns: str, name: str, svc: Obj) -> Iterator[tuple[Obj, Obj]]:
        """(slice, endpoint) for each endpoint that should be in DNS: ready ones,
        where an absent ``ready`` means ready (the API's rule), or all of them
        when the Service publishes not-ready addresses."""
        publish_all = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        for eps in self._slices.get((ns, name), {}).values():
            for ep in eps.get("endpoints") or ():
                ready = (ep.get("conditions") or {}).get("ready")
                if publish_all or ready is None or ready:
                    yield eps, ep

    @staticmethod
    def _headless(svc: Obj) -> bool:
        return (svc.get("spec") or {}).get("clusterIP") == "None"

    @staticmethod
    def _external(svc: Obj) -> bool:
        return (svc.get("spec") or {}).get("type") == "ExternalName"

    def _service_rdata(self, ns: str, name: str) -> RData | None:
        svc = self._service(ns, name)
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        if self._external(svc):
            target = str(spec.get("externalName") or "").strip(".")
            return {QTYPE.CNAME: [CNAME(target + ".")]} if target else {}
        if self._headless(svc):
            addresses = [
                a for _, ep in self._ready(ns, name, svc) for a in ep.get("addresses") or ()
            ]
        else:
            addresses = [
                ip
                for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]
                if ip and ip != "None"
            ]
        data = _address_rdata(addresses)
        # SRV on the bare name lists every named port, as CoreDNS does.
        data[QTYPE.SRV] = self._srv_list(ns, name, svc, None, None)
        return data

    def _protocol_rdata(self, ns: str, name: str, proto: str) -> RData | None:
        """``_tcp.<svc>...``: exists (no data) if a named port speaks it."""
        svc = self._service(ns, name)
        if svc is None or self._external(svc):
            return None
        ports = (svc.get("spec") or {}).get("ports") or ()
        if any(p.get("name") and str(p.get("protocol", "TCP")).lower() == proto for p in ports):
            return {}
        return None

    def _endpoint_rdata(self, ns: str, name: str, host: str) -> RData | None:
        svc = self._service(ns, name)
        if svc is None or not self._headless(svc):
            return None
        addresses = [
            a
            for _, ep in self._ready(ns, name, svc)
            for a in ep.get("addresses") or ()
            if str(ep.get("hostname") or _dashed(a)).lower() == host
        ]
        return _address_rdata(addresses) if addresses else None

    def _srv_rdata(self, ns: str, name: str, port: str, proto: str) -> RData | None:
        svc = self._service(ns, name)
        if svc is None or self._external(svc):
            return None
        ports = (svc.get("spec") or {}).get("ports") or ()
        if not any(
            str(p.get("name") or "").lower() == port
            and str(p.get("protocol", "TCP")).lower() == proto
            for p in ports
        ):
            return None
        return {QTYPE.SRV: self._srv_list(ns, name, svc, port, proto)}

    def _srv_list(
        self, ns: str, name: str, svc: Obj, port: str | None, proto: str | None
    ) -> list[RD]:
        """SRV rdata for the Service's named ports (or the one asked): the Service
        name as target, or, headless, each ready endpoint's own name and port."""

        def wanted(p: Obj) -> bool:
            pname = str(p.get("name") or "").lower()
            pproto = str(p.get("protocol", "TCP")).lower()
            return bool(pname) and (port is None or (pname == port and pproto == proto))

        out: list[RD] = []
        if not self._headless(svc):
            target = self._fqdn(name, ns, "svc")
            for p in (svc.get("spec") or {}).get("ports") or ():
                if wanted(p) and isinstance(p.get("port"), int):
                    out.append(SRV(0, 100, p["port"], target))
            return out
        for eps, ep in self._ready(ns, name, svc):
            addresses = ep.get("addresses") or ()
            if not addresses:
                continue
            host = str(ep.get("hostname") or _dashed(addresses[0])).lower()
            target = self._fqdn(host, name, ns, "svc")
            for p in eps.get("ports") or ():
                if wanted(p) and isinstance(p.get("port"), int):
                    out.append(SRV(0, 100, p["port"], target))
        return out

    @staticmethod
    def _pod_rdata(label: str) -> RData | None:
        """``198-18-0-5`` -> A 198.18.0.5; ``fd00--5`` -> AAAA fd00::5 ("pods
        insecure": the name is the address, no pod need exist)."""
        ip = _ip(label.replace("-", ".")) or _ip(label.replace("-", ":"))
        if ip is None:
            return None
        return _address_rdata([str(ip)])


def handle_packet(records: Records, data: bytes, *, udp: bool) -> bytes | None:
    """The reply to one DNS message, or None to drop it (unparsable, or itself a
    reply: answering replies could loop two servers at each other).

    Over UDP a reply larger than the client can take (512 bytes, or its EDNS size
    up to 1232) goes back as the question with TC set, so the client retries
    over TCP.
    """
    try:
        request = DNSRecord.parse(data)
    except Exception:  # untrusted bytes: any parse failure means drop
        return None
    if request.header.qr:
        return None
    try:
        reply = records.respond(request)
        packed = reply.pack()
    except Exception:
        log.exception("answering %s failed", request.questions[:1])
        reply = DNSRecord(
            DNSHeader(
                id=request.header.id,
                bitmap=0,
                qr=1,
                rd=request.header.rd,
                ra=1,
                rcode=RCODE.SERVFAIL,
            ),
            questions=list(request.questions[:1]),
        )
        packed = reply.pack()
    limit = MAX_TCP_SIZE
    if udp:
        opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        limit = (
            PLAIN_UDP_SIZE if opt is None else max(PLAIN_UDP_SIZE, min(opt.rclass, EDNS_UDP_SIZE))
        )
    if len(packed) <= limit:
        return packed
    truncated = DNSRecord(
        reply.header, questions=reply.questions, ar=[rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    )
    truncated.header.tc = 1
    return truncated.pack()
