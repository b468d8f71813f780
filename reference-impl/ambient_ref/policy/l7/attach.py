"""Which waypoint enforces an L7 AuthorizationPolicy, and for which requests.

L4 has no twin of this module: ztunnel's attachment is a policy's scope, applied in
``policy/evaluate.py`` (``PolicyIndex``).  A waypoint's is more involved, so it has its
own place:

* ``applies_to_waypoint``: whether a policy (the Kubernetes object) is attached to a
  given waypoint.  Today's waypoints only take ``targetRefs`` (Gateway, Service,
  GatewayClass ``istio-waypoint`` in the root namespace) and ignore selector policies;
  the 2022 preview (``gatewayClassName: istio-mesh``) applied the selector and
  namespace policies of the workloads it served.
* ``for_service``: whether an attached, compiled policy covers a request for a given
  service (a Service ref only covers its own service).
* ``read_target_refs``, ``has_target_refs`` and ``read_policy_selector``: the readers of
  the attachment fields of a spec, shared with ``convert``, which records what they find
  in the compiled ``L7Policy``.

Depends on ``model`` (``TargetRef``, ``L7Policy``) and ``policy/common.py`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..common import API_VERSIONS, ROOT_NAMESPACE, read_selector
from ..common import type_name as _type_name
from .model import L7Policy, TargetRef

WAYPOINT_GATEWAY_CLASS = "istio-waypoint"

GATEWAY_GROUP = "gateway.networking.k8s.io"
NETWORKING_GROUP = "networking.istio.io"
CORE_GROUPS = frozenset({"", "core"})

# The kinds a ref may name, each with the API groups it may come from.
_TARGET_KINDS = {
    "Gateway": frozenset({GATEWAY_GROUP}),
    "GatewayClass": frozenset({GATEWAY_GROUP}),
    "Service": CORE_GROUPS,
    "ServiceEntry": frozenset({NETWORKING_GROUP}),
}


def read_policy_selector(selector: Any) -> tuple[dict[str, str] | None, str | None]:
    """``(labels, problem)`` of ``spec.selector``: None without a selector, and ``{}``
    (selects all) for an unreadable one."""
    return read_selector(selector, found="not", falsy_labels_empty=True)


def has_target_refs(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` has any ``targetRefs`` (or ``targetRef``), readable or not: such a
    policy is never a selector policy."""
    return spec.get("targetRefs") not in (None, []) or spec.get("targetRef") is not None


def read_target_refs(
    spec: Mapping[str, Any], namespace: str
) -> tuple[list[TargetRef], list[str]]:
    """The readable ``targetRefs`` (or the older single ``targetRef``), and problems.

    A ref must name a supported kind in its group and may not point into another
    namespace (Istio's validation); anything else is reported and left out, so it
    attaches the policy nowhere.
    """
    refs: list[tuple[str, Any]] = []
    problems: list[str] = []
    many, one = spec.get("targetRefs"), spec.get("targetRef")
    if many is not None:
        if isinstance(many, list):
            refs.extend((f"spec.targetRefs[{i}]", ref) for i, ref in enumerate(many))
        else:
            problems.append(f"spec.targetRefs: expected a list, not {_type_name(many)}")
    if one is not None:
        refs.append(("spec.targetRef", one))
    result = []
    for path, ref in refs:
        if not isinstance(ref, Mapping):
            problems.append(f"{path}: expected an object, not {_type_name(ref)}")
            continue
        kind, name = ref.get("kind"), ref.get("name")
        group = ref.get("group", "")
        group = "" if group in (None, "core") else group
        ref_namespace = ref.get("namespace") or namespace
        if kind not in _TARGET_KINDS or group not in _TARGET_KINDS[kind]:
            problems.append(f"{path}: unsupported target group {group!r} kind {kind!r}")
        elif not isinstance(name, str) or not name:
            problems.append(f"{path}.name: expected a non-empty string")
        elif ref_namespace != namespace:
            problems.append(f"{path}.namespace: cross-namespace references are not allowed")
        else:
            result.append(TargetRef(group, kind, name, namespace))
    return result, problems



def applies_to_waypoint(
    policy: Any,
    *,
    waypoint_name: str,
    waypoint_namespace: str,
    service_keys: Iterable[tuple[str, str]] = (),
    root_namespace: str = ROOT_NAMESPACE,
    flavour: str = "targetRefs",
    served_workload_labels: Sequence[Mapping[str, str]] | None = None,
) -> bool:
    """Whether a waypoint enforces ``policy`` (an AuthorizationPolicy dict).

    ``flavour="targetRefs"`` (today; istio/istio pilot/pkg/model/policyattachment.go):
    only ``targetRefs`` count: the waypoint's own Gateway, a Service (or ServiceEntry)
    in ``service_keys`` (``(namespace, name)`` of the services it serves), or the
    GatewayClass ``istio-waypoint`` from the root namespace.  Selector and
    namespace-wide policies are the destination ztunnel's, never the waypoint's.

    ``flavour="selector"`` (the 2022 preview, ``gatewayClassName: istio-mesh``): the
    waypoint served the workloads of one service account and applied their policies as
    a sidecar would: namespace-wide ones of the waypoint's namespace, mesh-wide ones of
    the root namespace, and selector ones (from either) whose labels match one of
    ``served_workload_labels``.  ``targetRefs`` did not exist yet, so such policies are
    ignored.  An unreadable selector reads as selecting every workload.

    Never raises: unreadable input attaches nowhere.
    """
    if not isinstance(policy, Mapping):
        return False
    if policy.get("kind", "AuthorizationPolicy") != "AuthorizationPolicy" or (
        policy.get("apiVersion") is not None and policy.get("apiVersion") not in API_VERSIONS
    ):
        return False
    meta, spec = policy.get("metadata"), policy.get("spec")
    spec = {} if spec is None else spec
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return False
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        return False
    has_refs = has_target_refs(spec)
    if flavour == "targetRefs":
        if not has_refs:
            return False
        targets, _ = read_target_refs(spec, namespace)
        services = set(service_keys)
        return any(
            _attaches(ref, waypoint_name, waypoint_namespace, services, root_namespace)
            for ref in targets
        )
    if flavour != "selector" or has_refs:
        return False
    if namespace not in (waypoint_namespace, root_namespace):
        return False
    selector, _problem = read_policy_selector(spec.get("selector"))
    if selector is None or not selector:
        return True
    return any(
        all(labels.get(k) == v for k, v in selector.items())
        for labels in served_workload_labels or ()
    )


def _attaches(
    ref: TargetRef,
    waypoint_name: str,
    waypoint_namespace: str,
    services: set[tuple[str, str]],
    root_namespace: str,
) -> bool:
    if ref.kind == "Gateway":
        return (ref.namespace, ref.name) == (waypoint_namespace, waypoint_name)
    if ref.kind == "GatewayClass":
        return ref.name == WAYPOINT_GATEWAY_CLASS and ref.namespace == root_namespace
    return (ref.namespace, ref.name) in services


def for_service(
    policy: L7Policy, service_key: tuple[str, str], waypoint: tuple[str, str] | None = None
) -> bool:
    """Whether an attached ``policy`` governs a request for ``service_key``.

    A policy attached through a Service (or ServiceEntry) ref only covers requests for
    that service; one attached through a Gateway or GatewayClass covers every request
    through the waypoint, as does a 2022 selector policy.  ``waypoint`` is the
    ``(namespace, name)`` of the waypoint, so that a Gateway ref naming another waypoint
    does not widen a Service-targeted policy; None trusts that the caller attached the
    policy with ``applies_to_waypoint`` and counts any Gateway ref.
    """
    if not policy.has_target_refs:
        return True
    for ref in policy.targets:
        if ref.kind in ("Service", "ServiceEntry"):
            covers = (ref.namespace, ref.name) == tuple(service_key)
        elif ref.kind == "Gateway":
            covers = waypoint is None or (ref.namespace, ref.name) == tuple(waypoint)
        else:  # GatewayClass: every waypoint of the class
            covers = True
        if covers:
            return True
    return False
