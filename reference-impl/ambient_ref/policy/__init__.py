"""L4 AuthorizationPolicy as ztunnel enforces it.

* ``model``: the ``Authorization`` resource istiod streams to ztunnels, with its JSON form.
* ``convert``: istiod's conversion of a Kubernetes AuthorizationPolicy, plus the status
  condition it writes back.
* ``evaluate``: ztunnel's per-connection decision.
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
