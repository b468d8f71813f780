"""A cluster someone else runs, as a ``ClusterProvider``.

The harness neither creates nor removes it: ``up`` only checks that the API
answers, so a wrong kubeconfig or a stopped cluster fails in seconds with a
message naming both, instead of as a timeout deep in the first test; ``teardown``
leaves the cluster alone because it is not ours.  Images cannot be side-loaded:
such a cluster pulls from a registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..kubectl_cluster import KubectlCluster
from ..provider import ClusterError


def default_kubeconfig() -> Path:
    """The kubeconfig kubectl itself would use: ``$KUBECONFIG``, else ``~/.kube/config``.

    A ``$KUBECONFIG`` that lists several files is refused: kubectl merges them,
    but ``--kubeconfig`` and the Python client take one file, and silently using
    only the first could aim the suite at the wrong cluster.
    """
    value = os.environ.get("KUBECONFIG", "")
    paths = [p for p in value.split(os.pathsep) if p]
    if len(paths) > 1:
        raise ClusterError(
            f"KUBECONFIG lists several files ({value}); the harness needs one: pass "
            "kubeconfig=<file>, or merge them first (kubectl config view --flatten > FILE)")
    if paths:
        return Path(paths[0]).expanduser()
    return Path.home() / ".kube" / "config"


class ExistingCluster(KubectlCluster):
    """Any reachable cluster, named by a kubeconfig file and optionally a context."""

    def __init__(self, kubeconfig: Path | str | None = None, context: str | None = None, *,
                 name: str | None = None, ready_timeout: float = 10) -> None:
        self._kubeconfig = Path(kubeconfig).expanduser() if kubeconfig is not None else None
        self.context = context
        self.name = name or context or "existing"
        self.ready_timeout = ready_timeout

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig if self._kubeconfig is not None else default_kubeconfig()

    @property
    def kubectl_cache_dir(self) -> Path | None:
        # The kubeconfig's folder may be read-only (a mounted secret) or someone's
        # ~/.kube: leave kubectl's own cache, as the user's kubectl would.
        return None

    def describe(self) -> str:
        """``kubeconfig F, context C (server S)``: which cluster this is, for messages."""
        context, server = _context_and_server(self.kubeconfig, self.context)
        text = f"kubeconfig {self.kubeconfig}, context {context or '(none set)'}"
        if self.context is None and context:
            text += " (its current-context)"
        return text + (f", server {server}" if server else "")

    def up(self) -> None:
        """Check that the API answers ``/readyz`` within ``ready_timeout``; nothing else.

        Raises ClusterError naming the kubeconfig, the context and the fix: the
        usual causes (cluster stopped, wrong context, VPN down) are outside the
        harness, so the message has to point there.
        """
        path = self.kubeconfig
        if not path.is_file():
            raise ClusterError(
                f"kubeconfig {path} does not exist: pass kubeconfig=<file> (--kubeconfig), "
                "or set KUBECONFIG to the file of the cluster to test")
        self._check_context(path)
        timeout = self.ready_timeout
        try:
            proc = self.kubectl("get", "--raw", "/readyz", f"--request-timeout={timeout:g}s",
                                check=False, timeout=timeout + 10)
        except ClusterError as exc:  # kubectl hung past its own deadline
            reason = str(exc)
        else:
            if proc.returncode == 0 and proc.stdout.strip() == "ok":
                return
            reason = (proc.stderr.strip() or proc.stdout.strip()
                      or f"kubectl exit {proc.returncode}")
        raise ClusterError(
            f"the existing cluster does not answer ({self.describe()}): {reason}\n"
            f"Check that the cluster is running and reachable from here "
            f"(kubectl --kubeconfig {path}"
            f"{f' --context {self.context}' if self.context else ''} get --raw /readyz), "
            "or point the harness at another cluster (kubeconfig= / context=, or KUBECONFIG)")

    def _check_context(self, path: Path) -> None:
        """A missing context is a typo, not an outage: say which contexts there are."""
        names = _context_names(path)
        if names is None:
            return  # not readable as YAML here: let kubectl say what is wrong
        if self.context is not None and self.context not in names:
            raise ClusterError(
                f"kubeconfig {path} has no context {self.context!r} (it has: "
                f"{', '.join(names) or 'none'}); pass one of those as context=")
        if self.context is None and not _current_context(path):
            raise ClusterError(
                f"kubeconfig {path} sets no current-context: pass context= (one of: "
                f"{', '.join(names) or 'none'})")

    def teardown(self) -> None:
        """Do nothing: the cluster is not ours, so it is left running as it was found.

        What the suite created in it (namespaces, installs) is the suite's and its
        adapters' to delete, not the provider's.
        """

    def load_image(self, image: str, archive: Path | None = None) -> None:
        """Always refused: there is no way to side-load into a cluster we do not run."""
        raise ClusterError("an existing cluster pulls images from a registry; push the image "
                           f"there ({image})")


def _context_and_server(path: Path, context: str | None) -> tuple[str | None, str | None]:
    """The context in effect and its server URL, read from the file; (context, None) when
    the file cannot tell (it is only for messages, so it never raises)."""
    doc = _load(path)
    if doc is None:
        return context, None
    name = context or doc.get("current-context") or None
    try:
        ctx = next(c["context"] for c in doc.get("contexts") or [] if c.get("name") == name)
        cluster = next(c["cluster"] for c in doc.get("clusters") or []
                       if c.get("name") == ctx.get("cluster"))
        return name, cluster.get("server")
    except (StopIteration, KeyError, TypeError, AttributeError):
        return name, None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def _context_names(path: Path) -> list[str] | None:
    doc = _load(path)
    if doc is None:
        return None
    return [c["name"] for c in doc.get("contexts") or [] if isinstance(c, dict) and "name" in c]


def _current_context(path: Path) -> str | None:
    return (_load(path) or {}).get("current-context") or None
