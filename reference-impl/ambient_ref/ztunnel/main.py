"""The ztunnel process, one per node: ``ambient-reference ztunnel``.

It runs in the node's network namespace (hostNetwork), subscribes to the control
plane's configuration, and captures every mesh workload on its node: for each it
binds the three listeners inside the pod's namespace, installs the redirection
rules, and annotates the pod ``ambient.istio.io/redirection: enabled`` (the moment
a user or the suite can rely on capture).  A workload that leaves the mesh gets its
rules and annotation removed.  Without the control plane it keeps serving with the
last configuration it had.

Pod namespaces are found from the node's ``/proc`` (``podnetns``: the pod's cgroup
names it, and the namespace must hold the pod's IP), as istio-cni's node agent finds
pods it did not see created; nothing depends on how a runtime names namespaces.  A
pod whose first process has not started yet is looked for again with a growing
delay (0.1 s to 2 s), as a controller requeues.
Metrics on 15020 (``/metrics``, ``/stats/prometheus``), readiness on 15021
(``/healthz/ready``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ..ca.client import CertBundle, CertificateManager
from ..ca.root import fetch_root
from ..hbone import HboneClient, WorkloadCertificate
from ..kube import SA_DIR, KubeClient, KubeError
from ..process import kube_client, stop_on_signals
from ..xds.client import XdsClient
from ..xds.types import Workload
from . import capture, podnetns
from .metrics import TcpMetrics
from .podnetns import PodNetns
from .proxy import PodProxy, Shared
from .state import MeshState

log = logging.getLogger("ztunnel")

ANNOTATION = "ambient.istio.io/redirection"
# a pod not found on the node yet is looked for again after this delay, doubling
FIND_RETRY_S = (0.1, 2.0)


class Ztunnel:
    def __init__(self, kube: KubeClient, node: str, node_ip: str, istiod: str,
                 namespace: str, token_file: Path) -> None:
        self.kube = kube
        self.node = node
        self.node_ip = node_ip
        self.istiod = istiod
        self.namespace = namespace
        self.token_file = token_file
        self.state = MeshState(namespace)
        self.metrics = TcpMetrics()
        self.hbone = HboneClient()
        self.proxies: dict[str, PodProxy] = {}
        self.namespaces: dict[str, PodNetns] = {}
        self._find_retry = FIND_RETRY_S[0]
        self._retry_handle: asyncio.TimerHandle | None = None
        self._certs: dict[str, WorkloadCertificate] = {}
        self._dirty = asyncio.Event()
        self.ready = asyncio.Event()
        self.manager: CertificateManager | None = None
        self.xds: XdsClient | None = None

    def token(self) -> str:
        return self.token_file.read_text().strip()

    async def cert_for(self, workload: Workload) -> WorkloadCertificate:
        identity = workload.identity
        cached = self._certs.get(identity)
        if cached is not None:
            return cached
        assert self.manager is not None
        bundle = await self.manager.get(identity)
        cert = WorkloadCertificate(bundle.chain_pem, bundle.key_pem, bundle.root_pem)
        self._certs[identity] = cert
        return cert

    def _rotated(self, bundle: CertBundle) -> None:
        cert = WorkloadCertificate(bundle.chain_pem, bundle.key_pem, bundle.root_pem)
        self._certs[bundle.identity] = cert
        for proxy in self.proxies.values():
            if proxy.workload.identity == bundle.identity:
                proxy.rotate(cert)

    def _on_config(self, *_: Any) -> None:
        assert self.xds is not None
        st = self.xds.state
        self.state.update(st.workloads, st.services, st.authorizations)
        # Policies may have changed: what they now refuse is closed, open or not
        # (ztunnel's PolicyWatcher; connections.py).
        for proxy in self.proxies.values():
            proxy.recheck_inbound()
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        root = await fetch_root(self.kube, self.namespace)
        self.manager = CertificateManager(f"https://{self.istiod}", self.token, root)
        self.manager.add_listener(self._rotated)
        ctx = ssl.create_default_context(cadata=root.decode())
        self.xds = XdsClient(f"wss://{self.istiod}/v1/xds", self.token, ctx,
                             node=f"ztunnel~{self.node_ip}~{self.node}",
                             on_change=self._on_config,
                             # A control plane that vanished without closing (its node or
                             # namespace gone) is noticed within seconds, not minutes.
                             heartbeat=5.0)
        self.xds.start()
        shared = Shared(self.state, self.cert_for, self.metrics, self.hbone)
        reconciler = asyncio.ensure_future(self._reconcile_loop(shared))
        await self.xds.synced.wait()
        self._on_config()
        self.ready.set()
        log.info("ztunnel on %s ready", self.node)
        await stop.wait()
        self._retry_later(False)
        reconciler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reconciler
        # Stopping is not leaving the mesh: the pods keep their redirection, so while no
        # ztunnel listens in them their traffic fails (closed) rather than going out in
        # plaintext around every policy, and the next ztunnel on the node takes them
        # over (istio/istio architecture/ambient/ztunnel-cni-lifecycle.md: the pod's
        # rules are istio-cni's, not ztunnel's).
        for uid in list(self.proxies):
            await self._release(uid, annotate=False, uncapture=False)
        await self.xds.stop()
        await self.manager.close()
        await self.hbone.close()

    def _desired(self) -> dict[str, Workload]:
        return {uid: w for uid, w in self.state.workloads.items()
                if w.node == self.node and w.protocol == "HBONE"
                and w.network_mode == "STANDARD" and w.addresses}

    async def _reconcile_loop(self, shared: Shared) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            desired = self._desired()
            for uid in [u for u in self.proxies if u not in desired]:
                await self._release(uid, annotate=True)
            for uid, proxy in self.proxies.items():
                proxy.workload = desired[uid]
            missing = {uid: w for uid, w in desired.items() if uid not in self.proxies}
            found = await podnetns.find({uid: w.addresses for uid, w in missing.items()})
            self._retry_later(len(found) < len(missing))
            for uid, netns in found.items():
                workload = missing[uid]
                self.namespaces[uid] = netns
                try:
                    await self._capture(shared, uid, workload, netns.path)
                except (OSError, capture.CaptureError, KubeError) as exc:
                    log.warning("capturing %s/%s failed: %s", workload.namespace,
                                workload.name, exc)
                    await self._release(uid, annotate=False)

    def _retry_later(self, needed: bool) -> None:
        """Look again for pods not found on the node yet, sooner the first times."""
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        if not needed:
            self._find_retry = FIND_RETRY_S[0]
            return
        self._retry_handle = asyncio.get_running_loop().call_later(self._find_retry,
                                                                   self._dirty.set)
        self._find_retry = min(self._find_retry * 2, FIND_RETRY_S[1])

    async def _capture(self, shared: Shared, uid: str, workload: Workload,
                       netns: Path) -> None:
        proxy = PodProxy(shared, workload, netns)
        self.proxies[uid] = proxy
        await proxy.start()
        await capture.install(netns, [self.node_ip, *await _gateways(netns)])
        await self._annotate(workload, "enabled")
        log.info("captured %s/%s (%s)", workload.namespace, workload.name, proxy.ip)

    async def _release(self, uid: str, annotate: bool, uncapture: bool = True) -> None:
        proxy = self.proxies.pop(uid, None)
        netns = self.namespaces.pop(uid, None)
        if proxy is not None:
            if uncapture:
                with contextlib.suppress(capture.CaptureError, OSError):
                    await capture.remove(proxy.netns)
            await proxy.stop()
        if netns is not None:
            netns.close()
        if proxy is None:
            return
        if annotate:
            with contextlib.suppress(KubeError):
                await self._annotate(proxy.workload, None)
        log.info("released %s/%s", proxy.workload.namespace, proxy.workload.name)

    async def _annotate(self, workload: Workload, value: str | None) -> None:
        try:
            await self.kube.patch(f"/api/v1/namespaces/{workload.namespace}/pods/"
                                  f"{workload.name}",
                                  {"metadata": {"annotations": {ANNOTATION: value}}})
        except KubeError as exc:
            if exc.status != 404:
                raise


async def _gateways(netns: Path) -> list[str]:
    """The pod's default gateway: the node's side of its link, the source of probes."""
    try:
        out = await capture.run_in_pod(netns, "ip", "-j", "route", "show", "default")
        return [r["gateway"] for r in json.loads(out or "[]") if r.get("gateway")]
    except (capture.CaptureError, ValueError):
        return []


async def serve_health(z: Ztunnel, host: str) -> web.AppRunner:
    app = web.Application()

    async def ready(_: web.Request) -> web.Response:
        ok = z.ready.is_set()
        return web.Response(text="ready" if ok else "not ready", status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=z.metrics.exposition(), content_type="text/plain",
                            charset="utf-8")

    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", metrics)
    metrics_app.router.add_get("/stats/prometheus", metrics)
    app.router.add_get("/healthz/ready", ready)
    runners = []
    for application, port in ((app, 15021), (metrics_app, 15020)):
        runner = web.AppRunner(application, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    return runners  # type: ignore[return-value]


async def amain(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    kube = kube_client(args.kubeconfig)
    z = Ztunnel(kube, args.node, args.node_ip, args.istiod, args.namespace,
                Path(args.token_file))
    runners = await serve_health(z, args.health_host)
    try:
        await z.run(stop)
    finally:
        for runner in runners:  # type: ignore[attr-defined]
            await runner.cleanup()
        await kube.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ambient-reference ztunnel")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""))
    parser.add_argument("--node-ip", default=os.environ.get("INSTANCE_IP", ""))
    parser.add_argument("--istiod", default=os.environ.get("CA_ADDRESS",
                                                           "istiod.istio-system.svc:15012"))
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "istio-system"))
    parser.add_argument("--token-file", default=str(SA_DIR / "token"))
    parser.add_argument("--health-host", default="0.0.0.0")
    parser.add_argument("--kubeconfig", default=None)
    args = parser.parse_args(argv)
    if not args.node or not args.node_ip:
        parser.error("--node and --node-ip (or NODE_NAME and INSTANCE_IP) are required")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(amain(args))
