"""Mesh implementation adapters: the suite's one boundary with an implementation.

The suite acts on an implementation only through a :class:`MeshAdapter`: the
``reference`` implementation, real ``istio``, or a declarative YAML file.
"""

from .base import (
    ALL_FLAVOURS,
    FLAVOUR_2022,
    FLAVOUR_TODAY,
    AdapterConfigError,
    AdapterError,
    AdapterUnavailable,
    MeshAdapter,
    WaypointInfo,
)
from .registry import load_adapter

__all__ = [
    "ALL_FLAVOURS",
    "FLAVOUR_2022",
    "FLAVOUR_TODAY",
    "AdapterConfigError",
    "AdapterError",
    "AdapterUnavailable",
    "MeshAdapter",
    "WaypointInfo",
    "load_adapter",
]
