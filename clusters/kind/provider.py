"""A kind cluster (Kubernetes in Docker) as a ``ClusterProvider``.

The cluster's life cycle (create, re-use, delete, ``kind load docker-image``) is
pytest-kind's ``KindCluster`` (see :mod:`.lifecycle` for the terms it runs on here:
never downloading, nothing in the current directory, kind's errors as ClusterError).
kind itself is ours: the binary from PATH (or a given one) and a node image pinned by
digest, because a tag alone can be re-pushed and kind supports a node image only with
the kind release that built it, so the pin is the pair (``KIND_VERSION``,
``DEFAULT_NODE_IMAGE``) from that release's notes.  The cluster's kubeconfig is written
to the provider's own state folder, never merged into ``~/.kube/config``, so running
the suite does not change the user's current context.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..kubectl_cluster import KubectlCluster, run_tool
from ..local.state import runtime_root
from ..provider import ClusterError

if TYPE_CHECKING:
    from .lifecycle import PinnedKindCluster

DEFAULT_NAME = "ambient-harness"
# The newest kind release, v0.33.0 (August 2026), and the default node image its release
# notes name: https://github.com/kubernetes-sigs/kind/releases/tag/v0.33.0, "The default
# node image is now kindest/node:v1.37.0@sha256:a1ed56cf..." (kubernetes-sigs/kind#4248
# made 1.37.0 the default; the notes' first line said 1.36.1 by mistake, corrected there).
# kind supports a node image only with the release that built it: move both together.
KIND_VERSION = "v0.33.0"
# kind v0.33.0's default node image, Kubernetes 1.37.0.
DEFAULT_NODE_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
)
INSTALL_HINT = (f"install it with `go install sigs.k8s.io/kind@{KIND_VERSION}` or the release "
                f"binary from https://github.com/kubernetes-sigs/kind/releases/tag/{KIND_VERSION}"
                ", and put it on PATH")
LIBRARY_HINT = ("pytest-kind, which runs the kind cluster's life cycle, is not installed: "
                "install the harness with its dependencies (`pip install -e .`)")

# Short kind commands (listing, kubeconfig, delete) against a local container engine.
QUICK_TIMEOUT = 120.0

# kind's messages for the failures a person can fix, and the fix ({name}: the cluster,
# {image}: the node image).  The messages are kind's own (pkg/cluster/internal/create,
# pkg/cmd/kind/load, pkg/cluster/internal/kubeconfig) or the Docker client's.
_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"already exist for a cluster", re.I),
     "a kind cluster named {name!r} (or its leftover node containers) already exists: "
     "delete it with `kind delete cluster --name {name}` and run again"),
    (re.compile(r"cannot connect to the docker daemon|docker\.sock|is the docker daemon "
                r"running|failed to connect to the docker api", re.I),
     "kind cannot reach the Docker engine: start it (`docker info` must work for this "
     "user)"),
    (re.compile(r"failed to pull image|manifest unknown|pull access denied", re.I),
     "the node image {image} could not be pulled: check this machine's access to Docker "
     "Hub, or pull it beforehand with `docker pull {image}`"),
    (re.compile(r"not present locally", re.I),
     "kind loads images from the local Docker engine: pull or build the image there first"),
    (re.compile(r"no nodes found for cluster|unknown cluster|could not locate any control "
                r"plane", re.I),
     "no kind cluster named {name!r} is running (`kind get clusters` lists those that "
     "are)"),
)


class KindCluster(KubectlCluster):
    """A kind cluster of one control plane and ``nodes - 1`` workers.

    ``up`` reuses a running kind cluster of the same name (a developer's kept
    cluster, or a previous run's) instead of failing; ``teardown`` deletes the
    cluster unless ``keep``, whether this object created it or found it.
    ``config`` (a kind ``Cluster`` config, as a dict or a file) replaces the
    generated one, and then ``nodes`` is not used.
    """

    can_load_images = True

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
        # Absolute: pytest-kind is constructed with the state folder as working directory.
        self.state_dir = ((Path(root) if root else runtime_root()) / f"kind-{name}").absolute()
        self._deleted = False
        self._library: PinnedKindCluster | None = None

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
        if importlib.util.find_spec("pytest_kind") is None:
            return LIBRARY_HINT
        return None

    # -- life cycle ------------------------------------------------------------------

    def up(self) -> None:
        """Create the cluster (pytest-kind's ``create`` with the generated config and
        the pinned image, then wait until every node is Ready), or reuse a running one
        of the same name; either way leave its kubeconfig in the state folder.

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
        # kind deletes what it made when create fails, unless told to keep it
        retain = (f"kind removed what it had made; to look at the nodes, run that command "
                  f"with `--retain`, then `kind export logs --name {self.name}`")
        with self._driving(f"creating kind cluster {self.name!r}",
                           timeout=self.create_timeout, otherwise=retain) as kind:
            kind.create(config_file=self.config_file)
        self._wait_for_nodes()

    def teardown(self) -> None:
        """``kind delete cluster`` unless ``keep``; safe to call twice.  With ``keep``
        the cluster and its kubeconfig stay, for the next run to reuse or a person to
        inspect; a provider that never ran ``up`` still deletes a cluster of its name,
        which is how a kept cluster is removed later."""
        if self.keep or self._deleted:
            return
        # pytest-kind passes --kubeconfig: kind removes the context from that file, not
        # from ~/.kube/config.
        with self._driving(f"deleting kind cluster {self.name!r}",
                           timeout=QUICK_TIMEOUT) as kind:
            kind.delete()
        self._deleted = True
        self._library = None
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def clusters(self) -> list[str]:
        """The kind clusters that exist on this machine (``kind get clusters``)."""
        out = self._kind("get", "clusters").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def _wait_for_nodes(self) -> None:
        """What ``kind create cluster --wait`` did: pytest-kind's create returns once
        kind has made the nodes, before their network is up; the mesh is installed
        only on Ready nodes."""
        try:
            self.kubectl("wait", "--for=condition=Ready", "nodes", "--all",
                         f"--timeout={self.wait_for}", timeout=self.create_timeout)
        except ClusterError as exc:
            raise ClusterError(
                f"kind cluster {self.name!r} was created but its nodes were not Ready "
                f"within {self.wait_for}: {exc}. Fix: look at the nodes' kubelet and "
                f"containerd logs (`kind export logs --name {self.name}`), then delete the "
                f"cluster (`kind delete cluster --name {self.name}`) and run again") from None

    # -- what only kind can do --------------------------------------------------------

    def load_image(self, image: str, archive: Path | None = None) -> None:
        """Put an image on every node: from the local Docker engine
        (pytest-kind's ``load_docker_image``), or from a saved archive
        (``kind load image-archive``, which pytest-kind does not offer)."""
        if archive is not None:
            self._kind("load", "image-archive", str(archive), "--name", self.name,
                       timeout=self.create_timeout)
            return
        with self._driving(f"loading {image} into kind cluster {self.name!r}",
                           timeout=self.create_timeout) as kind:
            kind.load_docker_image(image)

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
        return os.path.abspath(found)

    def _kind(self, *args: str,
              timeout: float = QUICK_TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            return run_tool([self._binary(), *args], timeout=timeout,
                            display=shlex.join(["kind", *args]))
        except ClusterError as exc:
            raise ClusterError(self._explain(str(exc))) from None

    def _pytest_kind(self) -> PinnedKindCluster:
        """pytest-kind's cluster for this one, made once, with our kind, our kubectl (so
        it downloads neither) and every file in the state folder."""
        if self._library is None:
            try:
                from . import lifecycle
            except ImportError as exc:
                raise ClusterError(f"{LIBRARY_HINT} ({exc})") from None
            try:
                kubectl = Path(self.kubectl_argv()[0])
            except ClusterError:
                kubectl = self.state_dir / "kubectl-not-found"  # its ensure_kubectl says so
            self._library = lifecycle.make(
                self.name, state_dir=self.state_dir, kubeconfig=self.kubeconfig,
                image=self.node_image, kind_path=Path(self._binary()), kubectl_path=kubectl)
        return self._library

    @contextmanager
    def _driving(self, action: str, *, timeout: float,
                 otherwise: str | None = None) -> Iterator[PinnedKindCluster]:
        """Call pytest-kind in the body; whatever goes wrong is a ClusterError that
        says what was being done, kind's own message, and the fix (``otherwise`` when
        no more particular one is known)."""
        from . import lifecycle

        library = self._pytest_kind()
        try:
            with lifecycle.driving(library, timeout=timeout):
                yield library
        except ClusterError as exc:
            raise ClusterError(f"{action}: {self._explain(str(exc), otherwise)}") from None
        except Exception as exc:  # pytest-kind's own (e.g. pykube reading the kubeconfig)
            raise ClusterError(f"{action}: pytest-kind failed: {type(exc).__name__}: "
                               f"{exc}") from exc

    def _explain(self, message: str, otherwise: str | None = None) -> str:
        """kind's failure with the fix for it: a known message's own fix, else a look at
        whether this kind is the pinned release the node image was built for, else
        ``otherwise``."""
        said = message.rstrip(". ")
        for pattern, fix in _FIXES:
            if pattern.search(message):
                return f"{said}. Fix: {fix.format(name=self.name, image=self.node_image)}"
        version = self._version()
        if (self.node_image == DEFAULT_NODE_IMAGE and version is not None
                and KIND_VERSION not in version.split()):
            return (f"{said}. Fix: this kind is {version!r}, the pinned node image is "
                    f"built for kind {KIND_VERSION}: {INSTALL_HINT}")
        return f"{said}. Fix: {otherwise}" if otherwise else message

    def _version(self) -> str | None:
        """``kind version``'s answer, or None when kind cannot say."""
        try:
            proc = run_tool([self._binary(), "version"], timeout=30, check=False)
        except ClusterError:
            return None
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        """Write a file only its owner can read: a kubeconfig carries credentials."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
