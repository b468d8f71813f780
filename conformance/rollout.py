"""Waiting until a namespace's workloads are rolled out and its pods Ready.

The same judgement as ``kubectl rollout status`` for each Deployment and DaemonSet
followed by ``kubectl wait --for=condition=Ready pods --all``, made in one loop over
one list call per kind instead of one kubectl process per workload: on a loaded
2-core machine each kubectl start costs about half a second, and a namespace of
Bookinfo has nine workloads.  The conditions are kubectl's own
(kubernetes/kubectl pkg/polymorphichelpers/rollout_status.go, DeploymentStatusViewer
and DaemonSetStatusViewer):

* Deployment: ``observedGeneration >= generation``, ``updatedReplicas >= replicas``,
  no old replicas left (``status.replicas == updatedReplicas``) and
  ``availableReplicas >= updatedReplicas``;
* DaemonSet: ``observedGeneration >= generation``,
  ``updatedNumberScheduled >= desiredNumberScheduled`` and
  ``numberAvailable >= desiredNumberScheduled``;

and every pod not being deleted has condition ``Ready=True``.  Workloads are
listed at every observation, so one that makes no pods yet is waited on, never
passed vacuously.
"""

from __future__ import annotations

from typing import Any

from clusters.provider import ClusterProvider

from .waiting import eventually

__all__ = ["not_rolled_out", "wait_rolled_out"]


def _deployment_pending(d: dict[str, Any]) -> str | None:
    meta, spec, status = d["metadata"], d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "spec not yet observed"
    updated = status.get("updatedReplicas", 0)
    if updated < want:
        return f"{updated} of {want} replicas updated"
    if status.get("replicas", 0) > updated:
        return f"{status.get('replicas', 0) - updated} old replicas pending termination"
    if status.get("availableReplicas", 0) < updated:
        return f"{status.get('availableReplicas', 0)} of {updated} updated replicas available"
    return None


def _daemonset_pending(d: dict[str, Any]) -> str | None:
    meta, status = d["metadata"], d.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "spec not yet observed"
    want = status.get("desiredNumberScheduled", 0)
    if status.get("updatedNumberScheduled", 0) < want:
        return f"{status.get('updatedNumberScheduled', 0)} of {want} pods updated"
    if status.get("numberAvailable", 0) < want:
        return f"{status.get('numberAvailable', 0)} of {want} pods available"
    return None


def pod_ready(p: dict[str, Any]) -> bool:
    """Condition ``Ready=True``, as ``kubectl wait --for=condition=Ready`` judges a pod."""
    conditions = (p.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def not_rolled_out(cluster: ClusterProvider, namespace: str) -> dict[str, str]:
    """What in ``namespace`` is not yet rolled out or Ready, by object; {} when all is."""
    from kubernetes import client

    pending: dict[str, str] = {}
    with cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)

        def listed(call: Any) -> list[dict[str, Any]]:
            return api.sanitize_for_serialization(call(namespace))["items"]

        for d in listed(apps.list_namespaced_deployment):
            why = _deployment_pending(d)
            if why:
                pending[f"deployment/{d['metadata']['name']}"] = why
        for d in listed(apps.list_namespaced_daemon_set):
            why = _daemonset_pending(d)
            if why:
                pending[f"daemonset/{d['metadata']['name']}"] = why
        for p in listed(core.list_namespaced_pod):
            if not p["metadata"].get("deletionTimestamp") and not pod_ready(p):
                pending[f"pod/{p['metadata']['name']}"] = "not Ready"
    return pending


def wait_rolled_out(cluster: ClusterProvider, namespace: str, timeout: float) -> None:
    """Until every Deployment and DaemonSet in ``namespace`` is rolled out and every
    pod is Ready (kubectl's conditions, above); fails naming what is not."""
    eventually(lambda: not_rolled_out(cluster, namespace), lambda pending: not pending,
               what=f"every workload in {namespace} is rolled out and every pod Ready",
               timeout=timeout)
