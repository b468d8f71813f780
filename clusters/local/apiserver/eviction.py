"""pods/eviction: a delete that PodDisruptionBudgets may refuse (``kubectl drain``).

The real server (k8s.io/kubernetes ``pkg/registry/core/pod/storage/eviction.go``)
reads each budget's ``status.disruptionsAllowed``, which the disruption controller
keeps.  There is no such controller here, so the same figure is computed when the
eviction is asked for, from the pods the budget selects (``pkg/controller/disruption``
``getExpectedPodCount``/``countHealthyPods``, simplified: the pods selected are the
expected count, not the scale of their controller):

- healthy: Ready and not being deleted;
- desired: ``minAvailable`` (a number, or a percentage of the expected count rounded
  up), or the expected count less ``maxUnavailable`` (a percentage rounded up);
- allowed: healthy less desired.

A pod that is not healthy may always be evicted (``unhealthyPodEvictionPolicy``
``AlwaysAllow``'s rule; the default ``IfHealthyBudget`` also allows it when the budget
is met, which a refusal below already implies it is not).  Refused: 429
TooManyRequests, with the reason and message the real server gives, so ``kubectl
drain`` waits and retries.  Sans-IO: objects in, a verdict out.
"""

from __future__ import annotations

import math
from typing import Any

from . import errors
from .selectors import SelectorError, label_selector_from_spec

DISRUPTION_BUDGET = "DisruptionBudget"


def healthy(pod: dict[str, Any]) -> bool:
    """Ready and not being deleted: what a budget counts, and what may serve."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _scaled(value: Any, total: int) -> int:
    """An IntOrString of a budget: a number, or a percentage of ``total`` rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            return math.ceil(int(value[:-1]) * total / 100)
        except ValueError:
            return total
    return int(value)


def budget_figures(pdb: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(expected, healthy, desired healthy) for ``pdb`` over the pods of its namespace."""
    spec = pdb.get("spec") or {}
    try:
        selector = label_selector_from_spec(spec.get("selector"))
    except SelectorError:
        return 0, 0, 0
    chosen = [p for p in pods if selector.matches(p["metadata"].get("labels"))]
    expected = len(chosen)
    current = sum(1 for p in chosen if healthy(p))
    if spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    else:
        desired = 0
    return expected, current, desired


def check(pod: dict[str, Any], pdbs: list[dict[str, Any]], pods: list[dict[str, Any]]
          ) -> None:
    """Raise the 429 the real server answers when a budget selecting ``pod`` allows no
    disruption; return when the eviction may go ahead."""
    labels = pod["metadata"].get("labels")
    matching = []
    for pdb in pdbs:
        try:
            if label_selector_from_spec((pdb.get("spec") or {}).get("selector")).matches(labels):
                matching.append(pdb)
        except SelectorError:
            continue
    if not matching or not healthy(pod):
        return
    if len(matching) > 1:
        raise errors.ApiError(
            500, "InternalError", "This pod has more than one PodDisruptionBudget, which "
            "the eviction subresource does not support.")
    pdb = matching[0]
    _, current, desired = budget_figures(pdb, pods)
    if current - desired <= 0:
        name = pdb["metadata"]["name"]
        raise errors.ApiError(
            429, "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            causes=[{"reason": DISRUPTION_BUDGET,
                     "message": f"The disruption budget {name} needs {desired} healthy pods "
                                f"and has {current} currently"}],
            retry_after=None)
