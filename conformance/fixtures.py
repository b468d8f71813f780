"""The suite's fixtures: the shared cluster, the mesh, and namespaces of apps.

The cluster and the installed mesh belong to the run (see plugin.py); a test gets
namespaces of its own, with Bookinfo and the walkthrough's clients, and gives them
back when it ends, so tests run in parallel and leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clusters.provider import ClusterProvider
from reports.model import SKIP_UNSUPPORTED

from .adapters import MeshAdapter
from .adapters.base import FLAVOUR_TODAY
from .apps import AppNamespace
from .plugin import SUITE_KEY, Suite, skip_as

NamespaceFactory = Callable[..., AppNamespace]


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    return pytestconfig.stash[SUITE_KEY]


@pytest.fixture(scope="session")
def cluster(suite: Suite) -> ClusterProvider:
    """The run's cluster, with the implementation installed on it."""
    if suite.cluster is None:
        pytest.skip(suite.unavailable or "no cluster for this run")
    return suite.cluster


@pytest.fixture(scope="session")
def adapter(suite: Suite) -> MeshAdapter:
    return suite.adapter


@pytest.fixture(scope="session")
def namespaces(cluster: ClusterProvider, adapter: MeshAdapter,
               suite: Suite) -> Iterator[NamespaceFactory]:
    """``namespaces(prefix, enroll=True, ingress=False, bookinfo=True, clients=True)``:
    a new namespace with the apps Ready (and enrolled, captured); all deleted at the
    end of the session."""
    made: list[AppNamespace] = []

    def create(prefix: str, *, enroll: bool = True, **kw: Any) -> AppNamespace:
        ns = AppNamespace.create(cluster, adapter, prefix, canaries=suite.canaries, **kw)
        made.append(ns)
        if enroll:
            ns.enroll()
        return ns

    yield create
    if suite.config.option.keep_cluster:
        return  # kept with the cluster, to be looked at
    for ns in made:
        ns.delete()


@pytest.fixture
def bookinfo(namespaces: NamespaceFactory, request: pytest.FixtureRequest) -> AppNamespace:
    """A per-test namespace with Bookinfo and sleep/notsleep, enrolled in the mesh."""
    return namespaces(request.node.name.split("[")[0].removeprefix("test_")[:20]
                      .replace("_", "-").strip("-") or "t")


@pytest.fixture(scope="session")
def waypoint_flavour(adapter: MeshAdapter) -> str:
    """Today's waypoint API, which the non-walkthrough L7 tests use (targetRefs
    policies, HTTPRoute); an implementation speaking only the 2022 preview skips, as
    not claiming that API (a choice, like an unclaimed feature, not the environment's)."""
    if FLAVOUR_TODAY not in adapter.api_flavours():
        skip_as(SKIP_UNSUPPORTED, f"{adapter.name} does not speak the {FLAVOUR_TODAY} waypoint API")
    return FLAVOUR_TODAY
