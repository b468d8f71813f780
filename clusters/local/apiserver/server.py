"""The API server process's assembly: store, kinds, controllers and HTTPS listener."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..controllers.base import Controller
from ..controllers.endpoints import EndpointsController
from ..controllers.jobs import CronJobController, JobController
from ..controllers.lifecycle import GarbageCollector, NamespaceController, ServiceAccountController
from ..controllers.scheduler import Scheduler
from ..controllers.statefulsets import StatefulSetController
from ..controllers.workloads import (
    DaemonSetController,
    DeploymentController,
    ReplicaSetController,
)
from ..network.topology import pod_netns
from ..pki import Pem, make_ca, make_serving_cert
from . import discovery
from .api import Api
from .handlers import Handlers
from .kinds import KindHooks
from .meta import now
from .podio import PodAttach, PodExec, PodLogs
from .portforward import PodPortForward, dial_in_pod_netns
from .proxy import ResourceProxy
from .resources import Registry
from .store import Store
from .tokens import TokenIssuer

log = logging.getLogger("apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

MAX_HEADER_BYTES = 1 << 20


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    service_cidr: str = "198.19.0.0/16"
    # Node objects registered at start (their agents come with the node side).
    nodes: list[str] = field(default_factory=lambda: ["node-1", "node-2"])
    pod_cidr_base: str = "198.18"
    # Extra names and addresses the serving certificate must cover.
    extra_sans: list[str] = field(default_factory=list)
    # Listening sockets made elsewhere (in the cluster's wire namespace), and the
    # address pods reach the API at (the ``kubernetes`` Service's endpoint).
    extra_sockets: list[socket.socket] = field(default_factory=list)
    endpoint: tuple[str, int] | None = None
    # Where node agents keep pod files (logs are read from here).
    state_dir: Path | None = None
    # Install cluster DNS (needs node agents to run its pod).
    dns: bool = False
    # Set when nodes run pods: pods/exec enters their namespaces by these names.
    cluster_name: str | None = None


class ApiServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = Store()
        self.registry = Registry()
        self.tokens = TokenIssuer()
        self.hooks = KindHooks(self.registry, config.service_cidr, self.tokens)
        self.api = Api(self.store, self.registry, self.hooks)
        self.admin_token = secrets.token_urlsafe(32)
        self.ca: Pem = make_ca("ambient-harness-local-ca")
        self.controllers: list[Controller] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.handlers: Handlers | None = None

    @property
    def url(self) -> str:
        return f"https://{self.config.host}:{self.port}"

    async def start(self) -> None:
        ips = ["127.0.0.1", self.hooks.ips.reserved(1)]
        if self.config.endpoint:
            ips.append(self.config.endpoint[0])
        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"]
        if self.config.host not in ips:
            ips.append(self.config.host)
        for extra in self.config.extra_sans:
            (ips if extra.replace(".", "").isdigit() else dns).append(extra)
        serving = make_serving_cert(self.ca, "kube-apiserver", dns, ips)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_chain(ctx, serving)
        self.handlers = Handlers(self.api, self.admin_token, "")
        app = web.Application(middlewares=[self.handlers.middleware], client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handlers.dispatch)
        # A request line and headers up to 1 MiB, as Go's http.Server (DefaultMaxHeaderBytes)
        # takes them: a long selector is the server's to refuse, with a Status.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     max_line_size=MAX_HEADER_BYTES,
                                     max_field_size=MAX_HEADER_BYTES)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=ctx,
                           reuse_address=False)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise PortInUse(self.config.host, self.config.port, exc) from None
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        for sock in self.config.extra_sockets:
            await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        if self.config.state_dir is not None:
            self.handlers.subresource_handlers["log"] = PodLogs(self.config.state_dir).serve
            self.handlers.subresource_handlers["attach"] = PodAttach(
                self.config.state_dir).serve
        if self.config.cluster_name is not None and self.config.state_dir is not None:
            self.handlers.subresource_handlers["exec"] = PodExec(
                _container_entry(self.config.state_dir)).serve
            dial = dial_in_pod_netns(lambda pod: pod_netns(pod["metadata"]["uid"]))
            self.handlers.subresource_handlers["portforward"] = PodPortForward(dial).serve
            self.handlers.subresource_handlers["proxy"] = ResourceProxy(dial).serve
        self.handlers.address = f"{self.config.host}:{self.port}"
        self._bootstrap()
        for cls in (NamespaceController, ServiceAccountController, GarbageCollector,
                    ReplicaSetController, DeploymentController, DaemonSetController,
                    StatefulSetController, JobController, CronJobController,
                    EndpointsController, Scheduler):
            controller = cls(self.api)
            controller.start()
            self.controllers.append(controller)

    async def stop(self) -> None:
        for controller in self.controllers:
            await controller.stop()
        self.store.close_all()
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()

    def _bootstrap(self) -> None:
        """What a fresh cluster has: system namespaces, the ``kubernetes`` Service, Nodes."""
        endpoint_ip, endpoint_port = self.config.endpoint or (self.config.host, self.port)
        ns_rt = self.api.rt("", "namespaces")
        for ns in SYSTEM_NAMESPACES:
            self.api.create(ns_rt, "v1", "", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": ns}})
        self.api.create(self.api.rt("", "services"), "v1", "default", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.hooks.ips.reserved(1),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": endpoint_port}]},
        })
        self.api.create(self.api.rt("", "endpoints"), "v1", "default", {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": endpoint_ip}],
                         "ports": [{"name": "https", "port": endpoint_port, "protocol": "TCP"}]}],
        })
        self.api.create(self.api.rt("discovery.k8s.io", "endpointslices"), "v1", "default", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [endpoint_ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": endpoint_port, "protocol": "TCP"}],
        })
        if self.config.dns:
            for manifest in cluster_dns(self.hooks.ips.reserved(10)):
                rt = self.api.registry.by_kind(*_group_kind(manifest))
                assert rt is not None
                self.api.create(rt, rt.versions[0], manifest["metadata"].get("namespace", ""),
                                manifest)
        for i, name in enumerate(self.config.nodes):
            self.api.create(self.api.rt("", "nodes"), "v1", "", _node(
                name, f"{self.config.pod_cidr_base}.{i}.0/24"))


class PortInUse(Exception):
    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(
            f"cannot listen on {host}:{port}: {cause.strerror or cause}. Another process holds "
            f"the port: stop it, or choose another port (--port), or 0 for any free port."
        )


def _load_chain(ctx: ssl.SSLContext, pem: Pem) -> None:
    import os
    import tempfile

    # ssl wants files; they live only as long as this call.
    fd, path = tempfile.mkstemp(prefix="apiserver-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem.cert + pem.key)
        ctx.load_cert_chain(path)
    finally:
        Path(path).unlink(missing_ok=True)


def _node(name: str, pod_cidr: str) -> dict[str, Any]:
    ts = now()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "Unknown", "reason": "NodeAgentNotStarted",
                "message": "no node agent runs for this node yet: pods are scheduled here but "
                           "not started",
                "lastHeartbeatTime": ts, "lastTransitionTime": ts}],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": discovery.GIT_VERSION, "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "local://0.1.0",
                         "kernelVersion": "", "osImage": "ambient-harness local node",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        },
    }


def _container_entry(state_dir: Path) -> Any:
    from ..node.podfiles import exec_entry

    def enter(pod: dict[str, Any], container: str) -> tuple[list[str], dict[str, str]] | None:
        return exec_entry(state_dir, pod, container)

    return enter


def _group_kind(manifest: dict[str, Any]) -> tuple[str, str]:
    api_version = manifest["apiVersion"]
    return (api_version.split("/")[0] if "/" in api_version else "", manifest["kind"])


def cluster_dns(ip: str) -> list[dict[str, Any]]:
    """kube-dns in kube-system: a Service at the tenth address and one DNS pod."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": ip, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": "coredns", "dnsPolicy": "Default", "containers": [{
                 "name": "coredns", "image": "ambient-harness/cluster-dns:local",
                 "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                           {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                    "periodSeconds": 1}}]}}}},
    ]


async def serve_forever(server: ApiServer, stop: asyncio.Event) -> None:
    await server.start()
    await stop.wait()
    await server.stop()
