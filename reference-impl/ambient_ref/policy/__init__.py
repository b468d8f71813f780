"""AuthorizationPolicy as ztunnel (L4, re-exported here) and waypoints (L7) enforce it.

* ``model``: the ``Authorization`` resource istiod streams to ztunnels, with its JSON form.
* ``convert``: istiod's conversion of a Kubernetes AuthorizationPolicy, plus the status
  condition it writes back.
* ``evaluate``: ztunnel's per-connection decision.
* ``l7``: the waypoint's side, HTTP requests, laid out the same way (``l7.model``,
  ``l7.convert``, ``l7.evaluate``, plus ``l7.attach``).

``common`` holds what the two readers of the Kubernetes object share.
"""

from .convert import Conversion, convert, convert_for_xds
from .evaluate import Connection, Decision, Peer, PolicyIndex, authorize
from .model import Action, Authorization, Clause, Match, MatchKind, Rule, Scope, StringMatch

__all__ = [
    "Action",
    "Authorization",
    "Clause",
    "Connection",
    "Conversion",
    "Decision",
    "Match",
    "MatchKind",
    "Peer",
    "PolicyIndex",
    "Rule",
    "Scope",
    "StringMatch",
    "authorize",
    "convert",
    "convert_for_xds",
]
