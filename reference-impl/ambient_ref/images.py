"""This distribution's image for the ambient-harness local cluster's catalog.

On a real cluster the image is built from this folder's ``Dockerfile``: one image,
``ambient-reference/ambient``, whose entrypoint is ``ambient-reference`` and whose
arguments pick the component (``cli.py``).  The local cluster runs the same
entrypoint as a process, with its own interpreter.
"""

from __future__ import annotations

from typing import Any

IMAGE = "ambient-reference/ambient"
IMAGE_PATTERN = r"(^|/)ambient-reference/ambient(:[\w.\-]+)?(@sha256:[0-9a-f]+)?$"
ENTRYPOINT = "ambient-reference"
# The ports each component serves once started (a container counts as running when
# its process is up; the catalog waits for these so a probe never races the start).
LISTENS = {"pilot": (15012,), "ztunnel": (), "waypoint": (15021,)}


def register(catalog: Any) -> None:
    """Called by the local cluster's image catalog (entry point ``ambient_harness.images``).

    Only plain data crosses: the image pattern, the entrypoint and the module that
    runs it, the ports each command serves; the catalog builds the program (this
    distribution never imports the harness).
    """
    catalog.register_entrypoint(
        IMAGE_PATTERN, "ambient_ref", entrypoint=ENTRYPOINT, listens=LISTENS,
        description=f"{IMAGE} (the reference implementation; args pick "
                    f"{'|'.join(LISTENS)})")
