"""A pod's container as a process: start, supervise, restart, stop.

One ``Container`` per container of the pod's spec.  It starts its process in a
root of its own (``rootfs.py``) inside the pod's network namespace and in a
cgroup of its own, with what its pod says it runs (``Pod.launch``: command,
environment, root), keeps its log, runs its probes (``probes.py``) while it
runs, restarts it per ``restartPolicy`` with kubelet's back-off, stops it
(SIGTERM, SIGKILL after the grace period) and keeps its part of the pod's status
(``status.ContainerView``) current.  Its pod is reached through ``Pod`` (the
node agent's ``PodWorker``), so this module does not depend on the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ..images.catalog import Program
from ..images.executables import ImageExecutable
from . import launch, podfiles, rootfs, stdio
from .cgroups import CgroupError
from .clock import RESYNC_MAX, RESYNC_START, now, pause, seconds_since
from .podenv import ConfigError
from .probes import Probes
from .sandbox import Sandbox
from .status import ContainerView

# kubelet's crash-loop back-off: 10 s, doubled per restart, at most 5 min; reset
# once a run lasted 10 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
# How long after a container's exit its log relay waits for the output pipe to close
# (something outside the container's cgroup may still hold it).
LOG_DRAIN_S = 2.0


class Node(Protocol):
    """What a container needs of its node agent."""

    @property
    def http(self) -> aiohttp.ClientSession: ...  # for HTTP probes
    @property
    def proc(self) -> str: ...  # the procfs of the node's PID namespace


class Pod(Protocol):
    """What a container needs of its pod (the node agent's ``PodWorker``)."""

    @property
    def agent(self) -> Node: ...
    @property
    def dir(self) -> Path: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def terminating(self) -> asyncio.Event: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def sandbox(self) -> Sandbox | None: ...
    def changed(self) -> None: ...
    def event(self, reason: str, message: str, kind: str = "Normal") -> None: ...
    async def launch(self, c: Container
                     ) -> tuple[list[str], dict[str, str], rootfs.RootSpec]: ...
    def container_cgroup(self, container_id: str) -> tuple[str | None, str | None]: ...
    async def remove_cgroup(self, path: str | None) -> None: ...


class Container:
    """One container of a pod, over all its runs (a restart is a new process)."""

    def __init__(self, pod: Pod, spec: dict[str, Any], init: bool) -> None:
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.view = ContainerView(self.name, spec.get("image", ""), init=init)
        self.process: rootfs.Process | None = None
        self.stdio: stdio.Stdio | None = None
        self.image: Program | ImageExecutable | None = None
        self.stopping = False
        self.backoff = BACKOFF_START
        self.probes = Probes(self, spec)
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

    # -- what its probes read and report through (probes.Probed) ----------------------

    @property
    def pod_ip(self) -> str:
        return self.pod.ip or ""

    @property
    def session(self) -> aiohttp.ClientSession:
        return self.pod.agent.http

    @property
    def grace(self) -> int:
        """The pod's terminationGracePeriodSeconds."""
        return int(self.pod.spec.get("terminationGracePeriodSeconds", 30))

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.pod.event(reason, message, kind)

    def set_ready(self) -> None:
        running = "running" in self.view.state
        self.view.ready = running and self.probes.readiness_ok and self.probes.startup_ok
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
        # stdout and stderr relayed to the log with each line's time; stdin kept for
        # attach if the container asks for it (stdio.py)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stdio = stdio.Stdio(self.spec, self.log_path(self.view.restart_count), self.dir)
        try:
            await self.stdio.open()
        except OSError as exc:
            self._waiting("CreateContainerError", f"container stdio: {exc}")
            await self.pod.remove_cgroup(self.cgroup)
            self.stdio.spawned()
            await self._log_written()
            return False
        try:
            # the child joins the cgroup first, then sets its root up (rootfs.enter)
            self.process = await rootfs.spawn(
                dataclasses.replace(root, cgroup=cgroup_dir,
                                    controlling_terminal=self.stdio.tty),
                argv, env=env, stdout=self.stdio.child_out,
                stdin=self.stdio.child_stdin if self.stdio.child_stdin is not None
                else subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT)
        except rootfs.RootError as exc:
            self._waiting("CreateContainerError", f"container root: {exc}")
            await self.pod.remove_cgroup(self.cgroup)
            self.stdio.spawned()
            await self._log_written()
            return False
        except OSError as exc:
            self._waiting("CreateContainerError",
                          f'exec: "{argv[0]}": {exc.strerror or exc} (looked up in PATH='
                          f'{env.get("PATH", "")} inside the container)')
            await self.pod.remove_cgroup(self.cgroup)
            self.stdio.spawned()
            await self._log_written()
            return False
        finally:
            self.stdio.spawned()  # the container holds them now (or nobody: the relay ends)
        podfiles.write_pid(self.pod.dir, self.name, self.process.pid)
        self.exited.clear()
        started_at = now()
        self.view.container_id = f"local://{container_id}"
        if isinstance(self.image, Program) and self.image.listens and self.pod.sandbox:
            # The image is "created" once its program serves (see images/catalog.py).
            await self._await_listening(self.image.listens)
        if self.process.returncode is None:
            self.view.state = {"running": {"startedAt": started_at}}
            self.view.started = self.probes.startup_ok
            self.event("Started", f"Started container {self.name}")
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
                await pause(self.pod.terminating, resync)
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
            await self._log_written()
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
            if self.stopping or policy == "Never" or (policy == "OnFailure" and code == 0):
                self.view.state = {"terminated": terminated}
                self.pod.changed()
                return
            self.view.last_state = {"terminated": terminated}
            uptime = seconds_since(started)
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
            self.event("BackOff", f"Back-off restarting failed container {self.name}",
                       "Warning")
            await pause(self.pod.terminating, delay)

    async def _log_written(self) -> None:
        """Until the relay wrote everything the container wrote (its pipe closes once
        the last process holding it is gone), so the status that follows and
        ``kubectl logs`` see the whole log.  A process that escaped the container's
        cgroup could hold the pipe open: after LOG_DRAIN_S the relay is closed."""
        if self.stdio is not None:
            await self.stdio.finish(LOG_DRAIN_S)

    def start_probes(self) -> None:
        self.probes.start()

    def stop_probes(self) -> None:
        self.probes.stop()

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
