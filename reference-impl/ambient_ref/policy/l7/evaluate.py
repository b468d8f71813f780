"""A waypoint's authorization decision for one HTTP request.

The waypoint twin of ``policy/evaluate.py``, and its order, which both share
(``decide``): a matching DENY denies; with no ALLOW policy the request is allowed; a
matching ALLOW allows; otherwise it is denied, and the client sees ``DENIED_STATUS``
with ``DENIED_BODY``.  AUDIT never changes the outcome; CUSTOM (an external
authorizer) is not supported and not enforced.  Dry-run policies are evaluated and
reported in ``Decision.dry_run`` but never decide.

Depends on ``model`` (the request and the compiled policies, which match themselves),
``attach`` (``for_service``, which narrows the waypoint's policies to the request's
service) and the shared decision order in ``policy/evaluate.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..evaluate import Decision, decide
from .attach import for_service
from .model import L7Action, L7Policy, Request

#: What Envoy's RBAC filter answers a denied request with (envoyproxy/envoy
#: source/extensions/filters/http/rbac/rbac_filter.cc, ``sendLocalReply``).
DENIED_STATUS = 403
DENIED_BODY = b"RBAC: access denied"


def authorize_l7(
    policies: Iterable[L7Policy | None],
    request: Request,
    service_key: tuple[str, str],
    *,
    waypoint: tuple[str, str] | None = None,
) -> Decision:
    """Decide one request for ``service_key`` through a waypoint.

    ``policies`` are those attached to the waypoint (``applies_to_waypoint``), compiled;
    ``None`` entries (policies that compile to nothing) are skipped.  Each one is then
    narrowed to the request's service (``for_service``).  Order: a matching DENY denies;
    with no ALLOW policy the request is allowed; a matching ALLOW allows; otherwise it is
    denied.  AUDIT policies are ignored; dry-run policies are evaluated and listed in
    ``Decision.dry_run`` as ``"<ACTION> <namespace/name>"`` but never decide.
    """
    applicable = (
        policy
        for policy in policies
        if policy is not None
        and for_service(policy, service_key, waypoint)
        and policy.action in (L7Action.ALLOW, L7Action.DENY)
    )
    return decide(
        ((p, p.action, p.dry_run) for p in applicable),
        lambda p: p.matches(request),
    )
