"""The node agent (the kubelet role): runs the pods bound to one node.

``python -m clusters.local.node.agent`` runs inside the node's network namespace.
For each pod it makes the pod's cgroup (``cgroups.py``) and a sandbox (namespace,
address, routes, its bind in the node's ``/var/run/netns``, then the node's CNI
chain: ``podnetwork.py``, ``cni.py``, plugins running in the node's view), writes
the pod's IP to its status, makes its volumes (``volumes.py``), starts each
container as a process in a root of its own inside that namespace and in a
cgroup of its own (``launch.py``, ``rootfs.py``), probes it, restarts it per
``restartPolicy`` with back-off, keeps its logs, and writes the pod's status.  On
deletion it stops the containers (SIGTERM, SIGKILL after the grace period),
removes the sandbox (CNI DEL, the node's bind, the namespace), the cgroups and
the pod's folder, and confirms the deletion.  hostPath volumes live in the node's
own root (``hostpaths.py``).  It also plays kube-proxy for its node
(``network/proxy.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import dataclasses
import logging
import os
import random
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ..images import executables
from ..images.catalog import ImageCatalog, Program, UnknownImage, default_catalog
from ..images.executables import ImageExecutable
from ..kubeclient import Informer, KubeClient, KubeError
from ..network.proxy import ServiceProxy
from . import cni, launch, podfiles, rootfs
from . import sandbox as sandboxes
from .cgroups import CgroupError, CgroupTree
from .events import EventRecorder
from .hostpaths import NodeRoot
from .podenv import ConfigError, PodFacts, container_env, references
from .podnetwork import PodNetwork, SandboxFailed
from .probes import ProbeFailed, run_probe
from .status import ContainerView, pod_status
from .volumes import PodVolumes, Volume, VolumeError

log = logging.getLogger("node")

BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
# Waiting for a missing ConfigMap, Secret or service account (kubelet re-syncs a
# pod periodically and on changes): first retry after 1 s, then at most every 10 s.
RESYNC_START, RESYNC_MAX = 1.0, 10.0
# kubelet's pod worker retries a failed sync (e.g. sandbox creation) after its
# backOffPeriod, 10 s, with jitter 0.5 (pkg/kubelet/pod_workers.go, kubelet.go).
SANDBOX_BACKOFF = 10.0
DNS_IP = "198.19.0.10"
API_VIP = "198.19.0.1"
SERVICE_ENV = {"KUBERNETES_SERVICE_HOST": API_VIP, "KUBERNETES_SERVICE_PORT": "443",
               "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": f"tcp://{API_VIP}:443",
               "KUBERNETES_PORT_443_TCP": f"tcp://{API_VIP}:443",
               "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443",
               "KUBERNETES_PORT_443_TCP_ADDR": API_VIP}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Container:
    def __init__(self, pod: PodWorker, spec: dict[str, Any], init: bool) -> None:
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.view = ContainerView(self.name, spec.get("image", ""), init=init)
        self.process: rootfs.Process | None = None
        self.image: Program | ImageExecutable | None = None
        self.stopping = False
        self.backoff = BACKOFF_START
        self.probe_tasks: list[asyncio.Task[None]] = []
        self.readiness_ok = "readinessProbe" not in spec
        self.startup_ok = "startupProbe" not in spec
        self.startup_done = asyncio.Event()
        if self.startup_ok:
            self.startup_done.set()
        self.exited = asyncio.Event()
        self.cgroup: str | None = None  # of the current run (a restart gets a new one)

    @property
    def log_dir(self) -> Path:
        return self.pod.dir / "logs" / self.name

    @property
    def dir(self) -> Path:
        return podfiles.container_dir(self.pod.dir, self.name)

    def log_path(self, restart: int) -> Path:
        return self.log_dir / f"{restart}.log"

    def set_ready(self) -> None:
        running = "running" in self.view.state
        self.view.ready = running and self.readiness_ok and self.startup_ok
        self.pod.changed()

    def _waiting(self, reason: str, message: str) -> None:
        self.view.state = {"waiting": {"reason": reason, "message": message}}
        self.pod.changed()

    async def start(self) -> bool | None:
        """Start the process: True once started; None if its configuration is not
        there yet (a ConfigMap, a Secret: try again later); False if it cannot be
        created as specified (reason in its state)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv, env, root = await self.pod.launch(self)
        except ConfigError as exc:
            self._waiting("CreateContainerConfigError", str(exc))
            return None
        except launch.LaunchError as exc:
            self._waiting("CreateContainerError", str(exc))
            return False
        container_id = secrets.token_hex(32)  # as long as containerd's; the cgroup leaf
        try:
            self.cgroup, cgroup_dir = self.pod.container_cgroup(container_id)
        except CgroupError as exc:
            self._waiting("CreateContainerError", str(exc))
            return False
        log_file = open(self.log_path(self.view.restart_count), "ab")  # noqa: SIM115
        try:
            # the child joins the cgroup first, then sets its root up (rootfs.enter)
            self.process = await rootfs.spawn(dataclasses.replace(root, cgroup=cgroup_dir),
                                              argv, env=env, stdout=log_file,
                                              stderr=asyncio.subprocess.STDOUT)
        except rootfs.RootError as exc:
            self._waiting("CreateContainerError", f"container root: {exc}")
            await self.pod.remove_cgroup(self.cgroup)
            return False
        except OSError as exc:
            self._waiting("CreateContainerError",
                          f'exec: "{argv[0]}": {exc.strerror or exc} (looked up in PATH='
                          f'{env.get("PATH", "")} inside the container)')
            await self.pod.remove_cgroup(self.cgroup)
            return False
        finally:
            log_file.close()
        podfiles.write_pid(self.pod.dir, self.name, self.process.pid)
        self.exited.clear()
        started_at = now()
        self.view.container_id = f"local://{container_id}"
        if isinstance(self.image, Program) and self.image.listens and self.pod.sandbox:
            # The image is "created" once its program serves (see images/catalog.py).
            await self._await_listening(self.image.listens)
        if self.process.returncode is None:
            self.view.state = {"running": {"startedAt": started_at}}
            self.view.started = self.startup_ok
            self.pod.event("Started", f"Started container {self.name}")
        self.set_ready()
        return True

    def termination_message(self, code: int) -> str:
        """What the container wrote to its termination-message file (or, with
        FallbackToLogsOnError, the end of its log when it failed)."""
        try:
            text = (self.dir / "termination-log").read_bytes()[:4096].decode(errors="replace")
        except OSError:
            text = ""
        if not text and code != 0 and \
                self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                lines = self.log_path(self.view.restart_count).read_bytes().splitlines()[-80:]
                text = b"\n".join(lines)[-2048:].decode(errors="replace")
        return text

    async def _await_listening(self, ports: tuple[int, ...]) -> None:
        """Until each port accepts a connection, the process exits, or 30 s pass."""
        assert self.process is not None
        exited = asyncio.ensure_future(self.process.wait())
        try:
            deadline = time.monotonic() + 30
            for port in ports:
                while time.monotonic() < deadline and not exited.done():
                    try:
                        _, w = await asyncio.wait_for(
                            asyncio.open_connection(self.pod.ip, port), 0.5)
                        w.close()
                        break
                    except (OSError, TimeoutError):
                        # Not listening yet (the program is still importing): try
                        # again in 20 ms, or stop at once if the process exits.
                        await asyncio.wait({exited}, timeout=0.02)
        finally:
            if not exited.done():
                exited.cancel()

    async def supervise(self) -> None:
        """Run, wait, restart per policy; returns when the container is done for good."""
        policy = self.pod.spec.get("restartPolicy", "Always")
        if self.view.init and policy == "Always":
            policy = "OnFailure"
        resync = RESYNC_START
        while not self.stopping:
            ok = await self.start()
            if ok is None:  # its ConfigMap or Secret may appear: try again, as kubelet does
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.pod.terminating.wait(), resync)
                resync = min(resync * 2, RESYNC_MAX)
                continue
            if not ok:
                return
            self.start_probes()
            assert self.process is not None
            code = await self.process.wait()
            podfiles.clear_pid(self.pod.dir, self.name)
            # What the container started goes with it (runc deletes the container's
            # cgroup, killing what is left in it).
            await self.pod.remove_cgroup(self.cgroup)
            self.stop_probes()
            self.exited.set()
            finished = now()
            started = (self.view.state.get("running") or {}).get("startedAt", finished)
            reason = "Completed" if code == 0 else "Error"
            if code < 0:  # killed by a signal: the shell convention, as runtimes report
                code = 128 - code
            terminated = {"exitCode": code, "reason": reason, "startedAt": started,
                          "finishedAt": finished, "containerID": self.view.container_id}
            message = self.termination_message(code)
            if message:
                terminated["message"] = message
            self.view.ready = False
            if self.stopping:
                self.view.state = {"terminated": terminated}
                self.pod.changed()
                return
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self.view.state = {"terminated": terminated}
                self.pod.changed()
                return
            self.view.last_state = {"terminated": terminated}
            uptime = _seconds_since(started)
            if uptime > 600:
                self.backoff = BACKOFF_START
            delay = self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            self.view.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={self.name} "
                           f"pod={self.pod.name}_{self.pod.namespace}({self.pod.uid})"}}
            self.view.restart_count += 1
            self.pod.changed()
            self.pod.event("BackOff", f"Back-off restarting failed container {self.name}",
                           "Warning")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pod.terminating.wait(), delay)

    def start_probes(self) -> None:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in self.spec:
                self.probe_tasks.append(asyncio.get_running_loop().create_task(
                    self._probe_loop(kind, self.spec[kind])))

    def stop_probes(self) -> None:
        for t in self.probe_tasks:
            t.cancel()
        self.probe_tasks.clear()
        self.readiness_ok = "readinessProbe" not in self.spec
        self.startup_ok = "startupProbe" not in self.spec
        if not self.startup_ok:
            self.startup_done.clear()

    async def _probe_loop(self, kind: str, probe: dict[str, Any]) -> None:
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = float(probe.get("periodSeconds", 10))
        failure_threshold = int(probe.get("failureThreshold", 3))
        success_threshold = int(probe.get("successThreshold", 1))
        successes = failures = 0
        while True:
            if kind != "startupProbe":
                await self.startup_done.wait()  # the startup probe goes first
            try:
                await run_probe(probe, self.spec, self.pod.ip or "", self.exec_entry,
                                self.pod.agent.http)
                successes, failures = successes + 1, 0
            except ProbeFailed as exc:
                successes, failures = 0, failures + 1
                label = {"readinessProbe": "Readiness", "livenessProbe": "Liveness",
                         "startupProbe": "Startup"}[kind]
                self.pod.event("Unhealthy", f"{label} probe failed: {exc}", "Warning")
            if kind == "readinessProbe":
                ok = self.readiness_ok
                if successes >= success_threshold:
                    ok = True
                elif failures >= failure_threshold or (failures and not self.view.ready):
                    ok = False
                if ok != self.readiness_ok:
                    self.readiness_ok = ok
                    self.set_ready()
            elif kind == "startupProbe":
                if successes >= 1:
                    self.startup_ok = True
                    self.startup_done.set()
                    self.view.started = True
                    self.set_ready()
                    return
                if failures >= failure_threshold:
                    self.pod.event("Killing", f"Container {self.name} failed startup probe, "
                                   "will be restarted")
                    await self.signal(signal.SIGKILL)
                    return
            elif failures >= failure_threshold:
                self.pod.event("Killing", f"Container {self.name} failed liveness probe, "
                               "will be restarted")
                await self.kill(int(self.pod.spec.get("terminationGracePeriodSeconds", 30)))
                return
            await asyncio.sleep(period)

    def exec_entry(self) -> tuple[list[str], dict[str, str]] | None:
        """How to run a command in this container (exec probes), if it runs."""
        if self.process is None or self.process.returncode is not None:
            return None
        proc = self.pod.agent.proc
        return (podfiles.enter_argv(self.process.pid, proc),
                podfiles.environ(self.process.pid, proc))

    async def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    async def kill(self, grace: float) -> None:
        """SIGTERM, then SIGKILL once ``grace`` seconds passed; waits for the exit."""
        if self.process is None or self.process.returncode is not None:
            return
        await self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            await self.signal(signal.SIGKILL)
            await self.process.wait()


def _seconds_since(ts: str) -> float:
    try:
        return time.time() - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


class PodWorker:
    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.host_network = bool(self.spec.get("hostNetwork"))
        self.dir = podfiles.pod_dir(agent.state_dir, self.uid)
        self.net: PodNetwork | None = None
        self.cgroup: str | None = None
        self.init = [Container(self, c, True) for c in self.spec.get("initContainers") or ()]
        self.main = [Container(self, c, False) for c in self.spec.get("containers") or ()]
        self.terminating = asyncio.Event()
        self._dirty = asyncio.Event()
        self._since: dict[str, str] = {}
        self.start_time = now()
        self.task: asyncio.Task[None] | None = None
        self.status_task: asyncio.Task[None] | None = None
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
    def facts(self) -> PodFacts:
        return PodFacts(self.agent.node, self.agent.node_ip, self.ip or "",
                        self.agent.allocatable)

    def changed(self) -> None:
        self._dirty.set()

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.agent.event(self.pod, reason, message, kind)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.status_task = loop.create_task(self._status_writer(), name=f"status:{self.name}")
        self.task = loop.create_task(self._run(), name=f"pod:{self.name}")

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

    async def stop(self, grace: float) -> None:
        """Stop everything, remove the sandbox (the deletion's node half)."""
        self.terminating.set()
        for c in self.main + self.init:
            c.stopping = True
        await asyncio.gather(*(c.kill(grace) for c in self.main + self.init))
        for c in self.main + self.init:
            c.stop_probes()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.net is not None:  # CNI DEL, the node's bind, the namespace
            try:
                await self.net.teardown()
            except cni.CniError as exc:
                self.event("FailedKillPod", f"error killing pod: {exc}", "Warning")
        await self.remove_cgroup(self.cgroup)
        if self.status_task is not None:
            self.status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.status_task

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
            delay = self.agent.sandbox_backoff * (1 + 0.5 * random.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.terminating.wait(), delay)
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
        hostname = self.agent.node if self.host_network else self.name
        (etc / "hosts").write_text(sandboxes.hosts_file(self.ip or "", hostname))
        (etc / "hostname").write_text(hostname + "\n")
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
        delay, reported = RESYNC_START, None
        while not self.terminating.is_set():
            try:
                self.volumes = await maker.prepare()
                return True
            except VolumeError as exc:
                if str(exc) != reported:  # kubelet's event, once per distinct cause
                    reported = str(exc)
                    self.event("FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.terminating.wait(), delay)
            delay = min(delay * 2, RESYNC_MAX)
        return False

    async def launch(self, c: Container
                     ) -> tuple[list[str], dict[str, str], rootfs.RootSpec]:
        """What ``c`` runs, its environment and its root (env read at each start)."""
        assert c.image is not None and self.files is not None
        objects = {}
        for plural, name in references([c.spec]):
            try:
                objects[(plural, name)] = await self.agent.client.get(
                    f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
            except KubeError as exc:
                if exc.status != 404:
                    raise ConfigError(f"reading {plural} {name}: {exc.message}") from None
                objects[(plural, name)] = None
        base = launch.base_env(c.image, self.agent.node if self.host_network else self.name,
                               SERVICE_ENV, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
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
            hostname=self.agent.node if self.host_network else self.name,
            proc=self.agent.proc)
        return argv, env, root

    # -- status -----------------------------------------------------------------------

    async def _status_writer(self) -> None:
        written: dict[str, Any] | None = None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = pod_status(
                self.pod, [c.view for c in self.init], [c.view for c in self.main],
                pod_ip=self.ip, host_ip=self.agent.node_ip, start_time=self.start_time,
                now=now(), sandbox_ready=self.sandbox is not None or self.host_network,
                since=self._since)
            if status == written:
                continue
            try:
                await self.agent.client.patch(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                    {"status": status})
                written = status
            except KubeError as exc:
                if exc.status == 404:
                    return
                log.warning("status of %s/%s not written: %s", self.namespace, self.name, exc)
                await asyncio.sleep(0.5)
                self._dirty.set()
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("status of %s/%s not written: %s", self.namespace, self.name, exc)
                await asyncio.sleep(0.5)
                self._dirty.set()


class NodeAgent:
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


async def amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = KubeClient.from_kubeconfig(args.kubeconfig, server=args.server)
    ca = base64.b64decode(__import__("yaml").safe_load(Path(args.kubeconfig).read_text())
                          ["clusters"][0]["cluster"]["certificate-authority-data"])
    mapped = executables.load(Path(args.image_executables)) if args.image_executables else []
    cgroups = (CgroupTree.find(args.cgroup_root, Path(args.cgroup_registry))
               if args.cgroup_root and args.cgroup_registry else None)
    agent = NodeAgent(args.node, args.node_ip, args.pod_cidr, client, Path(args.state_dir),
                      ca, Path(args.registry), mapped, cgroups=cgroups, proc=args.proc)
    await agent.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusters.local.node.agent")
    parser.add_argument("--node", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--image-executables", default=None,
                        help="JSON file of images mapped to executables (images/executables.py)")
    parser.add_argument("--cgroup-root", help="the node's cgroup root, e.g. "
                        "/ambient-harness/<cluster>/<node>; without it pods get no cgroups")
    parser.add_argument("--cgroup-registry", help="the file recording the node's cgroup "
                        "root before it is made, for cleanup")
    parser.add_argument("--proc", default="/proc", help="the procfs of the node's PID "
                        "namespace, which the agent runs in (node/pidinit.py)")
    args = parser.parse_args(argv)
    _set_pdeathsig_term()
    logging.basicConfig(level=os.environ.get("AMBIENT_HARNESS_LOG", "INFO"),
                        format=f"%(asctime)s %(levelname)s {args.node}: %(message)s",
                        stream=sys.stderr)
    return asyncio.run(amain(args))


def _set_pdeathsig_term() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)


if __name__ == "__main__":
    sys.exit(main())
