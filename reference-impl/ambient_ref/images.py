"""Images of this distribution for the ambient-harness local cluster's catalog.

On a real cluster these are container images built from this distribution; the
local cluster runs the same modules as processes.  The control plane, ztunnel and
waypoint images are registered here as their modules land.
"""

from __future__ import annotations

from typing import Any


def register(catalog: Any) -> None:
    """Called by the local cluster's image catalog (entry point ``ambient_harness.images``).

    No image of this distribution is runnable yet, so none is registered: a pod that
    names one fails like any unknown image, saying the catalog does not know it.
    """
