"""The kinds the API serves: built-in ones and those CustomResourceDefinitions add.

One ``ResourceType`` describes one resource (a group and plural) as discovery
shows it.  Custom resources are described by the CRD that defines them, so the
rest of the server handles built-in and custom kinds the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass
class ResourceType:
    group: str
    versions: tuple[str, ...]  # served versions, the preferred one first
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    # Custom resources only: the CRD version entries by name (schema, printer columns).
    crd_versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Kinds without storage (TokenReview): create answers and stores nothing.
    virtual: bool = False
    # A second view of another resource's objects (events.k8s.io Events are core
    # Events): the (group, plural) whose store holds them.
    stored_as: tuple[str, str] | None = None

    @property
    def store_key(self) -> tuple[str, str]:
        """Where this resource's objects live in the store."""
        return self.stored_as or self.key

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def custom(self) -> bool:
        return bool(self.crd_versions)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def crd_schema(self, version: str) -> dict[str, Any] | None:
        entry = self.crd_versions.get(version) or {}
        return (entry.get("schema") or {}).get("openAPIV3Schema")

    def printer_columns(self, version: str) -> list[dict[str, Any]] | None:
        entry = self.crd_versions.get(version)
        if entry is None:
            return None
        return entry.get("additionalPrinterColumns") or []


def _rt(group: str, version: str, kind: str, plural: str, namespaced: bool,
        short: tuple[str, ...] = (), sub: tuple[str, ...] = (),
        verbs: tuple[str, ...] = ALL_VERBS, categories: tuple[str, ...] = (),
        virtual: bool = False) -> ResourceType:
    return ResourceType(group, (version,), kind, plural, kind.lower(), namespaced, short,
                        frozenset(sub), verbs, categories, virtual=virtual)


BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    _rt("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    _rt("", "v1", "Pod", "pods", True, ("po",),
        ("status", "log", "exec", "attach", "portforward", "proxy", "binding", "eviction"),
        categories=("all",)),
    _rt("", "v1", "Service", "services", True, ("svc",), ("status", "proxy"),
        categories=("all",)),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), ("token",)),
    _rt("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    _rt("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    _rt("", "v1", "Secret", "secrets", True),
    _rt("", "v1", "Event", "events", True, ("ev",)),
    _rt("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"),
        categories=("all",)),
    _rt("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"),
        categories=("all",)),
    _rt("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",),
        categories=("all",)),
    _rt("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"),
        categories=("all",)),
    _rt("batch", "v1", "Job", "jobs", True, (), ("status",), categories=("all",)),
    _rt("batch", "v1", "CronJob", "cronjobs", True, ("cj",), ("status",),
        categories=("all",)),
    _rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    ResourceType("events.k8s.io", ("v1",), "Event", "events", "event", True, ("ev",),
                 stored_as=("", "events")),
    _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
        False, ("crd", "crds"), ("status",)),
    _rt("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False,
        verbs=("create",), virtual=True),
    # Reviews answered, never stored (reviews.py): kubectl auth can-i and whoami.
    _rt("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False,
        verbs=("create",), virtual=True),
    _rt("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
        False, verbs=("create",), virtual=True),
    _rt("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
        False, verbs=("create",), virtual=True),
    _rt("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
        verbs=("create",), virtual=True),
    _rt("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
        True, verbs=("create",), virtual=True),
    _rt("coordination.k8s.io", "v1", "Lease", "leases", True),
    # Kinds an install (Istio's ambient profile renders all of these) applies; stored
    # and served, nothing enforced (README: "How the local API differs").
    _rt("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), ("status",)),
    _rt("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",),
        ("status",)),
    _rt("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
        ("hpa",), ("status",), categories=("all",)),
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",)),
    _rt("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
    # Watched by istiod's Ingress controller (istio/istio
    # pilot/pkg/config/kube/ingress/controller.go), which never syncs without them.
    _rt("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), ("status",)),
    _rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations", False, categories=("api-extensions",)),
    _rt("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations", False, categories=("api-extensions",)),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies", False, sub=("status",), categories=("api-extensions",)),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings", False, categories=("api-extensions",)),
    # Stored so install manifests (RBAC of a control plane) apply; not enforced:
    # every authenticated caller may do everything (see README, "Security").
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
)


class Registry:
    """Every served resource, looked up the ways clients address them."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        for rt in BUILTIN:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_key[rt.key] = rt

    def remove(self, group: str, plural: str) -> None:
        self._by_key.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._by_key.get((group, plural))

    def resolve(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self._by_key.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._by_key.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._by_key.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> served versions, preferred first, in a stable order."""
        out: dict[str, list[str]] = {}
        for rt in self._by_key.values():
            versions = out.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in versions:
                    versions.append(v)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._by_key.values() if rt.group == group and version in rt.versions]


def resource_from_crd(crd: dict[str, Any]) -> ResourceType:
    """The resource a (validated) CRD defines."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    # Discovery prefers the storage version, like the real server's priority order.
    versions.sort(key=lambda v: (not v.get("storage", False),))
    subresources = set()
    for v in versions:
        subresources.update((v.get("subresources") or {}).keys())
    return ResourceType(
        group=spec["group"],
        versions=tuple(v["name"] for v in versions),
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        subresources=frozenset(subresources),
        categories=tuple(names.get("categories") or ()),
        crd_versions={v["name"]: v for v in versions},
    )
