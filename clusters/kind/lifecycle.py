"""pytest-kind's ``KindCluster`` on this harness's terms.

pytest-kind (pinned in ``pyproject.toml``) runs a kind cluster's life cycle: create
with a config and node image, re-use, delete, ``kind load docker-image``.  Left to
its defaults it would also download kind and kubectl from the internet, make
``.pytest-kind/<name>/`` in the current directory, let kind's stderr go to the
terminal (its ``CalledProcessError`` then says only "exit status 1"), and wait on
kind without a deadline.  This module keeps what it does and changes those four:

- :class:`PinnedKindCluster` never downloads: the kind and kubectl binaries are the
  ones given (the pin stays the provider's), and a missing one is a ClusterError;
- :func:`make` runs pytest-kind's constructor inside the provider's state folder,
  so its ``.pytest-kind`` lands there (and is removed), never in the user's CWD;
- :func:`driving` runs kind, while pytest-kind calls it, through
  :func:`~clusters.kubectl_cluster.run_tool`: a deadline, stderr captured, and a
  failure raised as ClusterError naming the command and kind's message;
- :func:`driving` also stops ``create()``'s "while not cluster_exists" loop (it
  deletes and re-creates when the kubeconfig is missing) after one create, so a
  kind that succeeds without a kubeconfig cannot make it loop for ever.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest_kind.cluster as pytest_kind_cluster

from ..kubectl_cluster import run_tool
from ..provider import ClusterError

# pytest-kind calls ``subprocess`` through its module's global; one substitution at a
# time, and the working directory is process-wide: both are changed under this lock.
_LOCK = threading.RLock()


class PinnedKindCluster(pytest_kind_cluster.KindCluster):
    """pytest-kind's cluster with its downloads replaced by a check: pytest-kind
    fetches kind and kubectl when the given path does not exist, which would let a
    typo silently swap the pinned kind for pytest-kind's default release."""

    def ensure_kind(self) -> None:
        if not Path(self.kind_path).is_file():
            raise ClusterError(f"kind binary {self.kind_path} does not exist (the harness "
                               "never downloads kind: install the pinned release)")

    def ensure_kubectl(self) -> None:
        if not Path(self.kubectl_path).is_file():
            raise ClusterError(f"kubectl binary {self.kubectl_path} does not exist (the "
                               "harness never downloads kubectl: install the test extras)")


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run the body in ``path``, then return to the previous directory by descriptor
    (which works even if the old directory was renamed or cannot be listed)."""
    with _LOCK:
        back = os.open(".", getattr(os, "O_PATH", os.O_RDONLY))
        try:
            os.chdir(path)
            yield
        finally:
            os.fchdir(back)
            os.close(back)


def make(name: str, *, state_dir: Path, kubeconfig: Path, image: str, kind_path: Path,
         kubectl_path: Path) -> PinnedKindCluster:
    """A pytest-kind cluster whose every file is under ``state_dir``.

    pytest-kind's constructor makes ``.pytest-kind/<name>/`` relative to the working
    directory, for the binaries it would download; every path is given here, so that
    folder stays empty.  It is made inside ``state_dir`` and removed at once: the user's
    CWD is never written, even when it is read-only.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _working_directory(state_dir):
        cluster = PinnedKindCluster(name, kubeconfig=kubeconfig, image=image,
                                    kind_path=kind_path, kubectl_path=kubectl_path)
    shutil.rmtree(state_dir / ".pytest-kind", ignore_errors=True)
    cluster.path = state_dir
    return cluster


class _KindProcesses:
    """What pytest-kind's module sees as ``subprocess`` while :func:`driving` runs.

    Its calls to the kind binary go through ``run_tool`` (deadline, stderr captured,
    ClusterError on a non-zero exit); anything else is the real ``subprocess``.
    """

    def __init__(self, kind_path: Path, timeout: float, kubeconfig: Path) -> None:
        self._kind = str(kind_path)
        self._timeout = timeout
        self._kubeconfig = kubeconfig
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def _run(self, argv: list[Any], check: bool) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv[1:]]
        if args[:2] == ["create", "cluster"]:
            self.creates += 1
            if self.creates > 1:
                raise ClusterError(
                    "`kind create cluster` succeeded but left no kubeconfig at "
                    f"{self._kubeconfig}, so pytest-kind deleted the cluster to create it "
                    "again; stopped instead of looping")
        return run_tool([self._kind, *args], timeout=self._timeout, check=check,
                        display=shlex.join(["kind", *args]))

    def run(self, argv: list[Any], *args: Any, check: bool = False,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if not argv or str(argv[0]) != self._kind:
            return subprocess.run(argv, *args, check=check, **kwargs)
        return self._run(argv, check)

    def check_output(self, argv: list[Any], *args: Any, **kwargs: Any) -> Any:
        if not argv or str(argv[0]) != self._kind:
            return subprocess.check_output(argv, *args, **kwargs)
        return self._run(argv, check=True).stdout


@contextmanager
def driving(cluster: PinnedKindCluster, *, timeout: float) -> Iterator[PinnedKindCluster]:
    """Call pytest-kind's methods on ``cluster`` in the body: each kind command it runs
    gets ``timeout`` seconds, and its failure is a ClusterError with kind's stderr."""
    with _LOCK:
        saved = pytest_kind_cluster.subprocess
        pytest_kind_cluster.subprocess = _KindProcesses(  # type: ignore[assignment]
            Path(cluster.kind_path), timeout, Path(cluster.kubeconfig_path))
        try:
            yield cluster
        finally:
            pytest_kind_cluster.subprocess = saved
