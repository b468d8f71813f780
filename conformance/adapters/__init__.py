"""Mesh implementation adapters (DESIGN.md, boundary 2).

The suite acts on an implementation only through a :class:`MeshAdapter`: the
``reference`` implementation, real ``istio``, or a declarative YAML file.
"""

from .base import (
    ALL_FEATURES,
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
    "ALL_FEATURES",
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
