"""Printers: the columns and cells ``kubectl get`` shows for each kind.

A printer is a kind's column definitions plus a function from one object to its
row of cells.  Built-in kinds follow the real API server's printers
(``pkg/printers/internalversion``: ``1/1``, ``CrashLoopBackOff``, ``9080/TCP``,
cell types included); a few built-in kinds get the default convertor (Name,
Created At); custom resources get the CRD convertor, which evaluates the served
version's ``additionalPrinterColumns`` with ``jsonpath``.  Wrapping rows into a
``Table`` response is ``tables``' job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from .goformat import go_text, human_duration, parse_time, since
from .jsonpath import JSONPathError, Step, evaluate, parse_jsonpath
from .selectors import (
    SelectorError,
    format_label_selector,
    format_labels,
    label_selector_from_spec,
)

__all__ = ["Printer", "pod_conditions", "printer_for"]

# --------------------------------------------------------------------------- columns

Printer = Callable[[Mapping[str, Any], datetime], list[Any]]
"""A kind's cells: one object and the time AGE is measured to, to a row."""

_NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def _col(
    name: str,
    type_: str = "string",
    description: str = "",
    *,
    format_: str = "",
    priority: int = 0,
) -> dict[str, Any]:
    return {
        "name": name,
        "type": type_,
        "format": format_,
        "description": description,
        "priority": priority,
    }


_NAME_COL: Final = _col("Name", "string", _NAME_DESC, format_="name")
_AGE_COL: Final = _col("Age", "string", _AGE_DESC)


# --------------------------------------------------------------------------- helpers


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def _age(obj: Mapping[str, Any], now: datetime) -> str:
    """The AGE cell: time since the object's ``creationTimestamp``."""
    return since(_meta(obj).get("creationTimestamp"), now)


def _dig(obj: Any, *path: str, default: Any = None) -> Any:
    cur = obj
    for part in path:
        if not isinstance(cur, Mapping) or cur.get(part) is None:
            return default
        cur = cur[part]
    return cur


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return default


def _containers_cells(pod_spec: Mapping[str, Any] | None) -> tuple[str, str]:
    """``layoutContainerCells``: container names and images, comma-joined."""
    containers = _dig(pod_spec, "containers", default=[]) if pod_spec else []
    names = ",".join(str(c.get("name", "")) for c in containers)
    images = ",".join(str(c.get("image", "")) for c in containers)
    return names, images


def _join_host_port(host: str, port: Any) -> str:
    """``net.JoinHostPort``: IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _list_with_more(items: list[str], total: int, limit: int = 3) -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or "<unset>"


# --------------------------------------------------------------------------- built-in printers


def _restartable_init(container: Mapping[str, Any] | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _condition_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    """Whether the *first* condition of ``type_`` has status True (Go's loop-and-return)."""
    for cond in conditions:
        if cond.get("type") == type_:
            return cond.get("status") == "True"
    return False


def _any_condition_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    """Whether *some* condition of ``type_`` has status True (Go's loop without a break)."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _terminated_reason(terminated: Mapping[str, Any]) -> str:
    """A terminated container's STATUS: its reason, else ``Signal:N``, else ``ExitCode:N``."""
    if terminated.get("reason"):
        return terminated["reason"]
    if _int(terminated.get("signal")):
        return f"Signal:{_int(terminated.get('signal'))}"
    return f"ExitCode:{_int(terminated.get('exitCode'))}"


def _later(a: datetime | None, b: Any) -> datetime | None:
    t = parse_time(b)
    if t is None:
        return a
    return t if a is None or t > a else a


def _pod_cells(pod: Mapping[str, Any], now: datetime) -> list[Any]:
    """``printPod``: READY, STATUS (the reason a human wants), RESTARTS, AGE, wide columns."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = _meta(pod)
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(
        1 for c in init_specs.values() if _restartable_init(c)
    )
    ready = 0
    restarts = 0
    restartable_restarts = 0
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        finished = _dig(cs, "lastState", "terminated", "finishedAt")
        last_restart = _later(last_restart, finished)
        restartable = _restartable_init(init_specs.get(cs.get("name")))
        if restartable:
            restartable_restarts += _int(cs.get("restartCount"))
            last_restartable_restart = _later(last_restartable_restart, finished)
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = "Init:" + _terminated_reason(terminated)
        elif (
            waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing"
        ):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break

    if not initializing or _any_condition_true(conditions, "Initialized"):
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_restart = _later(last_restart, _dig(cs, "lastState", "terminated", "finishedAt"))
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _any_condition_true(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else None) or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    readiness_gates = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for cond in conditions:
                if cond.get("type") == gate.get("conditionType"):
                    true_count += cond.get("status") == "True"
                    break
        readiness_gates = f"{true_count}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        readiness_gates,
    ]


def pod_conditions(pod: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """Row conditions: finished pods are marked Completed so clients may de-emphasise them."""
    phase = _dig(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return None
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


def _selector_string(spec: Mapping[str, Any] | None) -> str:
    """A Deployment's wide Selector cell: the selector string, possibly empty."""
    try:
        return str(label_selector_from_spec(spec))
    except SelectorError:
        return "<invalid>"


def _deployment_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers_cells(_dig(spec, "template", "spec"))
    return [
        _name(obj),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(obj, now),
        names,
        images,
        _selector_string(spec.get("selector")),
    ]


def _replicaset_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers_cells(_dig(spec, "template", "spec"))
    return [
        _name(obj),
        _int(spec.get("replicas"), 1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _statefulset_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers_cells(_dig(spec, "template", "spec"))
    return [
        _name(obj),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
        _age(obj, now),
        names,
        images,
    ]


def _daemonset_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    pod_spec = _dig(spec, "template", "spec")
    names, images = _containers_cells(pod_spec)
    return [
        _name(obj),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        format_labels(_dig(pod_spec, "nodeSelector")),
        _age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _job_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    job_conditions = status.get("conditions") or []
    if _condition_true(job_conditions, "Complete"):
        state = "Complete"
    elif _condition_true(job_conditions, "Failed"):
        state = "Failed"
    elif _meta(obj).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(job_conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(job_conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers_cells(_dig(spec, "template", "spec"))
    return [
        _name(obj),
        state,
        completions,
        duration,
        _age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _cronjob_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """k8s.io/kubernetes ``printCronJob``."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = status.get("lastScheduleTime")
    job_spec = _dig(spec, "jobTemplate", "spec", default={})
    names, images = _containers_cells(_dig(job_spec, "template", "spec"))
    return [
        _name(obj),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or ()),
        since(last, now) if last else "<none>",
        _age(obj, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]


def _priorityclass_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """k8s.io/kubernetes ``printPriorityClass``."""
    return [_name(obj), _int(obj.get("value")), bool(obj.get("globalDefault")), _age(obj, now),
            obj.get("preemptionPolicy") or "<none>"]


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    svc_type = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        seen = sorted(
            {
                str(ing.get("ip") or ing.get("hostname"))
                for ing in _dig(status, "loadBalancer", "ingress", default=[])
                if ing.get("ip") or ing.get("hostname")
            }
        )
        if external:
            return ",".join(seen + external)
        return ",".join(seen) if seen else "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    pieces = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if _int(port.get("nodePort")) > 0:
            pieces.append(f"{port.get('port')}:{port.get('nodePort')}/{protocol}")
        else:
            pieces.append(f"{port.get('port')}/{protocol}")
    return [
        _name(obj),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(spec, status),
        ",".join(pieces) or "<none>",
        _age(obj, now),
        format_labels(spec.get("selector")),
    ]


# Headless services may have no ports: such a subset lists its addresses once, bare.
_NO_PORTS: Final[Any] = object()


def _endpoints_text(obj: Mapping[str, Any]) -> str:
    """``formatEndpoints``: up to three ``ip:port`` s, then ``+ N more...``."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    more = False
    limit = 3
    for subset in subsets:
        addresses = subset.get("addresses") or []
        for port in subset.get("ports") or [_NO_PORTS]:
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                ip = str(address.get("ip", ""))
                shown.append(ip if port is _NO_PORTS else _join_host_port(ip, port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _endpoints_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _endpoints_text(obj), _age(obj, now)]


def _endpointslice_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    ports = []
    for port in obj.get("ports") or []:
        if port.get("port") is not None:
            ports.append(str(port["port"]))
        elif port.get("name") is not None:
            ports.append(str(port["name"]))
        else:
            ports.append("*")
    addresses = [str(a) for ep in obj.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [
        _name(obj),
        obj.get("addressType") or "",
        _list_with_more(ports, len(ports)),
        _list_with_more(addresses, len(addresses)),
        _age(obj, now),
    ]


def _node_roles(labels: Mapping[str, str]) -> str:
    roles = set()
    for key, value in labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(status: Mapping[str, Any], type_: str) -> str:
    for address in status.get("addresses") or []:
        if address.get("type") == type_:
            return str(address.get("address", ""))
    return "<none>"


def _node_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    states = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}
    return [
        _name(obj),
        ",".join(states),
        _node_roles(_meta(obj).get("labels") or {}),
        _age(obj, now),
        info.get("kubeletVersion") or "",
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _namespace_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        _dig(obj, "status", "phase", default=""),
        _age(obj, now),
    ]


def _event_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """``printEvent``: times fall back from lastTimestamp to firstTimestamp to eventTime."""
    first = obj.get("firstTimestamp")
    first_text = since(first, now) if first else since(obj.get("eventTime"), now)
    last = obj.get("lastTimestamp")
    last_text = since(last, now) if last else first_text
    count = _int(obj.get("count"))
    series = obj.get("series")
    if series is not None:
        last_text = since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events carry no count in the events.k8s.io API
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return [
        last_text,
        obj.get("type") or "",
        obj.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        f"{component}, {instance}" if instance else component,
        str(obj.get("message") or "").strip(),
        first_text,
        count,
        _name(obj),
    ]


def _serviceaccount_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        len(obj.get("secrets") or []),
        _age(obj, now),
    ]


def _configmap_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
        _age(obj, now),
    ]


def _secret_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        obj.get("type") or "Opaque",
        len(obj.get("data") or {}),
        _age(obj, now),
    ]


def _lease_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        _dig(obj, "spec", "holderIdentity", default=""),
        _age(obj, now),
    ]


def _webhook_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(obj),
        len(obj.get("webhooks") or []),
        _age(obj, now),
    ]


def _binding_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    role_ref = obj.get("roleRef") or {}
    users, groups, sas = [], [], []
    for subject in obj.get("subjects") or []:
        kind = subject.get("kind")
        if kind == "User":
            users.append(str(subject.get("name", "")))
        elif kind == "Group":
            groups.append(str(subject.get("name", "")))
        elif kind == "ServiceAccount":
            sas.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
    return [
        _name(obj),
        f"{role_ref.get('kind', '')}/{role_ref.get('name', '')}",
        _age(obj, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(sas),
    ]


def _network_policy_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    # podSelector is a struct, not a pointer: absent means {} (all pods).
    selector = _dig(obj, "spec", "podSelector", default={})
    return [
        _name(obj),
        format_label_selector(selector),
        _age(obj, now),
    ]


def _created_at(obj: Mapping[str, Any]) -> str:
    """The default convertor's ``Created At`` cell: RFC 3339 in UTC, whole seconds."""
    parsed = parse_time(_meta(obj).get("creationTimestamp"))
    if parsed is None:
        return "0001-01-01T00:00:00Z"  # Go's zero time, what a missing timestamp prints as
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _created_at(obj)]


def _name_age_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _age(obj, now)]


_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."
_TEMPLATE_WIDE: Final = [
    _col("Containers", description=_CONTAINERS, priority=1),
    _col("Images", description=_IMAGES, priority=1),
]
_TEMPLATE_SELECTOR_WIDE: Final = [
    *_TEMPLATE_WIDE,
    _col("Selector", description="Label selector for pods.", priority=1),
]
_WEBHOOK_PRINTER: Final[tuple[list[dict[str, Any]], Printer]] = (
    [
        _NAME_COL,
        _col(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration",
        ),
        _AGE_COL,
    ],
    _webhook_cells,
)


def _binding_printer(role: str, binding: str) -> tuple[list[dict[str, Any]], Printer]:
    """RoleBinding and ClusterRoleBinding: the same columns, worded for ``role``/``binding``."""
    return (
        [
            _NAME_COL,
            _col("Role", description=f"The {role} bound."),
            _AGE_COL,
            _col("Users", description=f"Users in the {binding}", priority=1),
            _col("Groups", description=f"Groups in the {binding}", priority=1),
            _col("ServiceAccounts", description=f"ServiceAccounts in the {binding}", priority=1),
        ],
        _binding_cells,
    )


_PRINTERS: Final[dict[str, tuple[list[dict[str, Any]], Printer]]] = {
    "Pod": (
        [
            _NAME_COL,
            _col(
                "Ready",
                description="The aggregate readiness state of this pod for accepting traffic.",
            ),
            _col("Status", description="The aggregate status of the containers in this pod."),
            _col(
                "Restarts",
                description="The number of times the containers in this pod have been restarted "
                "and when the last container in this pod has restarted.",
            ),
            _AGE_COL,
            _col("IP", description="IP address allocated to the pod.", priority=1),
            _col("Node", description="The node the pod is bound to.", priority=1),
            _col(
                "Nominated Node", description="The node the pod may be preempted onto.", priority=1
            ),
            _col("Readiness Gates", description="Pod readiness gates met.", priority=1),
        ],
        _pod_cells,
    ),
    "Deployment": (
        [
            _NAME_COL,
            _col("Ready", description="Number of the pod with ready state"),
            _col("Up-to-date", description="Total number of pods with the desired template."),
            _col("Available", description="Total number of available pods."),
            _AGE_COL,
            *_TEMPLATE_SELECTOR_WIDE,
        ],
        _deployment_cells,
    ),
    "ReplicaSet": (
        [
            _NAME_COL,
            _col("Desired", "integer", "Number of desired pods."),
            _col("Current", "integer", "The most recently observed number of replicas."),
            _col("Ready", "integer", "The number of ready replicas."),
            _AGE_COL,
            *_TEMPLATE_SELECTOR_WIDE,
        ],
        _replicaset_cells,
    ),
    "StatefulSet": (
        [
            _NAME_COL,
            _col("Ready", description="Number of the pod with ready state"),
            _AGE_COL,
            *_TEMPLATE_WIDE,
        ],
        _statefulset_cells,
    ),
    "DaemonSet": (
        [
            _NAME_COL,
            _col("Desired", "integer", "Number of nodes that should be running the daemon pod."),
            _col("Current", "integer", "Number of nodes running at least one daemon pod."),
            _col("Ready", "integer", "Number of nodes with a ready daemon pod."),
            _col("Up-to-date", "integer", "Number of nodes running the updated daemon pod."),
            _col("Available", "integer", "Number of nodes with an available daemon pod."),
            _col("Node Selector", description="Node selector of the pod template."),
            _AGE_COL,
            *_TEMPLATE_SELECTOR_WIDE,
        ],
        _daemonset_cells,
    ),
    "Job": (
        [
            _NAME_COL,
            _col("Status", description="Status of the job."),
            _col("Completions", description="The number of pods which reached phase Succeeded."),
            _col("Duration", description="Time required to complete the job."),
            _AGE_COL,
            *_TEMPLATE_SELECTOR_WIDE,
        ],
        _job_cells,
    ),
    "CronJob": (
        [
            _NAME_COL,
            _col("Schedule", description="The schedule in Cron format."),
            _col("Timezone", description="The time zone the schedule is run in."),
            _col("Suspend", "boolean", "Whether the cron job is suspended."),
            _col("Active", "integer", "The number of running jobs."),
            _col("Last Schedule", description="When the job was last scheduled."),
            _AGE_COL,
            *_TEMPLATE_SELECTOR_WIDE,
        ],
        _cronjob_cells,
    ),
    "PriorityClass": (
        [
            _NAME_COL,
            _col("Value", "integer", "The value of this priority class."),
            _col("Global-Default", "boolean", "Whether this is the default priority."),
            _AGE_COL,
            _col("PreemptionPolicy", description="How lower-priority pods are preempted."),
        ],
        _priorityclass_cells,
    ),
    "Service": (
        [
            _NAME_COL,
            _col("Type", description="How the Service is exposed."),
            _col("Cluster-IP", description="The IP address of the service."),
            _col("External-IP", description="External IP addresses of the service."),
            _col("Port(s)", description="The ports exposed by this service."),
            _AGE_COL,
            _col("Selector", description="Label selector of the pods.", priority=1),
        ],
        _service_cells,
    ),
    "Endpoints": (
        [
            _NAME_COL,
            _col("Endpoints", description="The set of all endpoints."),
            _AGE_COL,
        ],
        _endpoints_cells,
    ),
    "EndpointSlice": (
        [
            _NAME_COL,
            _col("AddressType", description="The type of address carried by this slice."),
            _col("Ports", description="The network ports exposed by each endpoint."),
            _col("Endpoints", description="The addresses of the endpoints."),
            _AGE_COL,
        ],
        _endpointslice_cells,
    ),
    "Node": (
        [
            _NAME_COL,
            _col("Status", description="The status of the node"),
            _col("Roles", description="The roles of the node"),
            _AGE_COL,
            _col("Version", description="Kubelet Version reported by the node."),
            _col("Internal-IP", description="The node's internal address.", priority=1),
            _col("External-IP", description="The node's external address.", priority=1),
            _col("OS-Image", description="OS Image reported by the node.", priority=1),
            _col("Kernel-Version", description="Kernel Version reported by the node.", priority=1),
            _col(
                "Container-Runtime",
                description="ContainerRuntime Version reported by the node.",
                priority=1,
            ),
        ],
        _node_cells,
    ),
    "Namespace": (
        [_NAME_COL, _col("Status", description="The status of the namespace"), _AGE_COL],
        _namespace_cells,
    ),
    "Event": (
        [
            _col(
                "Last Seen",
                description="The time at which the most recent occurrence was recorded.",
            ),
            _col("Type", description="Type of this event (Normal, Warning)."),
            _col("Reason", description="Why the action was taken."),
            _col("Object", description="The object that this event is about."),
            _col("Subobject", description="The field of the object involved.", priority=1),
            _col("Source", description="The component reporting this event.", priority=1),
            _col("Message", description="A description of the status of this operation."),
            _col(
                "First Seen",
                description="The time at which the event was first recorded.",
                priority=1,
            ),
            _col("Count", description="The number of times this event has occurred.", priority=1),
            _col("Name", description=_NAME_DESC, format_="name", priority=1),
        ],
        _event_cells,
    ),
    "ServiceAccount": (
        [_NAME_COL, _col("Secrets", description="Secrets of the service account."), _AGE_COL],
        _serviceaccount_cells,
    ),
    "ConfigMap": (
        [_NAME_COL, _col("Data", description="Number of data entries."), _AGE_COL],
        _configmap_cells,
    ),
    "Secret": (
        [
            _NAME_COL,
            _col("Type", description="Used to facilitate programmatic handling of secret data."),
            _col("Data", description="Number of data entries."),
            _AGE_COL,
        ],
        _secret_cells,
    ),
    "Lease": (
        [_NAME_COL, _col("Holder", description="The holder of the lease."), _AGE_COL],
        _lease_cells,
    ),
    "MutatingWebhookConfiguration": _WEBHOOK_PRINTER,
    "ValidatingWebhookConfiguration": _WEBHOOK_PRINTER,
    "RoleBinding": _binding_printer("role", "roleBinding"),
    "ClusterRoleBinding": _binding_printer("cluster role", "clusterRoleBinding"),
    "NetworkPolicy": (
        [_NAME_COL, _col("Pod-Selector", description="Pods the policy applies to."), _AGE_COL],
        _network_policy_cells,
    ),
}

# Built-in kinds served by the generic default convertor (no printer of their own):
# a name and an absolute "Created At" date, e.g. ``kubectl get crd`` / ``clusterroles``.
_DEFAULT_CONVERTOR: Final[tuple[list[dict[str, Any]], Printer]] = (
    [_NAME_COL, _col("Created At", "date", _AGE_DESC)],
    _default_cells,
)
_DEFAULT_CONVERTOR_KINDS: Final = frozenset(
    {"CustomResourceDefinition", "ClusterRole", "Role", "LimitRange", "PodTemplate"}
)
# Anything else (notably a custom resource whose caller passed no columns) gets the
# CRD convertor's default: Name and Age.
_FALLBACK: Final[tuple[list[dict[str, Any]], Printer]] = ([_NAME_COL, _AGE_COL], _name_age_cells)


# --------------------------------------------------------------------------- CRD columns


def _custom_cell(type_: str, value: Any, now: datetime) -> Any:
    """``cellForJSONValue``: a cell of the column's declared type, or null when it is not."""
    if value is None:
        return None
    if type_ == "string":
        return go_text(value)
    if type_ == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if type_ == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, (int, float)) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        if not isinstance(value, str):
            return None
        parsed = parse_time(value)
        return "<invalid>" if parsed is None else human_duration(now - parsed)
    return None


def _custom_printer(
    printer_columns: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], Printer]:
    """The CRD table convertor for a version's ``additionalPrinterColumns``.

    Name always comes first.  An Age column is added only when the CRD declares
    *no* columns at all (``serveDefaultColumnsIfEmpty``); a CRD that declares
    some columns but no Age gets no Age, exactly as on a real cluster.
    """
    columns = list(printer_columns) or [
        {
            "name": "Age",
            "type": "date",
            "description": _AGE_DESC,
            "jsonPath": ".metadata.creationTimestamp",
        }
    ]
    definitions = [_NAME_COL]
    compiled: list[tuple[str, list[Step] | None]] = []
    for column in columns:
        json_path = str(column.get("jsonPath", ""))
        try:
            steps: list[Step] | None = parse_jsonpath(json_path)
        except JSONPathError:
            steps = None  # an unparseable column prints as null, not as a failed request
        type_ = str(column.get("type", "string"))
        compiled.append((type_, steps))
        definitions.append(
            _col(
                str(column.get("name", "")),
                type_,
                str(column.get("description") or "")
                or f"Custom resource definition column (in JSONPath format): {json_path}",
                format_=str(column.get("format") or ""),
                priority=_int(column.get("priority")),
            )
        )

    def cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
        row: list[Any] = [_name(obj)]
        for type_, steps in compiled:
            found = evaluate(steps, obj) if steps is not None else []
            row.append(_custom_cell(type_, found[0], now) if found else None)
        return row

    return definitions, cells


# --------------------------------------------------------------------------- choosing a printer


def printer_for(
    kind: str, printer_columns: Sequence[Mapping[str, Any]] | None
) -> tuple[list[dict[str, Any]], Printer]:
    """The column definitions and cells of ``kind``: the CRD convertor when the caller
    passes ``printer_columns``, else the kind's built-in printer, else a default."""
    if printer_columns is not None:
        return _custom_printer(printer_columns)
    if kind in _PRINTERS:
        return _PRINTERS[kind]
    if kind in _DEFAULT_CONVERTOR_KINDS:
        return _DEFAULT_CONVERTOR
    return _FALLBACK
