"""Images of this distribution for the ambient-harness local cluster's catalog.

On a real cluster these are container images built from this distribution; the
local cluster runs the same modules as processes, with this interpreter.
"""

from __future__ import annotations

from typing import Any

PILOT_IMAGE = r"(^|/)ambient-reference/pilot(:[\w.\-]+)?$"
ZTUNNEL_IMAGE = r"(^|/)ambient-reference/ztunnel(:[\w.\-]+)?$"
WAYPOINT_IMAGE = r"(^|/)ambient-reference/waypoint(:[\w.\-]+)?$"


def register(catalog: Any) -> None:
    """Called by the local cluster's image catalog (entry point ``ambient_harness.images``).

    Only plain data crosses: the image pattern, the module to run, the ports it serves
    once started; the catalog builds the program (this distribution never imports the
    harness).
    """
    catalog.register_module(PILOT_IMAGE, "ambient_ref.pilot", listens=(15012,),
                            description="ambient-reference/pilot (the control plane)")
    catalog.register_module(ZTUNNEL_IMAGE, "ambient_ref.ztunnel", listens=(),
                            description="ambient-reference/ztunnel (the node proxy)")
    catalog.register_module(WAYPOINT_IMAGE, "ambient_ref.waypoint", listens=(15021,),
                            description="ambient-reference/waypoint (the L7 proxy)")
