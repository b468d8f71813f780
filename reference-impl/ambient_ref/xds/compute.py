"""From Kubernetes objects to the resources ztunnels receive: pure functions, no I/O.

The control plane keeps informers on namespaces, pods, services and policies and, on any
change, recomputes everything with these functions and hands the result to the
``ResourceStore``, which works out what actually changed.  Recomputing from scratch is the
readable choice: there is no incremental bookkeeping to get wrong, and a cluster this
implementation serves is small enough for it.  Every function is deterministic (output
independent of input order), so an unchanged cluster yields an unchanged configuration and
no push.

Inputs are Kubernetes objects as the API returns them (JSON dicts); any iterable works, e.g.
``informer.items.values()``.

Rules (upstream's, from istiod's ambient index, where not said otherwise):

- **Enrollment.** A pod is in the mesh, and so reached over HBONE, when its namespace has
  ``istio.io/dataplane-mode=ambient`` and the pod does not say ``istio.io/dataplane-mode=none``,
  or when the pod itself says ``ambient``.  Host-network pods never are (their traffic cannot
  be redirected inside a pod network namespace they do not have), nor are pods with an Istio
  sidecar (``sidecar.istio.io/status``).
- **Publication.** Every running pod with an IP is published, enrolled or not: a pod outside
  the mesh is a ``TCP`` workload, so a ztunnel knows to reach it as plain TCP and can still
  balance a Service's traffic onto it.  Host-network pods are published with
  ``network_mode=HOST_NETWORK`` (their IP is the node's, shared, so not a lookup key).
  Terminating pods and finished ones (Succeeded, Failed) are not published.
- **Service ports.** A workload lists, for each Service selecting it, its
  ``{service_port, target_port}`` pairs; a named ``targetPort`` resolves against the pod's
  container ports, and a port the pod does not define is left out, as Kubernetes leaves such
  a pod out of that port's endpoints.  Only TCP ports: ztunnel carries TCP only.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .types import PortMapping, Service, ServicePort, Workload, service_hostname, service_key

log = logging.getLogger(__name__)

DATAPLANE_MODE = "istio.io/dataplane-mode"
AMBIENT = "ambient"
NONE = "none"
SIDECAR_STATUS = "sidecar.istio.io/status"
KUBE_SERVICE_ACCOUNTS = "alpha.istio.io/kubernetes-serviceaccounts"
CANONICAL_SERVICE_ACCOUNTS = "alpha.istio.io/canonical-serviceaccounts"

# A Job a CronJob created is named "<cronjob>-<scheduled time in minutes>".
_CRONJOB_JOB = re.compile(r"(.+)-\d{8,}")

KubeObject = Mapping[str, Any]
#: ``convert(policy) -> (authorization or None, status conditions)``, from the policy module.
Converter = Callable[[KubeObject], tuple[dict[str, Any] | None, list[dict[str, Any]]]]


def compute_workloads(
    namespaces: Iterable[KubeObject],
    pods: Iterable[KubeObject],
    services: Iterable[KubeObject],
    trust_domain: str = "cluster.local",
    domain: str = "cluster.local",
) -> dict[str, Workload]:
    """Every published pod as a ``Workload``, keyed by pod uid, sorted by uid."""
    ns_labels = {_meta(ns).get("name", ""): _labels(ns) for ns in namespaces}
    by_namespace = _services_by_namespace(services)
    result: dict[str, Workload] = {}
    for pod in pods:
        if not is_published(pod):
            continue
        meta = _meta(pod)
        spec = pod.get("spec") or {}
        namespace = meta.get("namespace", "default")
        labels = _labels(pod)
        name = workload_name(pod)
        enrolled = in_mesh(ns_labels.get(namespace, {}), pod)
        uid = meta.get("uid") or f"{namespace}/{meta.get('name', '')}"
        result[uid] = Workload(
            uid=uid,
            name=meta.get("name", ""),
            namespace=namespace,
            addresses=pod_ips(pod),
            node=spec.get("nodeName") or "",
            service_account=spec.get("serviceAccountName") or "default",
            trust_domain=trust_domain,
            protocol="HBONE" if enrolled else "TCP",
            network_mode="HOST_NETWORK" if spec.get("hostNetwork") else "STANDARD",
            healthy=_ready(pod),
            app=labels.get("app") or labels.get("app.kubernetes.io/name") or "",
            version=labels.get("version") or labels.get("app.kubernetes.io/version") or "",
            canonical_name=canonical_name(labels, name),
            canonical_revision=canonical_revision(labels),
            workload_name=name,
            services=_workload_services(pod, by_namespace.get(namespace, []), domain),
            labels=dict(labels),
        )
    return dict(sorted(result.items()))


def compute_services(
    services: Iterable[KubeObject],
    pods: Iterable[KubeObject],
    trust_domain: str = "cluster.local",
    domain: str = "cluster.local",
) -> dict[str, Service]:
    """Every Service (but ExternalName ones) as a ``Service``, keyed ``"ns/hostname"``.

    ``pods`` serve to give a named ``targetPort`` a number when every published pod the
    Service selects agrees on one (otherwise it stays 0, per workload).
    """
    pods_by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
    for pod in pods:
        if is_published(pod):
            pods_by_namespace[_meta(pod).get("namespace", "default")].append(pod)
    result: dict[str, Service] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        meta = _meta(svc)
        name, namespace = meta.get("name", ""), meta.get("namespace", "default")
        selected = [p for p in pods_by_namespace.get(namespace, []) if _selects(svc, p)]
        ports = []
        for port in _tcp_ports(svc):
            target = _target(port)
            if isinstance(target, str):
                found = {container_port(p, target) for p in selected} - {None}
                target = found.pop() if len(found) == 1 else 0
            ports.append(ServicePort(port.get("name") or "", int(port["port"]), int(target)))
        hostname = service_hostname(name, namespace, domain)
        result[service_key(namespace, hostname)] = Service(
            name=name,
            namespace=namespace,
            hostname=hostname,
            vips=service_vips(svc),
            ports=ports,
            subject_alt_names=_subject_alt_names(svc, namespace, trust_domain),
        )
    return dict(sorted(result.items()))


def policy_resources(
    policies: Iterable[KubeObject], convert: Converter
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Authorizations for ztunnels, and the status conditions of each policy.

    Returns ``(authorizations keyed "ns/name", conditions keyed "ns/name" of the policy)``.
    A policy ``convert`` rejects (``None``) is not sent but keeps its conditions, which say
    why.  A converter that raises is a bug elsewhere; it costs that one policy (logged and
    reported in its status), not the whole push.
    """
    authorizations: dict[str, dict[str, Any]] = {}
    statuses: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        meta = _meta(policy)
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        try:
            authorization, conditions = convert(policy)
        except Exception as exc:
            log.exception("converting policy %s failed", key)
            authorization = None
            conditions = [
                {
                    "type": "ZtunnelAccepted",  # the condition type istiod writes
                    "status": "False",
                    "reason": "InvalidValue",
                    "message": f"not converted: {exc!r}",
                }
            ]
        statuses[key] = list(conditions)
        if authorization is not None:
            akey = (
                f"{authorization.get('namespace', meta.get('namespace', ''))}/"
                f"{authorization.get('name', meta.get('name', ''))}"
            )
            authorizations[akey] = authorization
    return dict(sorted(authorizations.items())), dict(sorted(statuses.items()))


# -- rules, exposed for the reader and for tests --------------------------------------------


def in_mesh(namespace_labels: Mapping[str, str], pod: KubeObject) -> bool:
    """Whether a pod is enrolled in the ambient mesh (reached over HBONE)."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        return False
    if SIDECAR_STATUS in (_meta(pod).get("annotations") or {}):
        return False
    mode = _labels(pod).get(DATAPLANE_MODE)
    if mode == NONE:
        return False
    if mode == AMBIENT:
        return True
    return namespace_labels.get(DATAPLANE_MODE) == AMBIENT


def is_published(pod: KubeObject) -> bool:
    """Whether a pod is a workload at all: it has an IP, is not terminating nor finished."""
    if _meta(pod).get("deletionTimestamp"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return bool(pod_ips(pod))


def pod_ips(pod: KubeObject) -> list[str]:
    """The pod's IPs, primary first (``status.podIPs``, or ``status.podIP`` alone)."""
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or () if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return list(dict.fromkeys(ips))


def workload_name(pod: KubeObject) -> str:
    """The name of what runs the pod (its Deployment, StatefulSet, CronJob...), as in metrics.

    A Deployment's pod is owned by ReplicaSet ``<deployment>-<pod-template-hash>`` and named
    ``<replicaset>-<random>``: both suffixes go.  A CronJob's Job is
    ``<cronjob>-<minutes>``.  Other owners give their own name; a bare pod its own.
    """
    meta = _meta(pod)
    labels = _labels(pod)
    template_hash = labels.get("pod-template-hash")
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is not None:
        kind, name = owner.get("kind", ""), owner.get("name", "")
        if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
        if kind == "Job" and (match := _CRONJOB_JOB.fullmatch(name)):
            return match.group(1)
        return name
    # No owner reference (a copied manifest, an older API): go by naming conventions.
    name = meta.get("name", "")
    if template_hash and f"-{template_hash}-" in name:
        return name[: name.rindex(f"-{template_hash}-")]
    return name


def canonical_name(labels: Mapping[str, str], workload: str) -> str:
    """Istio's canonical service name: explicit label, then app name labels, then workload."""
    return (
        labels.get("service.istio.io/canonical-name")
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or workload
    )


def canonical_revision(labels: Mapping[str, str]) -> str:
    """Istio's canonical revision: explicit label, then version labels, then ``latest``."""
    return (
        labels.get("service.istio.io/canonical-revision")
        or labels.get("app.kubernetes.io/version")
        or labels.get("version")
        or "latest"
    )


def container_port(pod: KubeObject, name: str) -> int | None:
    """The number of the container port called ``name`` in the pod, if it defines one."""
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == name and (port.get("protocol") or "TCP") == "TCP":
                return int(port["containerPort"])
    return None


def service_vips(svc: KubeObject) -> list[str]:
    """Addresses clients dial for the Service: cluster IPs, external IPs, load balancer IPs."""
    spec = svc.get("spec") or {}
    ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    ips += spec.get("externalIPs") or []
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips += [entry["ip"] for entry in ingress if entry.get("ip")]
    return [ip for ip in dict.fromkeys(ips) if ip and ip != "None"]


# -- helpers --------------------------------------------------------------------------------


def _meta(obj: KubeObject) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: KubeObject) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _ready(pod: KubeObject) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _services_by_namespace(services: Iterable[KubeObject]) -> dict[str, list[KubeObject]]:
    by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
    for svc in services:
        if (svc.get("spec") or {}).get("type") != "ExternalName":
            by_namespace[_meta(svc).get("namespace", "default")].append(svc)
    return by_namespace


def _selects(svc: KubeObject, pod: KubeObject) -> bool:
    selector = (svc.get("spec") or {}).get("selector") or {}
    labels = _labels(pod)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _tcp_ports(svc: KubeObject) -> list[Mapping[str, Any]]:
    ports = (svc.get("spec") or {}).get("ports") or ()
    return [p for p in ports if (p.get("protocol") or "TCP") == "TCP" and p.get("port")]


def _target(port: Mapping[str, Any]) -> int | str:
    target = port.get("targetPort")
    if target is None or target == 0 or target == "":
        return int(port["port"])
    if isinstance(target, int):
        return target
    return str(target)


def _workload_services(
    pod: KubeObject, services: Iterable[KubeObject], domain: str
) -> dict[str, list[PortMapping]]:
    result: dict[str, list[PortMapping]] = {}
    for svc in services:
        if not _selects(svc, pod):
            continue
        meta = _meta(svc)
        namespace = meta.get("namespace", "default")
        mappings = []
        for port in _tcp_ports(svc):
            target = _target(port)
            if isinstance(target, str):
                resolved = container_port(pod, target)
                if resolved is None:
                    continue  # the pod does not serve this port
                target = resolved
            mappings.append(PortMapping(int(port["port"]), target))
        hostname = service_hostname(meta.get("name", ""), namespace, domain)
        result[service_key(namespace, hostname)] = mappings
    return dict(sorted(result.items()))


def _subject_alt_names(svc: KubeObject, namespace: str, trust_domain: str) -> list[str]:
    annotations = _meta(svc).get("annotations") or {}
    sans = [
        f"spiffe://{trust_domain}/ns/{namespace}/sa/{sa.strip()}"
        for sa in (annotations.get(KUBE_SERVICE_ACCOUNTS) or "").split(",")
        if sa.strip()
    ]
    for identity in (annotations.get(CANONICAL_SERVICE_ACCOUNTS) or "").split(","):
        if identity.strip():
            identity = identity.strip()
            sans.append(identity if identity.startswith("spiffe://") else f"spiffe://{identity}")
    return sorted(set(sans))
