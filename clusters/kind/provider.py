"""A kind cluster (Kubernetes in Docker) as a ``ClusterProvider``.

kind runs from PATH (or a given binary) with a node image pinned by digest: a
tag alone can be re-pushed, and kind supports a node image only with the kind
release that built it, so the pin is the pair (``KIND_VERSION``,
``DEFAULT_NODE_IMAGE``) from that release's notes.  The cluster's kubeconfig is
written to the provider's own state folder, never merged into ``~/.kube/config``,
so running the suite does not change the user's current context.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..kubectl_cluster import KubectlCluster, run_tool
from ..local.state import runtime_root
from ..provider import ClusterError

DEFAULT_NAME = "ambient-harness"
# The kind release the image below was built for (its release notes list the pair).
KIND_VERSION = "v0.31.0"
# kind v0.31.0's default node image, Kubernetes 1.35.0.
DEFAULT_NODE_IMAGE = (
    "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
)
INSTALL_HINT = (f"install it with `go install sigs.k8s.io/kind@{KIND_VERSION}` or the release "
                f"binary from https://github.com/kubernetes-sigs/kind/releases/tag/{KIND_VERSION}"
                ", and put it on PATH")

# Short kind commands (listing, kubeconfig, delete) against a local container engine.
QUICK_TIMEOUT = 120.0


class KindCluster(KubectlCluster):
    """A kind cluster of one control plane and ``nodes - 1`` workers.

    ``up`` reuses a running kind cluster of the same name (a developer's kept
    cluster, or a previous run's) instead of failing; ``teardown`` deletes the
    cluster unless ``keep``, whether this object created it or found it.
    ``config`` (a kind ``Cluster`` config, as a dict or a file) replaces the
    generated one, and then ``nodes`` is not used.
    """

    def __init__(self, name: str = DEFAULT_NAME, node_image: str = DEFAULT_NODE_IMAGE,
                 nodes: int = 2, kind_binary: str | Path | None = None,
                 config: Path | dict[str, Any] | None = None, keep: bool = False, *,
                 root: Path | str | None = None, wait: str = "120s",
                 create_timeout: float = 900) -> None:
        if nodes < 1:
            raise ClusterError(f"a cluster needs at least one node (asked for {nodes})")
        self.name = name
        self.node_image = node_image
        self.nodes = nodes
        self.kind_binary = str(kind_binary) if kind_binary is not None else None
        self.config = config
        self.keep = keep
        self.wait_for = wait
        self.create_timeout = create_timeout
        self.state_dir = (Path(root) if root else runtime_root()) / f"kind-{name}"
        self._deleted = False

    # -- where things are ------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def config_file(self) -> Path:
        """The kind config ``up`` passes (generated, or the one given as a file)."""
        if isinstance(self.config, Path):
            return self.config
        return self.state_dir / "kind-config.yaml"

    def cluster_config(self) -> dict[str, Any]:
        """The kind ``Cluster`` config: one control plane and ``nodes - 1`` workers
        (several nodes, so ambient's node-to-node traffic is real)."""
        if isinstance(self.config, dict):
            return self.config
        if isinstance(self.config, Path):
            return yaml.safe_load(self.config.read_text())
        return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
                "nodes": [{"role": "control-plane"}]
                + [{"role": "worker"} for _ in range(self.nodes - 1)]}

    # -- availability ------------------------------------------------------------------

    @classmethod
    def available(cls, kind_binary: str | Path | None = None,
                  engine_binary: str | Path | None = None) -> str | None:
        """Why kind cannot run on this machine, or None if it can.

        Checked before a session starts, so "no Docker here" becomes a skip with
        a reason rather than every test failing in setup.  The engine is the one
        kind will use (``KIND_EXPERIMENTAL_PROVIDER``: podman or nerdctl, else docker).
        """
        if shutil.which(str(kind_binary or "kind")) is None:
            where = f"{kind_binary} does not exist" if kind_binary else "kind is not on PATH"
            return f"{where}: {INSTALL_HINT}"
        engine_name = os.environ.get("KIND_EXPERIMENTAL_PROVIDER") or "docker"
        engine = shutil.which(str(engine_binary or engine_name))
        label = "Docker" if engine_name == "docker" else engine_name
        if engine is None:
            return f"{engine_name} is not on PATH: kind needs a {label} engine to run its nodes"
        try:
            run_tool([engine, "info"], timeout=30, display=f"{engine_name} info")
        except ClusterError as exc:
            return f"no {label} engine is running: kind needs one ({exc})"
        return None

    # -- life cycle ------------------------------------------------------------------

    def up(self) -> None:
        """Create the cluster (``kind create cluster ... --wait``), or reuse a running
        one of the same name; either way leave its kubeconfig in the state folder.

        A reused cluster keeps the node image it was made with: kind cannot tell,
        so delete it (or pick another name) after changing ``node_image``.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._deleted = False
        if self.name in self.clusters():
            kubeconfig = self._kind("get", "kubeconfig", "--name", self.name).stdout
            self._write_private(self.kubeconfig, kubeconfig)
            return
        if not isinstance(self.config, Path):
            self.config_file.write_text(yaml.safe_dump(self.cluster_config(), sort_keys=False))
        self._kind("create", "cluster", "--name", self.name, "--image", self.node_image,
                   "--config", str(self.config_file), "--kubeconfig", str(self.kubeconfig),
                   "--wait", self.wait_for, timeout=self.create_timeout)

    def teardown(self) -> None:
        """``kind delete cluster`` unless ``keep``; safe to call twice.  With ``keep``
        the cluster and its kubeconfig stay, for the next run to reuse or a person to
        inspect; a provider that never ran ``up`` still deletes a cluster of its name,
        which is how a kept cluster is removed later."""
        if self.keep or self._deleted:
            return
        # --kubeconfig: kind removes the context from that file, not from ~/.kube/config.
        self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig))
        self._deleted = True
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def clusters(self) -> list[str]:
        """The kind clusters that exist on this machine (``kind get clusters``)."""
        out = self._kind("get", "clusters").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    # -- what only kind can do --------------------------------------------------------

    def load_image(self, image: str, archive: Path | None = None) -> None:
        """Put an image on every node: from the local Docker engine
        (``kind load docker-image``), or from a saved archive (``kind load image-archive``)."""
        if archive is not None:
            self._kind("load", "image-archive", str(archive), "--name", self.name,
                       timeout=self.create_timeout)
        else:
            self._kind("load", "docker-image", image, "--name", self.name,
                       timeout=self.create_timeout)

    def export_logs(self, dest: Path) -> Path:
        """``kind export logs``: every node's journal, kubelet and container logs, for a
        failed run's artifacts (kind's nodes vanish with the cluster)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        self._kind("export", "logs", str(dest), "--name", self.name, timeout=300)
        return dest

    # -- running kind -----------------------------------------------------------------

    def _binary(self) -> str:
        found = shutil.which(self.kind_binary or "kind")
        if found is None:
            raise ClusterError(f"kind not found ({self.kind_binary or 'not on PATH'}): "
                               f"{INSTALL_HINT}")
        return found

    def _kind(self, *args: str,
              timeout: float = QUICK_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run_tool([self._binary(), *args], timeout=timeout,
                        display=shlex.join(["kind", *args]))

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        """Write a file only its owner can read: a kubeconfig carries credentials."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
