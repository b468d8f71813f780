"""The waypoint process: ``ambient-reference waypoint``.

It terminates HBONE on 15008 with its own identity; each tunnel carries HTTP/1.1,
which it parses (``http.py``) and, request by request, authorizes (``policy/l7/``),
routes (``routing/``) and forwards over a new HBONE tunnel to the chosen
endpoint's ztunnel, which then sees the waypoint's identity.  It reads its
configuration (Services, pods, VirtualServices, DestinationRules, HTTPRoutes,
AuthorizationPolicies) straight from the Kubernetes API.  Telemetry on
``:15020/stats/prometheus``, readiness on ``:15021/healthz/ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ..ca.client import CertificateError, CertificateManager
from ..ca.root import fetch_root
from ..hbone import ConnectRequest, ConnectResponse, HboneClient, HboneServer, Tunnel
from ..hbone import WorkloadCertificate as Cert
from ..kube import SA_DIR, Informer, KubeClient
from ..policy.l7 import (
    Request as L7Request,
)
from ..policy.l7 import (
    applies_to_waypoint,
    authorize_l7,
    compile_l7,
)
from ..process import stop_on_signals
from ..xds.compute import compute_workloads
from ..xds.types import Workload
from ..xds.waypoints import Waypoint as WaypointRef
from ..xds.waypoints import bind, find_waypoints
from ..ztunnel.metrics import Peer
from .http import Deny, Forward, LocalReply, Request, RetryPolicy, serve_http
from .routing import HttpRequest, RouteTable
from .telemetry import HttpMetrics, RequestLabels

log = logging.getLogger("waypoint")

PREVIEW = "istio-mesh"
PATHS = {
    "services": "/api/v1/services",
    "pods": "/api/v1/pods",
    "namespaces": "/api/v1/namespaces",
    "vs": "/apis/networking.istio.io/v1/virtualservices",
    "dr": "/apis/networking.istio.io/v1/destinationrules",
    "routes": "/apis/gateway.networking.k8s.io/v1/httproutes",
    "policies": "/apis/security.istio.io/v1/authorizationpolicies",
    "gateways": "/apis/networking.istio.io/v1/gateways",
    "waypoint_gateways": "/apis/gateway.networking.k8s.io/v1/gateways",
}
INGRESS_KEY = ("istio-system", "istio-ingressgateway")
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
INGRESS_SELECTOR = {"istio": "ingressgateway"}


def ingress_virtual_services(gateways: list[dict[str, Any]],
                             virtual_services: list[dict[str, Any]],
                             host: str) -> list[dict[str, Any]]:
    """The VirtualServices bound to an Istio Gateway this ingress serves, rewritten as
    routes of the ingress's own Service (``host``), so the waypoint's routing applies
    to them unchanged; destinations keep resolving in each VirtualService's namespace."""
    served = set()
    for gw in gateways:
        selector = (gw.get("spec") or {}).get("selector") or {}
        if selector and all(INGRESS_SELECTOR.get(k) == v for k, v in selector.items()):
            meta = gw["metadata"]
            served |= {meta["name"], f"{meta['namespace']}/{meta['name']}"}
    specific, catch_all = [], []
    for vs in virtual_services:
        gateways_of = (vs.get("spec") or {}).get("gateways") or []
        if not any(g in served for g in gateways_of):
            continue
        hosts = [str(h) for h in (vs["spec"].get("hosts") or ["*"])]
        spec = {**vs["spec"], "gateways": [], "hosts": [host]}
        if "*" in hosts:
            catch_all.append({**vs, "spec": spec})
            continue
        # The VirtualService's hosts select requests by their Host header: several
        # namespaces may share this ingress, each with its own host names.
        by_host = {"host": {"regex": host_regex(hosts)}}
        rules = []
        for rule in spec.get("http") or ():
            matches = rule.get("match") or [{}]
            rules.append({**rule, "match": [{**m, "headers": {**(m.get("headers") or {}),
                                                               **by_host}} for m in matches]})
        specific.append({**vs, "spec": {**spec, "http": rules}})
    return specific + catch_all


def gateway_api_routes(routes: list[dict[str, Any]], namespace: str, gateway: str,
                       service: str, ports: list[int]) -> list[dict[str, Any]]:
    """The HTTPRoutes attached to Gateway ``namespace/gateway`` (class ``istio``),
    rewritten as routes of its own Service (``service``, the ``<name>-istio`` the
    control plane made) on each listener port, so the waypoint's HTTPRoute routing
    applies unchanged; ``hostnames`` become a Host-header match, as a Gateway listener
    selects routes by hostname.  Backends keep resolving in each route's namespace."""
    out = []
    for route in routes:
        spec = route.get("spec") or {}
        route_ns = route["metadata"]["namespace"]
        attached = [ref for ref in spec.get("parentRefs") or ()
                    if ref.get("name") == gateway
                    and ref.get("kind", "Gateway") == "Gateway"
                    and ref.get("group", GATEWAY_API_GROUP) == GATEWAY_API_GROUP
                    and ref.get("namespace", route_ns) == namespace]
        if not attached:
            continue
        ports_of = sorted({int(ref["port"]) for ref in attached if ref.get("port")} or ports)
        parents = [{"group": "", "kind": "Service", "name": service, "namespace": namespace,
                    "port": port} for port in ports_of]
        hostnames = [str(h) for h in spec.get("hostnames") or ()]
        rules = spec.get("rules") or []
        if hostnames and "*" not in hostnames:
            by_host = {"type": "RegularExpression", "name": "Host",
                       "value": host_regex(hostnames)}
            rules = [{**rule, "matches": [
                {**m, "headers": [*(m.get("headers") or []), by_host]}
                for m in (rule.get("matches") or [{}])]} for rule in rules]
        out.append({**route, "spec": {**spec, "parentRefs": parents, "rules": rules,
                                      "hostnames": []}})
    return out


def host_regex(hosts: list[str]) -> str:
    """A regex for Host header values naming one of ``hosts`` (``*.`` prefixes allowed),
    with or without a port."""
    parts = [(r"[^.]+\." + re.escape(h[2:])) if h.startswith("*.") else re.escape(h)
             for h in hosts]
    return rf"^({'|'.join(parts)})(:\d+)?$"


class TunnelStream:
    """An HBONE tunnel as the HTTP engine's byte stream, closing gracefully.

    The engine closes a connection after a ``Connection: close`` response; a tunnel's
    own ``close`` resets the stream when the peer has not finished, which the client's
    ztunnel would pass on as a reset before the client read the response.  Here a
    close ends our direction (END_STREAM) and lets the peer finish.
    """

    def __init__(self, tunnel: Tunnel, linger: float = 30.0) -> None:
        self.tunnel = tunnel
        self.linger = linger
        self._closing: asyncio.Task[None] | None = None

    async def read(self, n: int = -1) -> bytes:
        return await self.tunnel.read(n) if n > 0 else await self.tunnel.read()

    def write(self, data: bytes) -> None:
        self.tunnel.write(data)

    async def drain(self) -> None:
        await self.tunnel.drain()

    def close(self) -> None:
        if self._closing is None:
            with contextlib.suppress(Exception):
                self.tunnel.write_eof()
            self._closing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(self.tunnel.wait_closed(), self.linger)
        except (TimeoutError, Exception):
            self.tunnel.close()


def _peer(w: Workload | None, principal: str | None = None) -> Peer:
    if w is None:
        return Peer(principal=principal or "unknown")
    return Peer(workload=w.workload_name or w.name, namespace=w.namespace,
                principal=principal or w.identity, app=w.app or "unknown",
                version=w.version or "unknown", canonical_service=w.canonical_name or "unknown",
                canonical_revision=w.canonical_revision or "unknown")


class Waypoint:
    def __init__(self, kube: KubeClient, namespace: str, gateway: str, flavour: str,
                 identity: str, istiod: str, token_file: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.gateway = gateway
        self.flavour = flavour
        self.identity = identity
        self.istiod = istiod
        self.token_file = token_file
        self.informers = {k: Informer(kube, p, self._changed) for k, p in PATHS.items()}
        self.metrics = HttpMetrics()
        self.client = HboneClient()
        self.rng = random.Random()
        self.ready = asyncio.Event()
        self.table = RouteTable.build([], [], [], {})
        self.workloads: dict[str, Workload] = {}
        self.preview_waypoints: dict[str, WaypointRef] = {}
        self.by_ip: dict[str, Workload] = {}
        self.vips: dict[tuple[str, int], tuple[str, str]] = {}
        self.policies: list[Any] = []
        self.cert: Cert | None = None
        self.manager: CertificateManager | None = None
        self.served_account: str | None = None
        self.ingress = False
        # Gateway API ingress (class istio): the listener ports, served as plain HTTP
        self.gateway_api_ports: list[int] = []

    def _changed(self, *_: object) -> None:
        if all(i.synced.is_set() for i in self.informers.values()):
            self.rebuild()

    def items(self, key: str) -> list[dict[str, Any]]:
        return list(self.informers[key].items.values())

    def rebuild(self) -> None:
        services = self.items("services")
        pods = self.items("pods")
        self.workloads = compute_workloads(self.items("namespaces"), pods, services)
        if self.ingress:
            self.preview_waypoints = self._preview_waypoints(pods, services)
        self.by_ip = {ip: w for w in self.workloads.values()
                      if w.network_mode == "STANDARD" for ip in w.addresses}
        self.vips = {}
        for svc in services:
            meta = svc["metadata"]
            ip = (svc.get("spec") or {}).get("clusterIP")
            for port in (svc.get("spec") or {}).get("ports") or ():
                if ip and ip != "None":
                    self.vips[(ip, int(port["port"]))] = (meta["namespace"], meta["name"])
        known = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
        virtual_services = self.items("vs")
        if self.ingress:
            virtual_services = ingress_virtual_services(
                self.items("gateways"), virtual_services,
                f"{INGRESS_KEY[1]}.{INGRESS_KEY[0]}.svc.cluster.local")
        routes = [] if self.ingress else self.items("routes")
        if self.gateway_api_ports:
            virtual_services = []
            routes = gateway_api_routes(self.items("routes"), self.namespace, self.gateway,
                                        self.ingress_service[1], self.gateway_api_ports)
        self.table = RouteTable.build(virtual_services, self.items("dr"), routes, known)
        served_keys = {key for key in self._served_services()}
        policies = []
        for policy in self.items("policies"):
            labels = [w.labels for w in self.workloads.values() if self._serves(w)]
            if applies_to_waypoint(policy, waypoint_name=self.gateway,
                                   waypoint_namespace=self.namespace, service_keys=served_keys,
                                   flavour="selector" if self.flavour == PREVIEW
                                   else "targetRefs",
                                   served_workload_labels=labels):
                compiled, _ = compile_l7(policy)
                if compiled is not None:
                    policies.append(compiled)
        self.policies = policies
        self.ready.set()

    def _preview_waypoints(self, pods: list[dict[str, Any]],
                           services: list[dict[str, Any]]) -> dict[str, WaypointRef]:
        """Workloads served by a 2022-flavour waypoint, which the ingress must go
        through: in the preview a workload's waypoint enforced its whole policy and its
        ztunnel admitted only the waypoint (the walkthrough's step 9 reaches productpage
        through the ingress after step 8's L7 policy)."""
        _, workload_use = bind(find_waypoints(self.items("waypoint_gateways")),
                               self.items("namespaces"), services, pods)
        return {uid: wp for uid, wp in workload_use.items() if wp.flavour == PREVIEW}

    def _serves(self, w: Workload) -> bool:
        if self.flavour != PREVIEW:
            return True
        return w.namespace == self.namespace and self.served_account in (None,
                                                                          w.service_account)

    def _served_services(self) -> set[tuple[str, str]]:
        out = set()
        for svc in self.items("services"):
            meta = svc["metadata"]
            out.add((meta["namespace"], meta["name"]))
        return out

    # -- one CONNECT ------------------------------------------------------------------

    async def on_connect(self, request: ConnectRequest) -> ConnectResponse:
        host, _, port_text = request.authority.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            return ConnectResponse.reject(400, f"bad authority {request.authority!r}")
        service = self.vips.get((host, port))
        target: Workload | None = None
        if service is None:
            target = self.by_ip.get(host)
            if target is None:
                return ConnectResponse.reject(400, f"{request.authority} is not served here")
            for key, mappings in target.services.items():
                if any(m.target_port == port for m in mappings):
                    ns, hostname = key.split("/", 1)
                    service = (ns, hostname.split(".", 1)[0])
                    break
        source_ip = request.peer_address[0]
        principal = request.peer_identity.uri

        async def serve(tunnel: Tunnel) -> None:
            stream = TunnelStream(tunnel)
            await serve_http(stream, stream,
                             lambda r: self.decide(r, service, host, port, target, source_ip,
                                                   principal),
                             self.connect_upstream,
                             lambda r, d, s: self.labels(service, principal, source_ip, d),
                             self.metrics)

        return ConnectResponse.serve_with(serve)

    @property
    def ingress_service(self) -> tuple[str, str]:
        """The Service this ingress is reached through: istio-ingressgateway, or a
        Gateway API Gateway's ``<name>-istio``."""
        if self.gateway_api_ports:
            return (self.namespace, f"{self.gateway}-istio")
        return INGRESS_KEY

    async def serve_ingress(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, port: int = 80) -> None:
        """Plain HTTP from outside the mesh, routed by the Gateway-bound VirtualServices
        (or, for a Gateway of class istio, its HTTPRoutes)."""
        peer_ip = writer.get_extra_info("peername")[0]
        service = self.ingress_service
        await serve_http(reader, writer,
                         lambda r: self.decide(r, service, "", port, None, peer_ip,
                                               None, check_policy=False),
                         self.connect_upstream,
                         lambda r, d, s: self.labels(service, None, peer_ip, d),
                         self.metrics)

    async def decide(self, request: Request, service: tuple[str, str] | None, host: str,
                     port: int, target: Workload | None, source_ip: str,
                     principal: str | None, check_policy: bool = True) -> Any:
        service_key = service or (target.namespace if target else "", "")
        if check_policy:
            l7 = L7Request(method=request.method, path=request.target,
                           host=request.authority or host, port=port,
                           headers=request.headers, source_ip=source_ip,
                           source_principal=principal)
            decision = authorize_l7(self.policies, l7, service_key,
                                    waypoint=(self.namespace, self.gateway))
            if not decision.allowed:
                return Deny()
        if service is None:  # a workload with no Service on that port: straight to it
            assert target is not None
            return Forward(upstream=(target.addresses[0], port, target.uid))
        route = self.table.route(service, port, HttpRequest(
            request.method, request.target, request.headers, request.authority or host),
            self.rng)
        if route.kind == "abort":
            return LocalReply(route.abort_status or 500, "fault filter abort", "FI",
                              delay=route.delay)
        if route.kind == "error":
            return LocalReply(route.abort_status or 500, route.reason, "UH")
        if self.ingress and (route.destination or service) == service:
            # nothing routes this request anywhere but back to the gateway: Envoy's 404
            return LocalReply(404, "no route matched", "NR")
        endpoint = self.pick(route.destination or service, route.port, route.subset_labels)
        if endpoint is None:
            return LocalReply(503, "no healthy upstream", "UH")
        w, target_port = endpoint
        retry = RetryPolicy.parse(route.retries.attempts, ",".join(route.retries.retry_on),
                                  route.retries.per_try_timeout) if route.retries \
            else RetryPolicy()
        ops = route.header_ops
        return Forward(upstream=(w.addresses[0], target_port, w.uid), delay=route.delay,
                       timeout=route.timeout, retry=retry, set_headers=dict(ops.set),
                       add_headers=tuple(ops.add), remove_headers=tuple(ops.remove))

    def pick(self, service: tuple[str, str], port: int,
             subset: dict[str, str] | None) -> tuple[Workload, int] | None:
        key = f"{service[0]}/{service[1]}.{service[0]}.svc.cluster.local"
        candidates = []
        for w in self.workloads.values():
            if not w.healthy or not w.addresses:
                continue
            if subset and any(w.labels.get(k) != v for k, v in subset.items()):
                continue
            for mapping in w.services.get(key, []):
                if mapping.service_port == port:
                    candidates.append((w, mapping.target_port))
        return self.rng.choice(candidates) if candidates else None

    async def connect_upstream(self, key: Any) -> tuple[Any, Any]:
        ip, port, uid = key
        w = self.workloads.get(uid)
        wp = self.preview_waypoints.get(uid) if self.ingress else None
        if wp is not None:
            proxies = [p for p in self.workloads.values()
                       if p.namespace == wp.namespace and p.app == wp.deployment
                       and p.healthy and p.addresses]
            if proxies:
                assert self.cert is not None
                via = self.rng.choice(proxies)
                tunnel = await self.client.open((via.addresses[0], 15008), f"{ip}:{port}", [],
                                                self.cert, [via.identity])
                stream = TunnelStream(tunnel)
                return stream, stream
        if w is not None and w.protocol == "HBONE":
            assert self.cert is not None
            tunnel = await self.client.open((ip, 15008), f"{ip}:{port}", [], self.cert,
                                            [w.identity])
            stream = TunnelStream(tunnel)
            return stream, stream
        return await asyncio.open_connection(ip, port)

    def labels(self, service: tuple[str, str] | None, principal: str | None, source_ip: str,
               decision: Any) -> RequestLabels:
        source = self.by_ip.get(source_ip)
        dest = None
        if isinstance(decision, Forward):
            dest = self.workloads.get(decision.upstream[2])
        ns, name = service or ("unknown", "unknown")
        return RequestLabels(source=_peer(source, principal), destination=_peer(dest),
                             service=f"{name}.{ns}.svc.cluster.local" if service
                             else "unknown", service_namespace=ns, service_name=name)

    # -- life cycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, listen_port: int) -> None:
        root = await fetch_root(self.kube, self.istiod_namespace)
        self.manager = CertificateManager(f"https://{self.istiod}",
                                          lambda: self.token_file.read_text().strip(), root)
        delay = 0.2
        while True:  # the control plane may still be starting: back off, do not crash
            try:
                bundle = await self.manager.get(self.identity)
                break
            except (CertificateError, OSError) as exc:
                log.info("certificate for %s not issued yet (%s); retrying in %.1fs",
                         self.identity, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.cert = Cert(bundle.chain_pem, bundle.key_pem, bundle.root_pem)
        self.manager.add_listener(lambda b: setattr(self, "cert", Cert(
            b.chain_pem, b.key_pem, b.root_pem)))
        for informer in self.informers.values():
            informer.start()
        for informer in self.informers.values():
            await informer.synced.wait()
        self.rebuild()
        if self.gateway_api_ports:
            servers = []
            for port in self.gateway_api_ports:
                servers.append(await asyncio.start_server(
                    lambda r, w, port=port: self.serve_ingress(r, w, port), "0.0.0.0", port))
            log.info("Gateway %s/%s serving HTTP on %s", self.namespace, self.gateway,
                     ", ".join(f":{p}" for p in self.gateway_api_ports))
            await stop.wait()
            for http_server in servers:
                http_server.close()
        elif self.ingress:
            http_server = await asyncio.start_server(self.serve_ingress, "0.0.0.0", listen_port)
            log.info("ingress gateway serving HTTP on :%d", listen_port)
            await stop.wait()
            http_server.close()
        else:
            server = HboneServer(self.on_connect, lambda _: self.cert.server)  # type: ignore
            sock = socket.create_server(("0.0.0.0", listen_port), reuse_port=False)
            sock.setblocking(False)
            listener = await server.serve(sock)
            log.info("waypoint %s/%s (%s) serving HBONE on :%d", self.namespace, self.gateway,
                     self.flavour, listen_port)
            await stop.wait()
            await listener.close()
            await server.close()
        for informer in self.informers.values():
            await informer.stop()
        await self.client.close()
        await self.manager.close()

    @property
    def istiod_namespace(self) -> str:
        return self.istiod.split(".")[1] if "." in self.istiod else "istio-system"


async def serve_status(w: Waypoint) -> list[web.AppRunner]:
    async def ready(_: web.Request) -> web.Response:
        ok = w.ready.is_set()
        return web.Response(text="ready" if ok else "not ready", status=200 if ok else 503)

    async def configz(_: web.Request) -> web.Response:
        """The configuration objects this waypoint holds, by resourceVersion: a change is
        in force here once its version shows (tests and operators wait on this)."""
        return web.json_response({
            key: {f"{ns}/{name}": obj["metadata"].get("resourceVersion")
                  for (ns, name), obj in w.informers[key].items.items()}
            for key in ("vs", "dr", "routes", "policies", "services")})

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=w.metrics.exposition(), content_type="text/plain",
                            charset="utf-8")

    runners = []
    for routes, port in (((("/healthz/ready", ready), ("/debug/configz", configz)), 15021),
                         ((("/stats/prometheus", stats), ("/metrics", stats)), 15020)):
        app = web.Application()
        for path, handler in routes:
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        runners.append(runner)
    return runners


async def amain(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    kube = KubeClient.in_cluster()
    account = args.service_account
    identity = f"spiffe://{args.trust_domain}/ns/{args.namespace}/sa/{account}"
    w = Waypoint(kube, args.namespace, args.gateway, args.flavour, identity, args.istiod,
                 SA_DIR / "token")
    w.served_account = args.serves_account or None
    w.ingress = args.ingress or args.gateway_api
    if args.gateway_api:
        w.gateway_api_ports = args.listen_ports
    runners = await serve_status(w)
    try:
        await w.run(stop, args.port)
    finally:
        for runner in runners:
            await runner.cleanup()
        await kube.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="ambient-reference waypoint")
    parser.add_argument("--namespace", default=env.get("POD_NAMESPACE", "default"))
    parser.add_argument("--gateway", default=env.get("GATEWAY_NAME", "waypoint"))
    parser.add_argument("--flavour", default=env.get("WAYPOINT_FLAVOUR", "istio-waypoint"))
    parser.add_argument("--service-account", default=env.get("SERVICE_ACCOUNT", ""))
    parser.add_argument("--serves-account", default=env.get("SERVES_ACCOUNT", ""))
    parser.add_argument("--trust-domain", default=env.get("TRUST_DOMAIN", "cluster.local"))
    parser.add_argument("--istiod", default=env.get("CA_ADDRESS",
                                                    "istiod.istio-system.svc:15012"))
    parser.add_argument("--port", type=int, default=None,
                        help="default: 15008 (HBONE), or 8080 (HTTP) with --ingress")
    parser.add_argument("--ingress", action="store_true",
                        default=env.get("INGRESS_MODE", "").lower() == "true",
                        help="serve plain HTTP from outside the mesh (istio-ingressgateway)")
    parser.add_argument("--gateway-api", action="store_true",
                        default=env.get("GATEWAY_API_INGRESS", "").lower() == "true",
                        help="serve a Gateway of class istio (--gateway): plain HTTP on its "
                             "listener ports, routed by its HTTPRoutes")
    parser.add_argument("--listen-ports", default=env.get("LISTEN_PORTS", "80"),
                        type=lambda text: [int(p) for p in text.split(",") if p.strip()],
                        help="with --gateway-api: the listener ports, comma-separated")
    args = parser.parse_args(argv)
    if args.port is None:
        args.port = 8080 if args.ingress else 15008
    if not args.service_account:
        parser.error("--service-account (or SERVICE_ACCOUNT) is required")
    logging.basicConfig(level=env.get("LOG_LEVEL", "INFO"), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(amain(args))
