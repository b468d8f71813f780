"""L7 AuthorizationPolicy as a waypoint enforces it.

A waypoint is an Envoy: istiod turns the AuthorizationPolicies attached to it into RBAC
filters, and Envoy checks every HTTP request against them.  This package is that check,
written to be read (istio/api security/v1beta1/authorization_policy.proto; istio/istio
pilot/pkg/model/policyattachment.go), laid out like the L4 side one level up
(``policy/model.py``, ``convert.py``, ``evaluate.py``), with attachment, which L4 does
not need on its own, in between:

* ``model``: the request and the compiled ``L7Policy``, which matches itself against it
  (twin of ``policy/model.py``).
* ``convert``: ``compile_l7``, a Kubernetes AuthorizationPolicy (a dict) to an
  ``L7Policy``, plus one status condition of type ``WaypointAccepted``; bad input fails
  closed (twin of ``policy/convert.py``).
* ``attach``: ``applies_to_waypoint``, whether a policy is attached to a given waypoint
  (``targetRefs`` today, selectors in the 2022 preview), and ``for_service``, whether it
  covers a request's service.
* ``evaluate``: ``authorize_l7``, the decision for one request, in the order ztunnel
  uses too (twin of ``policy/evaluate.py``).

Imports point one way: ``model`` <- ``attach`` <- ``convert``, and ``model``, ``attach``
<- ``evaluate``.  The names below are the package's API, re-exported from those modules.
"""

from ..common import DRY_RUN_ANNOTATION, REASON_ACCEPTED, REASON_INVALID, REASON_UNSUPPORTED
from .attach import WAYPOINT_GATEWAY_CLASS, applies_to_waypoint, for_service
from .convert import CONDITION_TYPE, compile_l7
from .evaluate import DENIED_BODY, DENIED_STATUS, Decision, authorize_l7
from .model import Condition, L7Action, L7Policy, L7Rule, PathTemplate, Request, TargetRef

__all__ = [
    "CONDITION_TYPE",
    "DENIED_BODY",
    "DENIED_STATUS",
    "DRY_RUN_ANNOTATION",
    "REASON_ACCEPTED",
    "REASON_INVALID",
    "REASON_UNSUPPORTED",
    "WAYPOINT_GATEWAY_CLASS",
    "Condition",
    "Decision",
    "L7Action",
    "L7Policy",
    "L7Rule",
    "PathTemplate",
    "Request",
    "TargetRef",
    "applies_to_waypoint",
    "authorize_l7",
    "compile_l7",
    "for_service",
]
