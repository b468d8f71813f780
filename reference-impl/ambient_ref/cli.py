"""``ambient-reference <component> [options]``: the one entrypoint of the one image.

The reference implementation ships as a single container image (``Dockerfile`` in
this folder); the command picks the component, as Istio's own proxy image runs
either a sidecar or a gateway by its arguments.  Each component keeps its own
options (``ambient-reference pilot --help``).
"""

from __future__ import annotations

import importlib
import sys

# The component a command runs, and the module whose ``main(argv)`` it is.
COMPONENTS = {
    "pilot": "ambient_ref.pilot.main",
    "ztunnel": "ambient_ref.ztunnel.main",
    "waypoint": "ambient_ref.waypoint.main",
}
USAGE = (f"usage: ambient-reference {{{','.join(COMPONENTS)}}} [options]\n"
         "  pilot     the control plane: CA, configuration, policy status (istiod's role)\n"
         "  ztunnel   the node proxy: capture, HBONE, L4 policy (one per node)\n"
         "  waypoint  the L7 proxy; with --ingress, the ingress gateway\n"
         "Each takes its own options: ambient-reference <component> --help")


def main(argv: list[str] | None = None) -> int:
    """Run the component named by the first argument with the rest of them."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    component, rest = args[0], args[1:]
    if component not in COMPONENTS:
        print(f"ambient-reference: unknown component {component!r}\n{USAGE}", file=sys.stderr)
        return 2
    return int(importlib.import_module(COMPONENTS[component]).main(rest) or 0)
