"""The node agent (the kubelet role): runs the pods bound to one node.

It runs inside the node's network namespace (``python -m clusters.local.node``,
``__main__.py``), watches the pods bound to its node and ties the node's jobs
together for each, in order.  It makes the pod's cgroup (``cgroups.py``) and a
sandbox (namespace, address, routes, its bind in the node's ``/var/run/netns``,
then the node's CNI chain: ``podnetwork.py``, ``cni.py``, plugins running in the
node's view), writes the pod's IP to its status (``status.py``), makes its
volumes (``volumes.py``), then runs its init containers in order and its
containers (``containers.py``: each a process in a root of its own inside that
namespace and in a cgroup of its own, per ``launch.py``, ``podenv.py`` and
``rootfs.py``, probed per ``probes.py``, restarted per ``restartPolicy``).  On
deletion it stops the containers (SIGTERM, SIGKILL after the grace period),
removes the sandbox (CNI DEL, the node's bind, the namespace), the cgroups and
the pod's folder, and confirms the deletion.  hostPath volumes live in the node's
own root (``hostpaths.py``).  It also plays kube-proxy for its node
(``network/proxy.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from ...background import BackgroundTask
from ..images.catalog import ImageCatalog, UnknownImage, default_catalog
from ..images.executables import ImageExecutable
from ..kubeclient import Informer, KubeClient, KubeError
from ..network.proxy import ServiceProxy
from . import cni, launch, podfiles, rootfs
from . import sandbox as sandboxes
from .cgroups import CgroupTree
from .clock import now, pause
from .containers import Container
from .events import EventRecorder
from .hostpaths import NodeRoot
from .pidns import PodPidNamespace
from .podenv import SERVICE_ENV, PodFacts, container_env, read_objects
from .podnetwork import PodNetwork, SandboxFailed
from .status import keep_written, pod_status
from .volumes import PodVolumes, Volume, VolumeError

log = logging.getLogger("node")

# kubelet's pod worker retries a failed sync (e.g. sandbox creation) after its
# backOffPeriod, 10 s, with jitter 0.5 (pkg/kubelet/pod_workers.go, kubelet.go).
SANDBOX_BACKOFF = 10.0
DNS_IP = "198.19.0.10"


class PodWorker:
    """One pod on this node, from its binding to its deletion: its images, cgroup,
    sandbox, /etc files, volumes, then its containers, and its status."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.host_network = bool(self.spec.get("hostNetwork"))
        # the pod's PID namespace (none with hostPID: the node's), started once
        self._pidns: asyncio.Future[PodPidNamespace] | None = None
        self.dir = podfiles.pod_dir(agent.state_dir, self.uid)
        self.net: PodNetwork | None = None
        self.cgroup: str | None = None
        self.init = [Container(self, c, True) for c in self.spec.get("initContainers") or ()]
        self.main = [Container(self, c, False) for c in self.spec.get("containers") or ()]
        self.terminating = asyncio.Event()
        self._dirty = asyncio.Event()
        self._since: dict[str, str] = {}
        self.start_time = now()
        self.task = BackgroundTask(self._run, f"pod:{self.name}")
        self.status_task = BackgroundTask(
            lambda: keep_written(self.agent.client, self.namespace, self.name, self._status,
                                 self._dirty), f"status:{self.name}")
        self.volumes: dict[str, Volume] = {}
        self.files: launch.PodFiles | None = None

    @property
    def ip(self) -> str | None:
        if self.host_network:
            return self.agent.node_ip
        return self.net.ip if self.net else None

    @property
    def sandbox(self) -> sandboxes.Sandbox | None:
        """The pod's network sandbox once it is complete (CNI ADD included)."""
        return self.net.sandbox if self.net and self.net.ready else None

    @property
    def hostname(self) -> str:
        """The pod's hostname: the node's with hostNetwork, else its ``spec.hostname``
        or, without one, its name (the kubelet's GeneratePodHostNameAndDomain)."""
        if self.host_network:
            return self.agent.node
        return str(self.spec.get("hostname") or self.name)[:63]

    @property
    def facts(self) -> PodFacts:
        return PodFacts(self.agent.node, self.agent.node_ip, self.ip or "",
                        self.agent.allocatable)

    def changed(self) -> None:
        self._dirty.set()

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.agent.event(self.pod, reason, message, kind)

    def start(self) -> None:
        self.status_task.start()
        self.task.start()

    async def _run(self) -> None:
        try:
            await self._run_pod()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed in the node agent", self.namespace, self.name)

    async def _run_pod(self) -> None:
        # 1. images: a name nobody mapped or knows fails like a pull
        problems = []
        for c in self.init + self.main:
            try:
                c.image = self.agent.catalog.resolve(c.view.image, c.spec)
            except UnknownImage as exc:
                problems.append(c)
                c.view.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
                self.event("Failed", f"Failed to pull image \"{c.view.image}\": {exc}", "Warning")
        if problems:
            self.changed()
            await asyncio.sleep(0)  # let ErrImagePull be written first
            for c in problems:
                c.view.state = {"waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{c.view.image}": '
                               + c.view.state["waiting"]["message"]}}
            self.changed()
            await self.terminating.wait()
            return
        # 2. the pod's cgroup, then its sandbox (namespace and veth, the node's bind,
        #    the CNI chain), then its IP in the status and its /etc files
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.agent.cgroups is not None:
            qos = (self.pod.get("status") or {}).get("qosClass", "BestEffort")
            self.cgroup = self.agent.cgroups.make_pod(self.uid, qos)
        if not self.spec.get("hostPID"):
            # a future of its own: stop() finds and kills the pause even if this task
            # is cancelled while it starts
            self._pidns = asyncio.ensure_future(PodPidNamespace.start())
            try:
                await asyncio.shield(self._pidns)
            except (OSError, rootfs.RootError) as exc:
                self.event("FailedCreatePodSandBox",
                           f"Failed to create pod sandbox: its PID namespace: {exc}",
                           "Warning")
                await self.terminating.wait()
                return
        if not self.host_network:
            if not await self._run_sandbox():
                return  # deleted before its sandbox could be made
            self.changed()
        self.files = self._write_etc()
        # 3. the volumes; one that cannot be made yet is retried, as kubelet does
        if not await self._prepare_volumes():
            return
        self.changed()
        # 4. init containers in order, each to completion
        for c in self.init:
            if self.terminating.is_set():
                return
            await c.supervise()
            if "terminated" not in c.view.state or c.view.state["terminated"]["exitCode"] != 0:
                return  # failed for good (Never) or waiting for deletion
        # 5. the containers, each supervised
        tasks = [asyncio.get_running_loop().create_task(c.supervise()) for c in self.main]
        for c in self.main:
            self.event("Pulled", f'Container image "{c.view.image}" already present on machine')
        await asyncio.gather(*tasks)
        if self._pidns is not None and not self.terminating.is_set():
            # every container is done for good (the pod succeeded or failed): kubelet
            # stops the sandbox of a finished pod, and nothing may run on in it
            await (await self._pidns).stop()

    async def stop(self, grace: float) -> None:
        """Stop everything, remove the sandbox (the deletion's node half)."""
        self.terminating.set()
        for c in self.main + self.init:
            c.stopping = True
        await asyncio.gather(*(c.kill(grace) for c in self.main + self.init))
        for c in self.main + self.init:
            c.stop_probes()
        await self.task.stop()
        if self._pidns is not None:  # and, with its PID 1, whatever the pod still ran
            with contextlib.suppress(OSError, rootfs.RootError):
                await (await self._pidns).stop()
        if self.net is not None:  # CNI DEL, the node's bind, the namespace
            try:
                await self.net.teardown()
            except cni.CniError as exc:
                self.event("FailedKillPod", f"error killing pod: {exc}", "Warning")
        await self.remove_cgroup(self.cgroup)
        await self.status_task.stop()

    # -- sandbox and cgroups ---------------------------------------------------------

    async def _run_sandbox(self) -> bool:
        """Make the sandbox; on failure a FailedCreatePodSandBox event, its teardown
        and another try after kubelet's back-off.  False once the pod is deleted."""
        dns_ip = DNS_IP if self._cluster_dns() else None
        while not self.terminating.is_set():
            self.net = PodNetwork(self.agent.cni, self.agent.node_root, self.agent.ipam,
                                  self.pod, dns_ip, self.dir / "cni", self.cgroup,
                                  self.agent.record_netns)
            try:
                await self.net.setup()
                return True
            except SandboxFailed as exc:
                self.event("FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}",
                           "Warning")
            try:
                await self.net.teardown()
            except cni.CniError as exc:
                log.warning("%s/%s: %s", self.namespace, self.name, exc)
            await pause(self.terminating,
                        self.agent.sandbox_backoff * (1 + 0.5 * random.random()))
        return False

    def container_cgroup(self, container_id: str) -> tuple[str | None, str | None]:
        """The container's cgroup, made now: its cgroup path and its directory on
        this machine (for ``rootfs.RootSpec.cgroup``); (None, None) without cgroups."""
        tree = self.agent.cgroups
        if tree is None or self.cgroup is None:
            return None, None
        path = tree.make_container(self.cgroup, container_id)
        return path, str(tree.dir(path))

    async def remove_cgroup(self, path: str | None) -> None:
        """Kill what is left in the cgroup ``path`` and remove it (and those below)."""
        if path is not None and self.agent.cgroups is not None:
            await asyncio.to_thread(self.agent.cgroups.remove, path)

    # -- files, volumes, environment, command ---------------------------------------

    def _cluster_dns(self) -> bool:
        """Whether the pod resolves through cluster DNS (dnsPolicy; a host-network pod
        keeps the node's resolver unless ClusterFirstWithHostNet)."""
        policy = self.spec.get("dnsPolicy") or "ClusterFirst"
        return policy == "ClusterFirstWithHostNet" or (
            policy == "ClusterFirst" and not self.host_network)

    def _write_etc(self) -> launch.PodFiles:
        """The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf (per dnsPolicy)."""
        etc = self.dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(sandboxes.hosts_file(self.ip or "", self.hostname))
        (etc / "hostname").write_text(self.hostname + "\n")
        resolv = None
        if self._cluster_dns():
            resolv = etc / "resolv.conf"
            resolv.write_text(sandboxes.resolv_conf(self.namespace, DNS_IP))
        return launch.PodFiles(str(etc / "hosts"), str(etc / "hostname"),
                               str(resolv) if resolv else None)

    async def _prepare_volumes(self) -> bool:
        """Every volume made (True), or the pod is being deleted (False)."""
        maker = PodVolumes(self.agent.client, self.pod, self.dir, self.agent.node_root,
                           self.facts, self.agent.ca_pem)
        volumes = await maker.prepare_until(self.terminating, self._mount_failed)
        if volumes is None:
            return False
        self.volumes = volumes
        return True

    def _mount_failed(self, exc: VolumeError) -> None:
        self.event("FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")

    async def launch(self, c: Container
                     ) -> tuple[list[str], dict[str, str], rootfs.RootSpec]:
        """What ``c`` runs, its environment and its root (env read at each start)."""
        assert c.image is not None and self.files is not None
        objects = await read_objects(self.agent.client, self.namespace, [c.spec])
        base = launch.base_env(c.image, self.hostname, SERVICE_ENV,
                               os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        env = container_env(c.spec, self.pod, self.facts, objects, base)
        argv = launch.argv(c.image, c.spec, env)
        env[podfiles.AGENT_MARKER] = self.name  # how perf/ finds a pod's processes
        c.dir.mkdir(parents=True, exist_ok=True)
        scratch = c.dir / "rootfs"
        scratch.mkdir(exist_ok=True)
        term = c.dir / "termination-log"
        term.write_bytes(b"")
        root = launch.root_spec(
            c.image, c.spec, env, self.volumes, self.files, str(term), str(scratch),
            netns=str(self.sandbox.path) if self.sandbox else None,
            hostname=self.hostname, proc=self.agent.proc,
            user=launch.run_as(self.spec, c.spec, c.image.user
                               if isinstance(c.image, ImageExecutable) else ""))
        if self._pidns is not None:
            try:
                pidns = await self._pid_namespace()
            except (OSError, rootfs.RootError) as exc:
                raise launch.LaunchError(f"the pod's PID namespace: {exc}") from None
            root = dataclasses.replace(root, pid_namespace=pidns.fd)
        return argv, env, root

    async def _pid_namespace(self) -> PodPidNamespace:
        """The pod's PID namespace, made again if its pause was killed (the kernel then
        killed the pod's processes, whose restarts land here), as kubelet re-creates a
        pod sandbox that died."""
        assert self._pidns is not None
        if self._pidns.done() and self._pidns.result().exited:
            dead = self._pidns.result()
            self.event("SandboxChanged", "Pod sandbox changed, it will be killed and "
                       "re-created.")
            self._pidns = asyncio.ensure_future(PodPidNamespace.start())
            await dead.stop()
        return await asyncio.shield(self._pidns)

    # -- status -----------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        """The status a kubelet would write for the pod now."""
        return pod_status(
            self.pod, [c.view for c in self.init], [c.view for c in self.main],
            pod_ip=self.ip, host_ip=self.agent.node_ip, start_time=self.start_time,
            now=now(), sandbox_ready=self.sandbox is not None or self.host_network,
            since=self._since)


class NodeAgent:
    """The node: registers it, watches the pods bound to it (a ``PodWorker`` each)
    and the Services and EndpointSlices it proxies."""

    def __init__(self, node: str, node_ip: str, pod_cidr: str, client: KubeClient,
                 state_dir: Path, ca_pem: bytes, registry: Path,
                 image_executables: list[ImageExecutable] | None = None, *,
                 cgroups: CgroupTree | None = None, proc: str = "/proc") -> None:
        self.node = node
        # the procfs of the node's PID namespace (the agent's pids are that
        # namespace's; see pidinit.py), shown as /proc to containers and node views
        self.proc = proc
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.cgroups = cgroups
        self.sandbox_backoff = float(os.environ.get("AMBIENT_HARNESS_SANDBOX_BACKOFF",
                                                    SANDBOX_BACKOFF))
        self.client = client
        self.state_dir = state_dir
        self.ca_pem = ca_pem
        self.registry = registry
        self.ipam = sandboxes.IPAM(pod_cidr)
        self.catalog: ImageCatalog = default_catalog(image_executables)
        self.node_root = NodeRoot(state_dir / "root", proc)
        # The node's own /etc/cni/net.d and /opt/cni/bin; plugins run in the node's
        # view, so they are told, and find, the host paths a real runtime gives.
        self.cni = cni.Runtime(cni.NodePaths(self.node_root.path, launch=self._in_node_view,
                                             in_view=True))
        self.allocatable = {"cpu": str(os.cpu_count() or 1), "memory": _memory(),
                            "ephemeral-storage": _disk(state_dir)}
        self.workers: dict[str, PodWorker] = {}
        self.http = aiohttp.ClientSession()
        self.pods = Informer(client, "/api/v1/pods", self._on_pod,
                             field_selector=f"spec.nodeName={node}")
        self.services = Informer(client, "/api/v1/services", self._on_network)
        self.slices = Informer(client, "/apis/discovery.k8s.io/v1/endpointslices",
                               self._on_network)
        self.proxy = ServiceProxy(self.services, self.slices)
        self._event_tasks: set[asyncio.Task[None]] = set()
        self.events = EventRecorder(client, node, clock=now)

    async def _in_node_view(self, argv: Sequence[str], **kwargs: Any) -> rootfs.Process:
        """Start a program of the node's own (a CNI plugin) in the node's view, made
        afresh: it shows the host paths hostPath volumes used since the last one."""
        return await rootfs.spawn(self.node_root.view(), argv, **kwargs)

    def record_netns(self, name: str) -> None:
        with open(self.registry, "a") as f:
            f.write(name + "\n")

    def _on_network(self, *_: object) -> None:
        self.proxy.changed()

    def _on_pod(self, kind: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                self._spawn(self._finish(worker, grace=0, confirm=False))
            return
        if worker is None:
            if pod["metadata"].get("deletionTimestamp"):
                self._spawn(self._confirm_deleted(pod))
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.start()
            return
        worker.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not worker.terminating.is_set():
            grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30))
            worker.event("Killing", "Stopping container(s)")
            self._spawn(self._finish(worker, grace=grace, confirm=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _finish(self, worker: PodWorker, grace: float, confirm: bool) -> None:
        worker.terminating.set()
        await worker.stop(grace)
        self.workers.pop(worker.uid, None)
        self.events.forget(worker.uid)
        # The pod's folder (volumes, logs, container scratch) goes with the pod.
        await asyncio.to_thread(shutil.rmtree, worker.dir, True)
        if confirm:
            await self._confirm_deleted(worker.pod)

    async def _confirm_deleted(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                 "preconditions": {"uid": meta["uid"]}})
        except KubeError as exc:
            if exc.status not in (404, 409):
                log.warning("deleting %s/%s: %s", meta["namespace"], meta["name"], exc)

    def event(self, pod: dict[str, Any], reason: str, message: str, kind: str) -> None:
        """Record an Event in the background (a repeat counts up, as kubelet's do);
        one that cannot be recorded is not worth stopping the pod's work for."""
        async def send() -> None:
            with contextlib.suppress(KubeError, aiohttp.ClientError, OSError):
                await self.events.record(pod, reason, message, kind)

        self._spawn(send())

    async def register(self) -> None:
        ts = now()
        await self.client.patch(f"/api/v1/nodes/{self.node}/status", {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "node agent is posting ready status",
                            "lastHeartbeatTime": ts, "lastTransitionTime": ts}],
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node}],
            "capacity": {**self.allocatable, "pods": "110"},
            "allocatable": {**self.allocatable, "pods": "110"},
        }})

    async def run(self, stop: asyncio.Event) -> None:
        self.node_root.create()
        for inf in (self.services, self.slices, self.pods):
            inf.start()
        self.proxy.start()
        await self.proxy.synced.wait()
        # Ready once the network configuration is in place (kubelet waits for the
        # runtime's NetworkReady).
        self.cni.install_primary(self.pod_cidr)
        await self.register()
        log.info("node %s ready at %s", self.node, self.node_ip)
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        await self.pods.stop()
        await asyncio.gather(*(w.stop(2) for w in list(self.workers.values())),
                             return_exceptions=True)
        self.workers.clear()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove_all)
        await self.proxy.stop()
        for inf in (self.services, self.slices):
            await inf.stop()
        for t in list(self._event_tasks):
            t.cancel()
        await self.http.close()
        await self.client.close()
        self.node_root.destroy()


def _disk(path: Path) -> str:
    st = os.statvfs(path if path.exists() else "/")
    return str(st.f_blocks * st.f_frsize)


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{line.split()[1]}Ki"
    except OSError:
        pass
    return "0"
