"""A kind cluster (Kubernetes in Docker) with a pinned node image."""

from .provider import DEFAULT_NAME, DEFAULT_NODE_IMAGE, KIND_VERSION, KindCluster

__all__ = ["DEFAULT_NAME", "DEFAULT_NODE_IMAGE", "KIND_VERSION", "KindCluster"]
