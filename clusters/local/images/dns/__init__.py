"""Cluster DNS for the local cluster: ``python -m clusters.local.images.dns``.

``records`` is the table (no I/O, unit-tested with plain dicts); ``server`` runs
it: UDP and TCP on one port, /health and /ready over HTTP, Services and
EndpointSlices from the API.
"""

from .records import Records, handle_packet
from .server import DnsApp, DnsServer, HealthServer, KubeSource, build_app, main, parse_args, run

__all__ = [
    "DnsApp",
    "DnsServer",
    "HealthServer",
    "KubeSource",
    "Records",
    "build_app",
    "handle_packet",
    "main",
    "parse_args",
    "run",
]
