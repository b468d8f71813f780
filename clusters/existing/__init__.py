"""A cluster someone else runs, reached through a kubeconfig (and context)."""

from .provider import ExistingCluster, default_kubeconfig

__all__ = ["ExistingCluster", "default_kubeconfig"]
