"""Fixtures for the cluster code's own tests: one local cluster per test process."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from clusters.local.provider import LocalCluster
from clusters.provider import kubectl_binary


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("clusters")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    c = LocalCluster(f"api-{worker}-{os.getpid()}", root=root, run_pods=False)
    c.up()
    yield c
    c.teardown()


@pytest.fixture(scope="session")
def nodes_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster whose nodes run pods (root, network namespaces)."""
    root = tmp_path_factory.mktemp("nodes")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # Namespace names are machine-wide: the pid keeps concurrent runs apart.
    c = LocalCluster(f"nodes-{worker}-{os.getpid()}", root=root)
    c.up()
    yield c
    c.teardown()


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = cluster.api_client()
    yield api
    api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@contextmanager
def fresh_namespace(core: client.CoreV1Api, prefix: str = "t") -> Iterator[str]:
    """A namespace of a new name, deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    with fresh_namespace(core) as name:
        yield name


def kubectl_runner(cluster: LocalCluster, cache: Path):
    """The pinned kubectl against ``cluster``: run(*args) -> the finished process, an
    AssertionError with its output if it failed and ``check``."""

    def run(*args: str, input: str | None = None, check: bool = True,
            timeout: float = 60, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}", f"--cache-dir={cache}",
             *args], input=input, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **env} if env else None)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    return run


@pytest.fixture
def kubectl(cluster, tmp_path):
    """kubectl against the (pod-less) test cluster (see ``kubectl_runner``)."""
    return kubectl_runner(cluster, tmp_path / "kube-cache")


@pytest.fixture
def nodes_kubectl(nodes_cluster, tmp_path):
    """kubectl against the cluster whose nodes run pods."""
    return kubectl_runner(nodes_cluster, tmp_path / "kube-cache")


@pytest.fixture
def ns(kubectl):
    name = f"k-{uuid.uuid4().hex[:8]}"
    kubectl("apply", "-f", "-",
            input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
    yield name
    kubectl("delete", "namespace", name, "--wait=false")
