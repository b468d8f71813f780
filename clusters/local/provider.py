"""The embedded local cluster as a ``ClusterProvider``.

``up`` starts the control-plane process (API server and controllers) and returns
once it answers; ``teardown`` stops it and removes its folder.  Pods are scheduled
onto the cluster's Node objects; running them is the node agents' job.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from ..provider import ClusterError, ClusterProvider, ExecResult, NodeCapture
from .images import executables
from .network import netns
from .network.topology import node_netns
from .node.podfiles import exec_entry
from .state import ClusterDir, runtime_root

DEFAULT_NAME = "ambient-local"
IMAGE_EXECUTABLES = "image-executables.json"  # the mapping, for the node agents


class LocalCluster(ClusterProvider):
    def __init__(self, name: str = DEFAULT_NAME, *, nodes: int = 2, port: int = 0,
                 host: str = "127.0.0.1", root: Path | str | None = None,
                 die_with_parent: bool = True, start_timeout: float = 60,
                 run_pods: bool = True,
                 image_executables: Iterable[executables.Item] | None = None) -> None:
        """``image_executables``: images to run as executables of this machine
        (``images/executables.py``: ``"PATTERN=/path/to/exe"``, a YAML/JSON file, or
        entry dicts), before those of ``AMBIENT_HARNESS_IMAGE_EXEC``."""
        if nodes < 1:
            raise ClusterError(f"a cluster needs at least one node (asked for {nodes})")
        self.name = name
        self.nodes = nodes
        self.port = port
        self.host = host
        self.dir = ClusterDir.for_name(name, Path(root) if root else None)
        self.die_with_parent = die_with_parent
        self.start_timeout = start_timeout
        self.run_pods = run_pods
        self.image_executables = list(image_executables or ())
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.dir.kubeconfig

    def maps_image(self, image: str) -> bool:
        """Whether ``image`` runs a mapped executable here (``--image-exec`` or the
        environment's mapping), as a mesh adapter asks before installing real images."""
        try:
            mapped = executables.parse(self.image_executables,
                                       "--image-exec / image_executables") + \
                executables.from_environment()
        except executables.MappingError:
            return False
        return executables.find(mapped, image) is not None

    def up(self) -> None:
        if self.dir.alive():
            if self._proc is None:
                raise ClusterError(
                    f"a local cluster named {self.name!r} is already running "
                    f"(kubeconfig {self.kubeconfig}); use it, stop it with "
                    f"'python -m clusters.local down --name {self.name}', or pick another name")
            return
        try:
            mapped = executables.parse(self.image_executables,
                                       "--image-exec / image_executables") + \
                executables.from_environment()
        except executables.MappingError as exc:
            raise ClusterError(str(exc)) from None
        if self.dir.path.exists():
            self.dir.remove()  # a dead run's folder
        try:
            self.dir.path.mkdir(parents=True, mode=0o700)
        except PermissionError:
            raise ClusterError(
                f"cannot create {self.dir.path}: permission denied. Set AMBIENT_HARNESS_STATE "
                "to a folder you can write") from None
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "clusters.local.daemon", "--state-dir", str(self.dir.path),
               "--name", self.name, "--host", self.host, "--port", str(self.port),
               "--nodes", str(self.nodes), "--ready-fd", str(write_fd)]
        if self.die_with_parent:
            cmd.append("--die-with-parent")
        if mapped:
            executables.dump(mapped, self.dir.path / IMAGE_EXECUTABLES)
            cmd += ["--image-executables", str(self.dir.path / IMAGE_EXECUTABLES)]
        if self.run_pods:
            try:
                netns.require_tools()
            except netns.NetworkError as exc:
                raise ClusterError(str(exc)) from None
            cmd += ["--run-pods", "--start-timeout", str(self.start_timeout)]
        project_root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(project_root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        with open(self.dir.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          pass_fds=(write_fd,), env=env,
                                          start_new_session=not self.die_with_parent)
        os.close(write_fd)
        try:
            message = _read_line(read_fd, self.start_timeout + 10)
        finally:
            os.close(read_fd)
        if not message or "error" in message:
            code = self._proc.poll()
            self._kill()
            tail = _tail(self.dir.log)
            self.dir.remove()
            reason = (message or {}).get("error") or (
                f"the API server exited with code {code}" if code is not None
                else f"the API server did not become ready within {self.start_timeout:g}s")
            raise ClusterError(f"local cluster {self.name!r} failed to start: {reason}\n{tail}")
        self.url = message["url"]

    def teardown(self) -> None:
        if self._proc is not None:
            self._kill()
        else:
            self.dir.stop()
        self.dir.remove()

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def exec(self, namespace: str, target: str, argv: list[str],
             timeout: float = 60) -> ExecResult:
        """Run ``argv`` inside the pod's (first, or default) container: its cgroup,
        root, network and UTS namespaces and environment, as ``kubectl exec`` does."""
        if not self.run_pods:
            raise ClusterError("this local cluster runs no pods (run_pods=False): nothing to "
                               "exec into")
        pod = self.find_pod(namespace, target)
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or ()]
        container = (pod["metadata"].get("annotations") or {}).get(
            "kubectl.kubernetes.io/default-container") or (names[0] if names else "")
        entry = exec_entry(self.dir.path, pod, container)
        if entry is None:
            raise ClusterError(f"container {container} of pod {namespace}/"
                               f"{pod['metadata']['name']} is not running")
        prefix, env = entry
        # nsenter forks into the pod's PID namespace: a command that overruns is
        # stopped with its process group
        proc = subprocess.Popen([*prefix, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ClusterError(f"exec {' '.join(argv)} in {namespace}/{target} did not finish "
                               f"within {timeout:g}s") from exc
        return ExecResult(proc.returncode, out.decode(errors="replace"),
                          err.decode(errors="replace"))

    def capture_node_traffic(self, node: str) -> NodeCapture:
        """Capture on the node's uplink (its ``eth0`` toward the other nodes)."""
        from .network.capture import LocalNodeCapture

        name = node_netns(self.name, node)
        if not netns.exists(name):
            raise ClusterError(f"node {node!r} of cluster {self.name!r} has no namespace")
        return LocalNodeCapture(name)

    def find_pod(self, namespace: str, target: str) -> dict:
        """A pod by name, or a running pod of ``deploy/<name>`` (as kubectl exec picks)."""
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            kind, _, name = target.rpartition("/")
            if kind in ("deploy", "deployment", "deployments"):
                dep = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
                selector = ",".join(f"{k}={v}" for k, v in
                                    (dep.spec.selector.match_labels or {}).items())
                pods = core.list_namespaced_pod(namespace, label_selector=selector).items
                running = [p for p in pods if p.status.phase == "Running"
                           and not p.metadata.deletion_timestamp]
                if not running:
                    raise ClusterError(f"deployment {namespace}/{name} has no running pod")
                return api.sanitize_for_serialization(sorted(
                    running, key=lambda p: p.metadata.name)[0])
            if kind not in ("", "pod", "pods", "po"):
                raise ClusterError(f"cannot exec into {target!r}: give a pod name or "
                                   "deploy/<name>")
            return api.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))


def _read_line(fd: int, timeout: float) -> dict[str, str] | None:
    """The daemon's one-line report, or None if it closed the pipe (it died) or timed out."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


__all__ = ["DEFAULT_NAME", "LocalCluster", "runtime_root"]
