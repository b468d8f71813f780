"""The node agent (the kubelet role): runs the pods bound to one node.

``python -m clusters.local.node.agent`` runs inside the node's network namespace.
For each pod it makes the pod's cgroup (``cgroups.py``) and a sandbox (namespace,
address, routes, DNS, then the node's CNI chain: ``podnetwork.py``, ``cni.py``),
starts each container as a process inside that namespace and in a cgroup of its
own, probes it, restarts it per ``restartPolicy`` with back-off, keeps its logs,
and writes the pod's status.  On deletion it stops the containers (SIGTERM,
SIGKILL after the grace period), removes the sandbox (CNI DEL first) and the
cgroups, and confirms the deletion.  It also plays kube-proxy for its
node (``network/proxy.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import logging
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ..images.catalog import (
    PROJECT_ROOT,
    ImageCatalog,
    Program,
    UnknownImage,
    default_catalog,
)
from ..kubeclient import Informer, KubeClient, KubeError
from ..network import netns
from ..network.proxy import ServiceProxy
from . import cni
from . import sandbox as sandboxes
from .cgroups import CgroupError, CgroupTree
from .podnetwork import PodNetwork, SandboxFailed
from .probes import ProbeFailed, run_probe
from .status import ContainerView, pod_status

log = logging.getLogger("node")

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
# kubelet's pod worker retries a failed sync (e.g. sandbox creation) after its
# backOffPeriod, 10 s, with jitter 0.5 (pkg/kubelet/pod_workers.go, kubelet.go).
SANDBOX_BACKOFF = 10.0
DNS_IP = "198.19.0.10"
API_VIP = "198.19.0.1"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_pdeathsig() -> None:
    # A container must not outlive its node agent.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


class Container:
    def __init__(self, pod: PodWorker, spec: dict[str, Any], init: bool) -> None:
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.view = ContainerView(self.name, spec.get("image", ""), init=init)
        self.process: asyncio.subprocess.Process | None = None
        self.program: Program | None = None
        self.stopping = False
        self.backoff = BACKOFF_START
        self.probe_tasks: list[asyncio.Task[None]] = []
        self.readiness_ok = "readinessProbe" not in spec
        self.startup_ok = "startupProbe" not in spec
        self.startup_done = asyncio.Event()
        if self.startup_ok:
            self.startup_done.set()
        self.exited = asyncio.Event()
        self.cgroup: str | None = None

    @property
    def log_dir(self) -> Path:
        return self.pod.dir / "logs" / self.name

    def log_path(self, restart: int) -> Path:
        return self.log_dir / f"{restart}.log"

    def set_ready(self) -> None:
        running = "running" in self.view.state
        self.view.ready = running and self.readiness_ok and self.startup_ok
        self.pod.changed()

    async def start(self) -> bool:
        """Start the process; False if it could not be started (reason in its state)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv, env = self.pod.command_for(self)
        except UnknownImage as exc:
            self.view.state = {"waiting": {"reason": "CreateContainerConfigError",
                                           "message": str(exc)}}
            self.pod.changed()
            return False
        container_id = secrets.token_hex(32)  # as long as containerd's; the cgroup leaf
        log_file = open(self.log_path(self.view.restart_count), "ab")  # noqa: SIM115
        try:
            self.cgroup, preexec = self.pod.container_cgroup(container_id)
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT, env=env, cwd="/",
                preexec_fn=preexec, start_new_session=True)
        except (OSError, CgroupError, subprocess.SubprocessError) as exc:
            where = f"joining cgroup {self.cgroup}" if isinstance(
                exc, subprocess.SubprocessError) else argv[0]
            self.view.state = {"waiting": {"reason": "CreateContainerError",
                                           "message": f"{where}: {exc}"}}
            self.pod.changed()
            await self.pod.remove_cgroup(self.cgroup)
            return False
        finally:
            log_file.close()
        self.exited.clear()
        started_at = now()
        self.view.container_id = f"local://{container_id}"
        if self.program and self.program.listens and self.pod.sandbox:
            # The image is "created" once its program serves (see images/catalog.py).
            await self._await_listening(self.program.listens)
        if self.process.returncode is None:
            self.view.state = {"running": {"startedAt": started_at}}
            self.view.started = self.startup_ok
            self.pod.event("Started", f"Started container {self.name}")
        self.set_ready()
        return True

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
        while not self.stopping:
            ok = await self.start()
            if not ok:
                return
            self.start_probes()
            assert self.process is not None
            code = await self.process.wait()
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
                await run_probe(probe, self.spec, self.pod.ip or "", self.pod.netns_name,
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
        self.dir = agent.state_dir / "pods" / self.uid
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
        self.env_cache: dict[str, str] = {}
        self.volume_mounts: list[tuple[str, str]] = []

    @property
    def ip(self) -> str | None:
        if self.host_network:
            return self.agent.node_ip
        return self.net.ip if self.net else None

    @property
    def sandbox(self) -> sandboxes.Sandbox | None:
        return self.net.sandbox if self.net and self.net.ready else None

    @property
    def netns_name(self) -> str | None:
        return self.sandbox.netns if self.sandbox else None

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
        # 1. images: a name nobody knows fails like a pull
        problems = []
        for c in self.init + self.main:
            try:
                c.program = self.agent.catalog.resolve(c.view.image, c.spec)
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
        # 2. the pod's cgroup, then its sandbox, CNI included, before any container
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.agent.cgroups is not None:
            qos = (self.pod.get("status") or {}).get("qosClass", "BestEffort")
            self.cgroup = self.agent.cgroups.make_pod(self.uid, qos)
        if not self.host_network and not await self._run_sandbox():
            return  # deleted before its sandbox could be made
        await self._prepare_volumes()
        self.changed()
        # 3. init containers in order, each to completion
        for c in self.init:
            if self.terminating.is_set():
                return
            await c.supervise()
            if "terminated" not in c.view.state or c.view.state["terminated"]["exitCode"] != 0:
                return  # failed for good (Never) or waiting for deletion
        # 4. the containers, each supervised
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
        if self.net is not None:
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
        dns_ip = None if self.spec.get("dnsPolicy") == "Default" else DNS_IP
        while not self.terminating.is_set():
            self.net = PodNetwork(self.agent.cni, self.agent.ipam, self.pod, dns_ip,
                                  self.dir / "cni", self.cgroup, self.agent.record_netns)
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

    def container_cgroup(self, container_id: str) -> tuple[str | None, Any]:
        """The container's cgroup (made now) and what the child runs before exec:
        joining it, so all the container starts is in it, and dying with the agent."""
        tree = self.agent.cgroups
        if tree is None or self.cgroup is None:
            return None, _set_pdeathsig
        path = tree.make_container(self.cgroup, container_id)
        join = tree.joiner(path)

        def preexec() -> None:
            join()
            _set_pdeathsig()

        return path, preexec

    async def remove_cgroup(self, path: str | None) -> None:
        if path is not None and self.agent.cgroups is not None:
            await asyncio.to_thread(self.agent.cgroups.remove, path)

    # -- environment, volumes, command --------------------------------------------

    def command_for(self, c: Container) -> tuple[list[str], dict[str, str]]:
        program = c.program or self.agent.catalog.resolve(c.view.image, c.spec)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
               "HOSTNAME": self.name, "HOME": "/root",
               "KUBERNETES_SERVICE_HOST": API_VIP, "KUBERNETES_SERVICE_PORT": "443",
               "KUBERNETES_SERVICE_PORT_HTTPS": "443",
               "KUBERNETES_PORT": f"tcp://{API_VIP}:443"}
        env.update(program.env)
        env.update(self._container_env(c.spec))
        argv = list(program.argv)
        if c.spec.get("command") and program.argv[: len(c.spec["command"])] != c.spec["command"]:
            argv = list(c.spec["command"]) + list(c.spec.get("args") or ())
        argv = [_expand(a, env) for a in argv]
        env["AH_POD_NAME"] = self.name
        # In the pod's own mount namespace (ip netns exec makes one; unshare -m for
        # host-network pods), bind the volumes; pods in their own network get their
        # own UTS namespace too, so the hostname is the pod's name.
        steps = [f"mount --bind {shlex.quote(src)} {shlex.quote(dst)}"
                 for src, dst in self.volume_mounts]
        if self.host_network:
            if self.spec.get("dnsPolicy") == "ClusterFirstWithHostNet":
                resolv = self.dir / "resolv.conf"
                resolv.write_text(sandboxes.resolv_conf(self.namespace, DNS_IP))
                steps.append(f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf")
            script = " && ".join([*steps, 'exec "$@"'])
            return ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script,
                    "sh", *argv], env
        assert self.sandbox is not None
        script = " && ".join(['hostname "$AH_POD_NAME"', *steps, 'exec "$@"'])
        return netns.exec_argv(self.sandbox.netns,
                               ["unshare", "--uts", "sh", "-c", script, "sh", *argv]), env

    def _container_env(self, spec: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in spec.get("env") or ():
            name = item.get("name")
            if "value" in item:
                out[name] = _expand(str(item.get("value", "")), out)
                continue
            ref = item.get("valueFrom") or {}
            if "fieldRef" in ref:
                out[name] = self._field(ref["fieldRef"].get("fieldPath", ""))
            elif "configMapKeyRef" in ref or "secretKeyRef" in ref:
                key = "configMapKeyRef" if "configMapKeyRef" in ref else "secretKeyRef"
                cached = self.env_cache.get(f"{key}/{ref[key].get('name')}/{ref[key].get('key')}")
                if cached is not None:
                    out[name] = cached
            elif "resourceFieldRef" in ref:
                out[name] = "0"
        return out

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        values = {
            "metadata.name": self.name, "metadata.namespace": self.namespace,
            "metadata.uid": self.uid, "spec.nodeName": self.agent.node,
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.podIP": self.ip or "", "status.hostIP": self.agent.node_ip,
            "status.podIPs": self.ip or "", "status.hostIPs": self.agent.node_ip,
        }
        if path in values:
            return values[path]
        for prefix, source in (("metadata.labels", meta.get("labels") or {}),
                               ("metadata.annotations", meta.get("annotations") or {})):
            if path.startswith(prefix + "['") and path.endswith("']"):
                return str(source.get(path[len(prefix) + 2:-2], ""))
        return ""

    async def _prepare_volumes(self) -> None:
        """emptyDir, hostPath, configMap, secret and the service-account token, as
        bind mounts at the containers' mountPaths."""
        api = self.agent.client
        volumes = {v["name"]: v for v in self.spec.get("volumes") or ()}
        sources: dict[str, str] = {}
        for name, vol in volumes.items():
            vdir = self.dir / "volumes" / name
            if "emptyDir" in vol:
                vdir.mkdir(parents=True, exist_ok=True)
                sources[name] = str(vdir)
            elif "hostPath" in vol:
                sources[name] = vol["hostPath"]["path"]
            elif "configMap" in vol or "secret" in vol:
                kind = "configMap" if "configMap" in vol else "secret"
                ref = vol[kind].get("name") or vol[kind].get("secretName")
                path = f"/api/v1/namespaces/{self.namespace}/" \
                       f"{'configmaps' if kind == 'configMap' else 'secrets'}/{ref}"
                try:
                    obj = await api.get(path)
                except KubeError as exc:
                    self.event("FailedMount", f"{kind} {ref}: {exc.message}", "Warning")
                    continue
                vdir.mkdir(parents=True, exist_ok=True)
                for k, v in (obj.get("data") or {}).items():
                    data = base64.b64decode(v) if kind == "secret" else str(v).encode()
                    (vdir / k).write_bytes(data)
                sources[name] = str(vdir)
        await self._env_refs()
        mounts: list[tuple[str, str]] = []
        for c in self.init + self.main:
            for m in c.spec.get("volumeMounts") or ():
                src = sources.get(m.get("name", ""))
                dst = m.get("mountPath", "")
                if src is None or not dst:
                    continue
                if not Path(dst).exists():
                    self.event("FailedMount", f"volume {m['name']}: mount path {dst} does not "
                               "exist on this node; the local cluster mounts volumes only at "
                               "existing paths", "Warning")
                    continue
                if _hides_program(dst):
                    self.event("FailedMount", f"volume {m['name']}: not mounted at {dst}: it "
                               "would hide the program the image runs (the local cluster runs "
                               "images from this machine's filesystem)", "Warning")
                    continue
                if (src, dst) not in mounts and src != dst:
                    mounts.append((src, dst))
        if self.spec.get("automountServiceAccountToken", True) is not False:
            token_dir = await self._service_account_files()
            if token_dir is not None:
                mounts.append((str(token_dir), SA_MOUNT))
        ordered, unmountable = order_mounts(mounts)
        for src, dst in unmountable:
            self.event("FailedMount", f"{src} cannot be mounted at {dst}: another volume's "
                       "mount covers its source, and that volume must be mounted above it",
                       "Warning")
        self.volume_mounts = ordered

    async def _service_account_files(self) -> Path | None:
        sa = self.spec.get("serviceAccountName", "default")
        try:
            tr = await self.agent.client.create(
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                 "spec": {"expirationSeconds": 86400, "boundObjectRef": {
                     "kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid}}})
        except KubeError as exc:
            self.event("FailedMount", f"service account token for {sa}: {exc.message}",
                       "Warning")
            return None
        d = self.dir / "serviceaccount"
        d.mkdir(parents=True, exist_ok=True)
        (d / "token").write_text(tr["status"]["token"])
        (d / "ca.crt").write_bytes(self.agent.ca_pem)
        (d / "namespace").write_text(self.namespace)
        self.agent.ensure_sa_mount_point()
        return d

    async def _env_refs(self) -> None:
        for c in self.init + self.main:
            for item in c.spec.get("env") or ():
                ref = item.get("valueFrom") or {}
                for key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                    if key not in ref:
                        continue
                    name, k = ref[key].get("name"), ref[key].get("key")
                    try:
                        obj = await self.agent.client.get(
                            f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
                    except KubeError:
                        continue
                    value = (obj.get("data") or {}).get(k)
                    if value is not None and key == "secretKeyRef":
                        value = base64.b64decode(value).decode(errors="replace")
                    if value is not None:
                        self.env_cache[f"{key}/{name}/{k}"] = str(value)

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


def _covers(outer: str, inner: str) -> bool:
    """Does a mount at ``outer`` hide the path ``inner``?"""
    o, i = Path(outer), Path(inner)
    return o == i or o in i.parents


def order_mounts(mounts: list[tuple[str, str]]
                 ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """An order in which every bind mount still finds its source and none hides an
    earlier one's mount point: a mount whose target covers another's *source* goes
    after it (an emptyDir at /tmp would otherwise hide a token directory that lives
    under /tmp), and a mount at a parent path goes before one beneath it.  Mounts that
    no order satisfies are returned apart, to be reported, not silently dropped.
    """
    remaining = list(mounts)
    ordered: list[tuple[str, str]] = []
    while remaining:
        for m in remaining:
            dst = m[1]
            blocked = any(
                o is not m and (_covers(dst, o[0])              # would hide o's source
                                or (_covers(o[1], dst) and o[1] != dst))  # o: a parent
                for o in remaining)
            if not blocked:
                ordered.append(m)
                remaining.remove(m)
                break
        else:
            return ordered, remaining
    return ordered, []


def _hides_program(mount_path: str) -> bool:
    """Would a mount at ``mount_path`` cover the interpreter or this project?"""
    target = Path(mount_path).resolve()
    for needed in (Path(sys.executable).resolve(), Path(sys.prefix).resolve(), PROJECT_ROOT):
        if needed == target or target in needed.parents:
            return True
    return False


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args and env values ($$ escapes)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2:end]
            out.append(env.get(name, text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class NodeAgent:
    def __init__(self, node: str, node_ip: str, pod_cidr: str, client: KubeClient,
                 state_dir: Path, ca_pem: bytes, registry: Path, *,
                 host_paths: cni.NodePaths | None = None,
                 cgroups: CgroupTree | None = None) -> None:
        self.node = node
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        # The node's own /etc/cni/net.d and /opt/cni/bin (see cni.NodePaths).
        self.cni = cni.Runtime(host_paths or cni.NodePaths(state_dir / "root"))
        self.cgroups = cgroups
        self.sandbox_backoff = float(os.environ.get("AMBIENT_HARNESS_SANDBOX_BACKOFF",
                                                    SANDBOX_BACKOFF))
        self.client = client
        self.state_dir = state_dir
        self.ca_pem = ca_pem
        self.registry = registry
        self.ipam = sandboxes.IPAM(pod_cidr)
        self.catalog: ImageCatalog = default_catalog()
        self.workers: dict[str, PodWorker] = {}
        self.http = aiohttp.ClientSession()
        self.pods = Informer(client, "/api/v1/pods", self._on_pod,
                             field_selector=f"spec.nodeName={node}")
        self.services = Informer(client, "/api/v1/services", self._on_network)
        self.slices = Informer(client, "/apis/discovery.k8s.io/v1/endpointslices",
                               self._on_network)
        self.proxy = ServiceProxy(self.services, self.slices)
        self._event_tasks: set[asyncio.Task[None]] = set()

    def record_netns(self, name: str) -> None:
        with open(self.registry, "a") as f:
            f.write(name + "\n")

    def ensure_sa_mount_point(self) -> None:
        """The token's mount point must exist to bind over; /run is a tmpfs.  The
        directories made here are recorded, and removed at the cluster's teardown only
        if no process (of any cluster) mounts on them."""
        target = Path(SA_MOUNT).resolve()
        missing = []
        p = target
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
        if missing:
            with open(self.state_dir / "made-dirs", "a") as f:
                f.writelines(f"{d}\n" for d in missing)

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
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now(), "lastTimestamp": now(), "count": 1,
        }

        async def send() -> None:
            with contextlib.suppress(KubeError, aiohttp.ClientError, OSError):
                await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)

        self._spawn(send())

    async def register(self) -> None:
        ts = now()
        await self.client.patch(f"/api/v1/nodes/{self.node}/status", {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "node agent is posting ready status",
                            "lastHeartbeatTime": ts, "lastTransitionTime": ts}],
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node}],
            "capacity": {"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110"},
            "allocatable": {"cpu": str(os.cpu_count() or 1), "memory": _memory(),
                            "pods": "110"},
        }})

    async def run(self, stop: asyncio.Event) -> None:
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
        # The mount point made by ensure_sa_mount_point is not removed here: removing it
        # would detach the token from the pods of every other cluster on this machine.
        # The daemon's remove_made_dirs does it once no process mounts on it.


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
    cgroups = (CgroupTree.find(args.cgroup_root, Path(args.cgroup_registry))
               if args.cgroup_root and args.cgroup_registry else None)
    agent = NodeAgent(args.node, args.node_ip, args.pod_cidr, client, Path(args.state_dir),
                      ca, Path(args.registry), cgroups=cgroups)
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
    parser.add_argument("--cgroup-root", help="the node's cgroup root, e.g. "
                        "/ambient-harness/<cluster>/<node>; without it pods get no cgroups")
    parser.add_argument("--cgroup-registry", help="the file recording the node's cgroup "
                        "root before it is made, for cleanup")
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
