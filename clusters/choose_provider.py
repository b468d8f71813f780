"""Choosing a cluster provider by name, as a command line or fixture does.

One place maps "local" | "kind" | "existing" to a provider and says why one cannot
run here, so the suite can skip with that reason instead of failing in setup.
Providers are imported only when chosen: asking for "existing" must not need
what "local" or "kind" need.
"""

from __future__ import annotations

from pathlib import Path

from .provider import ClusterError, ClusterProvider

PROVIDERS = ("local", "kind", "existing")


def _unknown(kind: str) -> ClusterError:
    return ClusterError(f"unknown cluster provider {kind!r}: choose one of "
                        f"{', '.join(PROVIDERS)}")


def make_provider(kind: str, *, name: str, nodes: int = 2,
                  kubeconfig: Path | str | None = None, context: str | None = None,
                  root: Path | str | None = None,
                  image_executables: list[str] | None = None) -> ClusterProvider:
    """A provider of the given kind.  ``name`` names the cluster to create (local,
    kind; for existing only a label); ``kubeconfig``/``context`` select someone
    else's (existing); ``root`` is where local and kind keep their state;
    ``image_executables`` maps images to executables of this machine (local only)."""
    if image_executables and kind != "local":
        raise ClusterError(f"--image-exec needs the local cluster (it maps images to files of "
                           f"this machine); the {kind!r} cluster pulls its images")
    if kind == "local":
        from .local.provider import LocalCluster

        return LocalCluster(name, nodes=nodes, root=root, image_executables=image_executables)
    if kind == "kind":
        from .kind.provider import KindCluster

        return KindCluster(name, nodes=nodes, root=root)
    if kind == "existing":
        from .existing.provider import ExistingCluster

        return ExistingCluster(kubeconfig=kubeconfig, context=context, name=name)
    raise _unknown(kind)


def unavailable_reason(kind: str) -> str | None:
    """Why a provider of this kind cannot run on this machine, or None if it can.

    "existing" is always possible to try: whether the cluster answers is its
    ``up``'s to say.
    """
    if kind == "local":
        from .local.network import netns

        try:
            netns.require_tools()
        except netns.NetworkError as exc:
            return str(exc)
        return None
    if kind == "kind":
        from .kind.provider import KindCluster

        return KindCluster.available()
    if kind == "existing":
        return None
    raise _unknown(kind)
