"""Rolled out and Ready, judged as kubectl rollout status and kubectl wait judge it."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import rollout


def deployment(generation: int = 1, wanted: int = 1, **status: int) -> dict[str, Any]:
    return {"metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": wanted}, "status": status}


def daemonset(generation: int = 1, **status: int) -> dict[str, Any]:
    return {"metadata": {"name": "z", "generation": generation}, "status": status}


@pytest.mark.parametrize(("d", "pending"), [
    (deployment(), "spec not yet observed"),  # just created: the controller saw nothing
    (deployment(observedGeneration=1), "0 of 1 replicas updated"),
    (deployment(2, observedGeneration=1, updatedReplicas=1, replicas=1,
                availableReplicas=1), "spec not yet observed"),
    (deployment(observedGeneration=1, updatedReplicas=1, replicas=2, availableReplicas=1),
     "1 old replicas pending termination"),
    (deployment(observedGeneration=1, updatedReplicas=1, replicas=1, availableReplicas=0),
     "0 of 1 updated replicas available"),
    (deployment(observedGeneration=1, updatedReplicas=1, replicas=1, availableReplicas=1), None),
    (deployment(wanted=0, observedGeneration=1), None),
])
def test_deployment_as_rollout_status_judges_it(d, pending) -> None:
    assert rollout._deployment_pending(d) == pending


@pytest.mark.parametrize(("d", "pending"), [
    (daemonset(), "spec not yet observed"),
    (daemonset(observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=1),
     "1 of 2 pods updated"),
    (daemonset(observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=2,
               numberAvailable=1), "1 of 2 pods available"),
    (daemonset(observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=2,
               numberAvailable=2), None),
])
def test_daemonset_as_rollout_status_judges_it(d, pending) -> None:
    assert rollout._daemonset_pending(d) == pending


def test_pod_ready_needs_the_ready_condition_true() -> None:
    assert rollout.pod_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not rollout.pod_ready({"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}})
    assert not rollout.pod_ready({"status": {}})
