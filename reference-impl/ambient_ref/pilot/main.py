"""The control plane (istiod's role): ``ambient-reference pilot``.

One process, one HTTPS port (15012) for both services a ztunnel needs:

- the CA (``POST /v1/certificate``, ``ca/server.py``), with the root of trust kept
  in the Secret ``istio-ca-secret`` and published as ConfigMap ``istio-ca-root-cert``;
- the configuration stream (``GET /v1/xds``, ``xds/server.py``): workloads, services
  and L4 authorizations computed from namespaces, pods, services and
  AuthorizationPolicies, pushed as a snapshot then versioned deltas.

It writes each AuthorizationPolicy's status (``ZtunnelAccepted``) so users see what
ztunnel enforces of it.  Readiness and metrics are plain HTTP on 15014.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ..ca.bootstrap import KubeSecretStore, load_or_create_root
from ..ca.server import (
    ca_app,
    kube_pods_on_node,
    serving_certificate,
    token_review_authenticator,
)
from ..kube import SA_DIR, Informer, KubeClient, KubeError
from ..policy.convert import convert_for_xds
from ..policy.l7 import compile_l7
from ..process import kube_client, stop_on_signals
from ..xds.compute import compute_services, compute_workloads, policy_resources
from ..xds.gateways import condition, status_time
from ..xds.protocol import ResourceStore
from ..xds.server import install as install_xds
from ..xds.waypoints import Waypoint, bind, find_waypoints, has_addresses, waypoint_manifests
from .gateways import INGRESS_DEPLOYMENTS_SELECTOR, ROUTES_PATH, GatewayController
from .owned import create_owned

log = logging.getLogger("pilot")

AUTHZ_PATH = "/apis/security.istio.io/v1/authorizationpolicies"
GATEWAYS_PATH = "/apis/gateway.networking.k8s.io/v1/gateways"
WAYPOINT_DEPLOYMENTS = "/apis/apps/v1/deployments"


class ControlPlane:
    def __init__(self, kube: KubeClient, namespace: str, trust_domain: str,
                 trusted_node_accounts: set[str]) -> None:
        self.kube = kube
        self.namespace = namespace
        self.trust_domain = trust_domain
        self.trusted = trusted_node_accounts
        self.store = ResourceStore()
        self._dirty = asyncio.Event()
        self.ready = asyncio.Event()
        self.namespaces = Informer(kube, "/api/v1/namespaces", self._changed)
        self.pods = Informer(kube, "/api/v1/pods", self._changed)
        self.services = Informer(kube, "/api/v1/services", self._changed)
        self.policies = Informer(kube, AUTHZ_PATH, self._changed)
        self.gateways = Informer(kube, GATEWAYS_PATH, self._changed)
        self.waypoint_deployments = Informer(kube, WAYPOINT_DEPLOYMENTS, self._changed,
                                             label_selector="istio.io/waypoint")
        self.routes = Informer(kube, ROUTES_PATH, self._changed)
        self.ingress_deployments = Informer(kube, WAYPOINT_DEPLOYMENTS, self._changed,
                                            label_selector=INGRESS_DEPLOYMENTS_SELECTOR)
        self.gateway_api = GatewayController(kube, self.gateways, self.services, self.routes,
                                             self.ingress_deployments, WAYPOINT_IMAGE)
        self.waypoints: dict[tuple[str, str], Waypoint] = {}
        self._written_status: dict[str, list[dict[str, Any]]] = {}
        self.registry = CollectorRegistry()
        self.pushes = Counter("pilot_xds_pushes", "Configuration versions pushed",
                              registry=self.registry)
        self.workload_count = Gauge("pilot_workloads", "Workloads known",
                                    registry=self.registry)

    def _changed(self, *_: object) -> None:
        self._dirty.set()

    async def run_computation(self) -> None:
        for informer in self._informers():
            informer.start()
        for informer in self._informers():
            await informer.synced.wait()
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.push()
            self.ready.set()
            await self.write_policy_status()
            await self.deploy_waypoints()
            await self.gateway_api.sync()

    def _informers(self) -> list[Informer]:
        return [self.namespaces, self.pods, self.services, self.policies, self.gateways,
                self.waypoint_deployments, self.routes, self.ingress_deployments]

    def push(self) -> None:
        """Recompute everything from the informers' copies and hand it to the store, which
        sends only the difference (if any) to every connected ztunnel."""
        namespaces = list(self.namespaces.items.values())
        pods = list(self.pods.items.values())
        services = list(self.services.items.values())
        workloads = compute_workloads(namespaces, pods, services, self.trust_domain)
        svcs = compute_services(services, pods, self.trust_domain)
        self.waypoints = find_waypoints(self.gateways.items.values())
        service_use, workload_use = bind(self.waypoints, namespaces, services, pods)
        for (ns, name), wp in service_use.items():
            svc = svcs.get(f"{ns}/{name}.{ns}.svc.cluster.local")
            if svc is not None and self._waypoint_bindable(wp):
                svc.waypoint = self._ref(wp)
        for uid, wp in workload_use.items():
            if uid in workloads and self._waypoint_bindable(wp):
                workloads[uid].waypoint = self._ref(wp)
        authorizations, self._statuses = policy_resources(
            self.policies.items.values(), self._convert)
        delta = self.store.replace({
            "workload": {k: w.to_dict() for k, w in workloads.items()},
            "service": {k: s.to_dict() for k, s in svcs.items()},
            "authorization": authorizations,
        })
        self.workload_count.set(len(workloads))
        if delta is not None:
            self.pushes.inc()

    def _convert(self, policy: dict[str, Any]) -> tuple[dict[str, Any] | None,
                                                       list[dict[str, Any]]]:
        """A policy for ztunnels and its ``ZtunnelAccepted`` condition; a ``targetRefs``
        policy is the waypoints' and gets their ``WaypointAccepted`` condition instead,
        as istiod writes one (istio/istio pilot/pkg/model/status)."""
        authorization, conditions = convert_for_xds(policy, self.namespace, self.trust_domain)
        spec = policy.get("spec") or {}
        if not conditions and (spec.get("targetRefs") or spec.get("targetRef")):
            conditions = compile_l7(policy, self.namespace)[1]
        return authorization, conditions

    def _ref(self, wp: Waypoint) -> dict[str, Any]:
        return {**wp.ref(), "identity": f"spiffe://{self.trust_domain}/ns/{wp.namespace}/sa/"
                                        f"{wp.deployment}"}

    def _waypoint_serving(self, wp: Waypoint) -> bool:
        dep = self.waypoint_deployments.items.get(wp.key)
        return bool(dep) and (dep.get("status") or {}).get("readyReplicas", 0) >= 1

    def _waypoint_bindable(self, wp: Waypoint) -> bool:
        """A binding takes effect once the waypoint has run, and then stays: until it
        first serves, traffic stays L4; once it served, its Gateway keeps its address
        and its users stay bound even with no ready pod, so their traffic fails rather
        than skip the waypoint's policies (as istiod, which binds a Gateway with status
        addresses, set once ready and never removed: istio/istio
        pilot/pkg/serviceregistry/ambient/waypoints.go)."""
        gateway = self.gateways.items.get((wp.namespace, wp.gateway)) or {}
        return self._waypoint_serving(wp) or has_addresses(gateway)

    async def deploy_waypoints(self) -> None:
        """A Deployment, Service and account per waypoint Gateway (owned by it, so they
        go with it), and the Gateway's status."""
        for (ns, gw_name), wp in self.waypoints.items():
            gateway = self.gateways.items.get((ns, gw_name))
            if gateway is None:
                continue
            await create_owned(self.kube, gateway, waypoint_manifests(wp, WAYPOINT_IMAGE))
            await self._gateway_status(gateway, wp)

    async def _gateway_status(self, gateway: dict[str, Any], wp: Waypoint) -> None:
        ns = wp.namespace
        svc = self.services.items.get((ns, wp.deployment))
        address = ((svc or {}).get("spec") or {}).get("clusterIP")
        programmed = self._waypoint_serving(wp) and bool(address)
        now = status_time()
        old = {c.get("type"): c for c in (gateway.get("status") or {}).get("conditions") or ()}
        generation = int(gateway["metadata"].get("generation", 1))

        def cond(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            return condition(old, ctype, ok, reason, message, generation, now)

        status = {"conditions": [
            cond("Accepted", True, "Accepted", "Resource accepted"),
            cond("Programmed", programmed, "Programmed" if programmed else "Pending",
                 f"waypoint {wp.deployment} is ready" if programmed
                 else f"waypoint {wp.deployment} is not ready yet")]}
        if address and (programmed or has_addresses(gateway)):
            status["addresses"] = [{"type": "IPAddress", "value": address}]
        if gateway.get("status") == status:
            return
        try:
            await self.kube.patch(f"{GATEWAYS_PATH.rsplit('/', 1)[0]}/namespaces/{ns}/"
                                  f"gateways/{wp.gateway}/status", {"status": status})
        except KubeError as exc:
            log.warning("status of Gateway %s/%s: %s", ns, wp.gateway, exc)

    async def write_policy_status(self) -> None:
        for key, conditions in self._statuses.items():
            ns, name = key.split("/", 1)
            policy = self.policies.items.get((ns, name))
            if policy is None:
                continue
            # Keyed by uid too: a policy deleted and made again needs its status again.
            written_key = f"{key}/{policy['metadata'].get('uid')}"
            if self._written_status.get(written_key) == conditions:
                continue
            now = status_time()
            stamped = [{**c, "lastTransitionTime": c.get("lastTransitionTime") or now}
                       for c in conditions]
            try:
                await self.kube.patch(f"{AUTHZ_PATH.replace('/authorizationpolicies', '')}"
                                      f"/namespaces/{ns}/authorizationpolicies/{name}/status",
                                      {"status": {"conditions": stamped}})
                self._written_status[written_key] = conditions
            except KubeError as exc:
                if exc.status != 404:
                    log.warning("status of AuthorizationPolicy %s not written: %s", key, exc)

    async def stop(self) -> None:
        for informer in self._informers():
            await informer.stop()


async def amain(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    kube = kube_client(args.kubeconfig)
    api_ca = (SA_DIR / "ca.crt").read_bytes() if not args.kubeconfig else None
    authority = await load_or_create_root(KubeSecretStore(kube), args.namespace,
                                          trust_domain=args.trust_domain,
                                          publish_namespaces=[args.namespace])
    log.info("root of trust ready (trust domain %s)", args.trust_domain)
    chain, key = serving_certificate(authority, dns_names=[
        f"istiod.{args.namespace}.svc", f"istiod.{args.namespace}.svc.cluster.local",
        "istiod", "localhost", "127.0.0.1"])
    token = kube.token
    authenticate = token_review_authenticator(kube.server, token, api_ca)
    app = ca_app(authority, authenticate, kube_pods_on_node(kube.server, token, api_ca),
                 set(args.trusted_node_accounts))
    cp = ControlPlane(kube, args.namespace, args.trust_domain, set(args.trusted_node_accounts))
    endpoint = install_xds(app, cp.store, authenticate)
    from ..ca.server import serve_https

    runner, port = await serve_https(app, "0.0.0.0", args.port, chain, key)
    health = web.Application()

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok" if cp.ready.is_set() else "not ready",
                            status=200 if cp.ready.is_set() else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(cp.registry),
                            content_type="text/plain", charset="utf-8")

    async def syncz(_: web.Request) -> web.Response:
        """Which configuration version each ztunnel acknowledged, against the current one
        (what ``istioctl proxy-status`` shows): a change is in force once all match."""
        return web.json_response({
            "version": cp.store.version,
            "clients": [{"node": s.node, "acked": s.acked_version, "sent": s.sent_version,
                         "nack": list(s.nack) if s.nack else None}
                        for s in endpoint.sessions.values()],
        })

    health.router.add_get("/ready", ready)
    health.router.add_get("/metrics", metrics)
    health.router.add_get("/debug/syncz", syncz)
    health_runner = web.AppRunner(health, access_log=None)
    await health_runner.setup()
    await web.TCPSite(health_runner, "0.0.0.0", args.monitoring_port).start()
    log.info("serving CA and configuration on :%d, health on :%d", port, args.monitoring_port)
    computation = asyncio.ensure_future(cp.run_computation())
    await stop.wait()
    computation.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await computation
    await cp.stop()
    await runner.cleanup()
    await health_runner.cleanup()
    for closer in (authenticate,):
        with contextlib.suppress(Exception):
            await closer.close()
    await kube.close()
    return 0


# The image waypoints run, as Istio's proxy image is a setting of istiod: a cluster
# that mirrors images, or a build under test, points it elsewhere.
WAYPOINT_IMAGE = os.environ.get("WAYPOINT_IMAGE", "ambient-reference/ambient:0.1.0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ambient-reference pilot")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "istio-system"))
    parser.add_argument("--trust-domain", default=os.environ.get("TRUST_DOMAIN",
                                                                 "cluster.local"))
    parser.add_argument("--trusted-node-accounts", nargs="*", default=os.environ.get(
        "CA_TRUSTED_NODE_ACCOUNTS", "istio-system/ztunnel").split(","))
    parser.add_argument("--port", type=int, default=15012)
    parser.add_argument("--monitoring-port", type=int, default=15014)
    parser.add_argument("--kubeconfig", default=None,
                        help="run outside the cluster (tests); default: in-cluster config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(amain(args))
