"""What is special about each kind: defaults, checks beyond the schema, side effects.

The real API server keeps these in a "strategy" per kind.  Here they are methods of
one class, dispatched on the kind, so the generic code in ``api.py`` stays generic.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import TYPE_CHECKING, Any

from . import batch, errors, reviews, schema
from .ipam import ClusterIPAllocator, RangeFull
from .meta import dns_label_problem, dns_subdomain_problem, now
from .patchmeta import FreeForm, PatchSchema
from .resources import Registry, ResourceType, resource_from_crd
from .selectors import SelectorError, label_selector_from_spec
from .tokens import API_AUDIENCES, TokenIssuer

if TYPE_CHECKING:
    from .api import Api, WriteOptions

Cause = dict[str, str]

# Names that must be DNS labels (they become DNS names or label values).
_LABEL_NAMED = {("", "namespaces"), ("", "services")}
_CORE_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
# user.extra keys of a service-account token's user (k8s.io/apiserver
# pkg/authentication/serviceaccount/util.go; the credential id: pkg/authentication/user)
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
NODE_UID_EXTRA = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_EXTRA = "authentication.kubernetes.io/credential-id"
# Things deleted longer ago than this no longer vouch for a token (go-jose's
# jwt.DefaultLeeway, as claims.go uses it).
DELETION_LEEWAY_SECONDS = 60


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Cause:
    return {"field": field, "reason": reason, "message": message}


class KindHooks:
    def __init__(self, registry: Registry, service_cidr: str, tokens: TokenIssuer) -> None:
        self.registry = registry
        self.ips = ClusterIPAllocator(service_cidr)
        self.tokens = tokens
        self.api: Api | None = None
        # Bumped whenever the set of served resources changes (a CRD came or went),
        # so cached discovery and OpenAPI documents know to rebuild.
        self.registry_generation = 0

    def bind(self, api: Api) -> None:
        self.api = api

    # -- names ------------------------------------------------------------------

    def name_problem(self, rt: ResourceType, name: str) -> str | None:
        if rt.key == _CORE_CRD_KEY:
            return None  # checked against spec in validate()
        if rt.key in _LABEL_NAMED:
            return dns_label_problem(name)
        if rt.group == "rbac.authorization.k8s.io":
            return None if name and "/" not in name else "may not contain '/'"
        return dns_subdomain_problem(name)

    # -- create -----------------------------------------------------------------

    def keeps_status_on_create(self, rt: ResourceType) -> bool:
        # A kubelet registers its Node with status; a Namespace's status is ours.
        return rt.key == ("", "nodes")

    def prepare_create(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions) -> None:
        handler = getattr(self, f"_create_{rt.kind.lower()}", None)
        if handler is not None and not rt.custom:
            handler(obj)

    def undo_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == ("", "services"):
            self._release_ips(obj)

    def _create_namespace(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}

    def _create_service(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or ():
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] == "ExternalName":
            return
        requested = spec.get("clusterIP") or None
        if requested != "None":
            if requested and not self.ips.contains(requested):
                raise errors.invalid("Service", "", obj["metadata"]["name"], [_cause(
                    "spec.clusterIPs", f'Invalid value: ["{requested}"]: failed to allocate IP '
                    f"{requested}: the provided IP ({requested}) is not in the valid range. "
                    f"The range of valid IPs is {self.ips.network}")])
            try:
                spec["clusterIP"] = self.ips.allocate(requested)
            except ValueError as exc:
                raise errors.invalid("Service", "", obj["metadata"]["name"], [_cause(
                    "spec.clusterIPs", f'Invalid value: ["{requested}"]: failed to allocate IP '
                    f"{requested}: {exc}")]) from None
            except RangeFull as exc:
                raise errors.ApiError(500, "InternalError", str(exc)) from None
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        obj["status"] = {"loadBalancer": {}}

    def _create_pod(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        _default_pod_spec(spec)
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}

    def _create_secret(self, obj: dict[str, Any]) -> None:
        _fold_string_data(obj)
        obj.setdefault("type", "Opaque")

    def _create_deployment(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy["type"] = "RollingUpdate"
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def _create_replicaset(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def _create_daemonset(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"maxUnavailable": 1, "maxSurge": 0})
        _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def _create_statefulset(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"partition": 0})
        spec.setdefault("persistentVolumeClaimRetentionPolicy",
                        {"whenDeleted": "Retain", "whenScaled": "Retain"})
        _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def _create_priorityclass(self, obj: dict[str, Any]) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")

    def _create_job(self, obj: dict[str, Any]) -> None:
        batch.default_job(obj, _default_pod_spec)

    def _create_cronjob(self, obj: dict[str, Any]) -> None:
        batch.default_cronjob(obj, _default_pod_spec)

    def _create_customresourcedefinition(self, obj: dict[str, Any]) -> None:
        spec = obj["spec"]
        spec.setdefault("scope", "Namespaced")
        names = spec["names"]
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
        obj["status"] = {
            "acceptedNames": dict(names),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now()},
            ],
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        }

    # -- update -----------------------------------------------------------------

    def prepare_update(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any],
                       opts: WriteOptions) -> None:
        if rt.custom:
            return
        kind = rt.kind
        if kind == "Service":
            spec = obj.setdefault("spec", {})
            old_spec = old.get("spec", {})
            for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
                      "internalTrafficPolicy", "sessionAffinity", "type"):
                if k in old_spec and not spec.get(k):
                    spec[k] = old_spec[k]
            for port in spec.get("ports") or ():
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif kind == "Secret":
            _fold_string_data(obj)
            obj.setdefault("type", old.get("type", "Opaque"))
        elif kind == "Namespace":
            obj["spec"] = old.get("spec", {})
            if "status" not in obj:
                obj["status"] = old.get("status", {"phase": "Active"})
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
                obj["metadata"]["name"]
        elif kind == "Pod":
            _default_pod_spec(obj.setdefault("spec", {}))
            # The scheduler's binding is not a client's to undo.
            if old.get("spec", {}).get("nodeName") and not obj["spec"].get("nodeName"):
                obj["spec"]["nodeName"] = old["spec"]["nodeName"]
        elif kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "CronJob"):
            defaults = {"Deployment": self._create_deployment,
                        "ReplicaSet": self._create_replicaset,
                        "DaemonSet": self._create_daemonset,
                        "StatefulSet": self._create_statefulset,
                        "CronJob": self._create_cronjob}[kind]
            status = obj.get("status")
            defaults(obj)
            if status is not None:
                obj["status"] = status
        elif kind == "CustomResourceDefinition":
            status = obj.get("status")
            self._create_customresourcedefinition(obj)
            # A condition that did not change keeps the time it last changed, so an
            # unchanged CRD written again (a re-apply) stays the same object.
            before = {(c.get("type"), c.get("status")): c.get("lastTransitionTime")
                      for c in (status or {}).get("conditions") or () if isinstance(c, dict)}
            for cond in obj["status"]["conditions"]:
                since = before.get((cond["type"], cond["status"]))
                if since:
                    cond["lastTransitionTime"] = since
            if status and status.get("storedVersions"):
                stored = list(status["storedVersions"])
                for v in obj["status"]["storedVersions"]:
                    if v not in stored:
                        stored.append(v)
                obj["status"]["storedVersions"] = stored

    def status_write_metadata(self, rt: ResourceType, new: dict[str, Any],
                              old: dict[str, Any]) -> dict[str, Any]:
        """The metadata a write to ``<resource>/status`` stores.

        Kubernetes decides per kind.  A pod's status strategy keeps the caller's
        metadata but for ``ownerReferences`` and ``deletionTimestamp``
        (kubernetes/kubernetes ``pkg/registry/core/pod/strategy.go``
        ``podStatusStrategy.PrepareForUpdate``); istio-cni relies on it, annotating
        pods ``ambient.istio.io/redirection`` with a merge patch of ``pods/<name>/status``
        (istio/istio ``cni/pkg/util/podutil.go``).  A Deployment's keeps all but the
        labels (``pkg/registry/apps/deployment/strategy.go``).  Custom resources and the
        other kinds here keep the stored metadata (``metav1.ResetObjectMetaForStatus``,
        the custom-resource status strategy)."""
        if rt.custom:
            return dict(old)
        keep_old = {("", "pods"): ("ownerReferences", "deletionTimestamp"),
                    ("apps", "deployments"): ("labels",)}.get(rt.key)
        if keep_old is None:
            return dict(old)
        out = dict(new)
        for k in keep_old:
            if k in old:
                out[k] = old[k]
            else:
                out.pop(k, None)
        return out

    # -- checks beyond the schema ---------------------------------------------------

    def validate(self, rt: ResourceType, obj: dict[str, Any],
                 old: dict[str, Any] | None) -> list[Cause]:
        handler = getattr(self, f"_validate_{rt.kind.lower()}", None)
        if handler is None or rt.custom:
            return []
        return handler(obj, old)

    def _validate_pod(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes = _pod_spec_causes(obj.get("spec") or {}, "spec")
        if old is not None:
            changed = _pod_spec_mutable_view(old.get("spec", {})) != \
                _pod_spec_mutable_view(obj.get("spec", {}))
            if changed:
                causes.append(_cause(
                    "spec", "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                    "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                    "existing tolerations) or `spec.terminationGracePeriodSeconds`",
                    "FieldValueForbidden"))
        return causes

    def _validate_workload(self, obj: dict[str, Any], old: dict[str, Any] | None,
                           with_replicas: bool) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        selector = spec.get("selector")
        template = spec.get("template") or {}
        tlabels = (template.get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(_cause("spec.selector", "Required value", "FieldValueRequired"))
        else:
            try:
                sel = label_selector_from_spec(selector)
            except SelectorError as exc:
                causes.append(_cause("spec.selector", f"Invalid value: {exc}"))
            else:
                if sel.empty:
                    causes.append(_cause("spec.selector", "Invalid value: "
                                         "empty selector is invalid for deployment"))
                elif not sel.matches(tlabels):
                    causes.append(_cause(
                        "spec.template.metadata.labels",
                        f"Invalid value: {_render_labels(tlabels)}: "
                        "`selector` does not match template `labels`"))
            if old is not None and old.get("spec", {}).get("selector") != selector:
                causes.append(_cause("spec.selector", f"Invalid value: {_render(selector)}: "
                                     "field is immutable"))
        if with_replicas and isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            causes.append(_cause("spec.replicas", f"Invalid value: {spec['replicas']}: "
                                 "must be greater than or equal to 0"))
        causes.extend(_pod_spec_causes(template.get("spec") or {}, "spec.template.spec"))
        return causes

    def _validate_deployment(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return self._validate_workload(obj, old, True)

    def _validate_replicaset(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return self._validate_workload(obj, old, True)

    def _validate_daemonset(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return self._validate_workload(obj, old, False)

    def _validate_statefulset(self, obj: dict[str, Any], old: dict[str, Any] | None
                              ) -> list[Cause]:
        causes = self._validate_workload(obj, old, True)
        if (obj.get("spec") or {}).get("volumeClaimTemplates"):
            causes.append(_cause(
                "spec.volumeClaimTemplates", "Forbidden: the local cluster serves no "
                "PersistentVolumeClaims; use an emptyDir volume in the pod template",
                "FieldValueForbidden"))
        return causes

    def _validate_job(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return batch.job_causes(obj, old) + _pod_spec_causes(
            ((obj.get("spec") or {}).get("template") or {}).get("spec") or {},
            "spec.template.spec")

    def _validate_cronjob(self, obj: dict[str, Any], old: dict[str, Any] | None
                          ) -> list[Cause]:
        return batch.cronjob_causes(obj, old)

    def _validate_service(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        seen: set[tuple[int, str]] = set()
        for i, port in enumerate(spec.get("ports") or ()):
            p = port.get("port")
            if not isinstance(p, int) or not 1 <= p <= 65535:
                causes.append(_cause(f"spec.ports[{i}].port",
                                     f"Invalid value: {p}: must be between 1 and 65535, inclusive"))
            key = (p, port.get("protocol", "TCP"))
            if key in seen:
                causes.append(_cause(f"spec.ports[{i}]", f"Duplicate value: {_render(port)}",
                                     "FieldValueDuplicate"))
            seen.add(key)
            if len(spec.get("ports") or ()) > 1 and not port.get("name"):
                causes.append(_cause(f"spec.ports[{i}].name", "Required value",
                                     "FieldValueRequired"))
        if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(_cause("spec.type", f'Unsupported value: "{spec.get("type")}": '
                                 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
                                 '"NodePort"', "FieldValueNotSupported"))
        if old is not None:
            was = old.get("spec", {}).get("clusterIP")
            if was and spec.get("clusterIP") != was:
                causes.append(_cause(
                    "spec.clusterIP",
                    f'Invalid value: "{spec.get("clusterIP")}": field is immutable'))
        return causes

    def _validate_secret(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes = []
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError, TypeError):
                causes.append(_cause(f"data[{key}]", "Invalid value: illegal base64 data"))
        return causes

    def _validate_customresourcedefinition(self, obj: dict[str, Any],
                                           old: dict[str, Any] | None) -> list[Cause]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        causes: list[Cause] = []
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not group:
            causes.append(_cause("spec.group", "Required value", "FieldValueRequired"))
        if not plural:
            causes.append(_cause("spec.names.plural", "Required value", "FieldValueRequired"))
        if not kind:
            causes.append(_cause("spec.names.kind", "Required value", "FieldValueRequired"))
        if group and plural and obj["metadata"]["name"] != f"{plural}.{group}":
            causes.append(_cause("metadata.name", f'Invalid value: "{obj["metadata"]["name"]}": '
                                 f"must be spec.names.plural+\".\"+spec.group"))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(_cause("spec.scope", f'Unsupported value: "{spec.get("scope")}": '
                                 'supported values: "Cluster", "Namespaced"',
                                 "FieldValueNotSupported"))
        versions = spec.get("versions") or []
        if not versions or sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(_cause("spec.versions", "Invalid value: must have exactly one version "
                                 "marked as storage version"))
        for i, v in enumerate(versions):
            if not (v.get("schema") or {}).get("openAPIV3Schema"):
                causes.append(_cause(f"spec.versions[{i}].schema.openAPIV3Schema",
                                     "Required value: schemas are required",
                                     "FieldValueRequired"))
        if group and plural:
            taken = self.registry.get(group, plural)
            if taken is not None and not taken.custom:
                causes.append(_cause("spec.names.plural", f'Invalid value: "{plural}": '
                                     "is already served by a built-in resource"))
        return causes

    # -- deletion ---------------------------------------------------------------

    def check_delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if rt.key == ("", "namespaces") and name in ("default", "kube-system", "kube-public"):
            raise errors.forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted')

    def graceful_seconds(self, rt: ResourceType, obj: dict[str, Any],
                         requested: int | None) -> int | None:
        """Seconds a pod gets to stop, when a node agent will confirm its end; None
        when the object can go at once."""
        if rt.key != ("", "pods"):
            return None
        node = obj.get("spec", {}).get("nodeName")
        if not node or not self.node_has_agent(node):
            return None
        if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return None
        if requested is not None:
            return None if requested == 0 else requested
        return int(obj["spec"].get("terminationGracePeriodSeconds", 30)) or None

    def waits_for_node(self, rt: ResourceType, obj: dict[str, Any]) -> bool:
        node = obj.get("spec", {}).get("nodeName")
        return rt.key == ("", "pods") and bool(node) and self.node_has_agent(node)

    def node_has_agent(self, node: str) -> bool:
        """Pods on a node whose agent reports ready are deleted gracefully, the agent
        confirming the end; without an agent nothing would, so they go at once."""
        assert self.api is not None
        obj = self.api.store.get(("", "nodes"), "", node)
        for cond in ((obj or {}).get("status") or {}).get("conditions") or ():
            if cond.get("type") == "Ready":
                return cond.get("status") == "True" and cond.get("reason") == "KubeletReady"
        return False

    def deletes_in_stages(self, rt: ResourceType) -> bool:
        # A namespace empties first (the namespace controller), then goes.
        return rt.key == ("", "namespaces")

    def mark_deleting(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == ("", "namespaces"):
            obj["status"] = {
                "phase": "Terminating",
                "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False",
                                "reason": "ContentDeleted", "lastTransitionTime": now(),
                                "message": "All content successfully deleted, may be waiting "
                                           "on finalization"}],
            }

    # -- side effects ----------------------------------------------------------

    def after_write(self, rt: ResourceType, obj: dict[str, Any],
                    old: dict[str, Any] | None) -> None:
        if rt.key == _CORE_CRD_KEY:
            new_rt = resource_from_crd(obj)
            if old is not None:
                old_rt = resource_from_crd(old)
                if old_rt.key != new_rt.key:
                    self.registry.remove(*old_rt.key)
            self.registry.add(new_rt)
            self.registry_generation += 1

    def after_delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == ("", "services"):
            self._release_ips(obj)
        elif rt.key == _CORE_CRD_KEY:
            gone = resource_from_crd(obj)
            self.registry.remove(*gone.key)
            self.registry_generation += 1
            assert self.api is not None
            for cr in self.api.store.drop_resource(gone.key):
                self.after_delete(gone, cr)

    def _release_ips(self, obj: dict[str, Any]) -> None:
        ip = obj.get("spec", {}).get("clusterIP")
        if ip and ip != "None":
            self.ips.release(ip)

    def bind_pod(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        """pods/binding: the scheduler's decision, the one change of a pod's spec allowed."""
        assert self.api is not None
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now()})
        status["conditions"] = conditions
        self.api.store.put(("", "pods"), new)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # -- kinds without storage -----------------------------------------------------

    def virtual_create(self, rt: ResourceType, obj: dict[str, Any],
                       user: dict[str, Any] | None = None) -> dict[str, Any]:
        """A kind without storage: the answer to the object created (``user``: who
        asked, for the reviews about oneself)."""
        if rt.kind == "TokenReview":
            return self.review_token(obj)
        if rt.kind in reviews.ACCESS_REVIEWS:
            return reviews.access_review(obj)
        if rt.kind == "SelfSubjectRulesReview":
            return reviews.rules_review(obj)
        if rt.kind == "SelfSubjectReview":
            return reviews.self_subject_review(obj, user)
        raise errors.method_not_allowed(f"{rt.plural} cannot be created")

    def review_token(self, review: dict[str, Any]) -> dict[str, Any]:
        """TokenReview, as the real server's registry (``pkg/registry/authentication/
        tokenreview``) answers: ``spec.audiences`` empty means the API server's own;
        ``status.audiences`` is the token's audiences among those asked for; a failure
        is ``authenticated: false`` with the authenticator's reason in ``error``."""
        spec = review.get("spec") or {}
        token = spec.get("token") or ""
        wanted = list(spec.get("audiences") or API_AUDIENCES)
        user, why = self.review_sa_token(token, wanted)
        status: dict[str, Any]
        if user is None:
            status = {"authenticated": False, "user": {},
                      "error": f"[invalid bearer token, {why}]" if why
                      else "invalid bearer token"}
        else:
            status = {
                "authenticated": True,
                "user": {k: user[k] for k in ("username", "uid", "groups", "extra")},
                "audiences": user["audiences"],
            }
        review["status"] = status
        return review

    def authenticate_sa_token(self, token: str) -> dict[str, Any] | None:
        """The user an API request's service-account token stands for: only tokens made
        for the API server's audiences authenticate to it, as on a real server."""
        return self.review_sa_token(token, list(API_AUDIENCES))[0]

    def review_sa_token(self, token: str, audiences: list[str]
                        ) -> tuple[dict[str, Any] | None, str]:
        """(user, "") if the token is ours, unexpired, made for one of ``audiences``, and
        the service account (and the pod it is bound to) still exist with the same uid;
        else (None, the reason the real authenticator gives).  The user is the real
        one's (``k8s.io/apiserver`` ``ServiceAccountInfo.UserInfo``): pod-name/pod-uid,
        node-name/node-uid and credential-id extras."""
        claims, why = self.tokens.verify(token)
        if claims is None:
            return None, why
        aud = claims.get("aud") or []
        token_aud = [aud] if isinstance(aud, str) else list(aud)
        granted = [a for a in token_aud if a in audiences]
        if not granted:
            return None, (f"token audiences {_go_quoted(token_aud)} is invalid for the target "
                          f"audiences {_go_quoted(audiences)}")
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace") or ""
        sa = k8s.get("serviceaccount") or {}
        assert self.api is not None
        store = self.api.store
        sa_obj = store.get(("", "serviceaccounts"), ns, sa.get("name") or "")
        if sa_obj is None:
            return None, f'serviceaccounts "{sa.get("name")}" not found'
        if sa_obj["metadata"]["uid"] != sa.get("uid"):
            return None, (f"service account UID ({sa_obj['metadata']['uid']}) does not match "
                          f"claim ({sa.get('uid')})")
        extra: dict[str, list[str]] = {}
        pod = k8s.get("pod")
        if pod:
            pod_obj = store.get(("", "pods"), ns, pod.get("name") or "")
            if pod_obj is None:
                return None, "service account token has been invalidated"
            if pod_obj["metadata"]["uid"] != pod.get("uid"):
                return None, (f"pod UID ({pod_obj['metadata']['uid']}) does not match service "
                              f"account pod ref claim ({pod.get('uid')})")
            if _deleted_before_leeway(pod_obj):
                return None, "service account token has been invalidated"
            extra[POD_NAME_EXTRA] = [pod["name"]]
            extra[POD_UID_EXTRA] = [pod["uid"]]
            node = k8s.get("node") or {}
            if node.get("name"):
                extra[NODE_NAME_EXTRA] = [node["name"]]
                if node.get("uid"):
                    extra[NODE_UID_EXTRA] = [node["uid"]]
        if claims.get("jti"):
            extra[CREDENTIAL_ID_EXTRA] = [f"JTI={claims['jti']}"]
        return {
            "username": f"system:serviceaccount:{ns}:{sa['name']}",
            "uid": sa["uid"],
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                       "system:authenticated"],
            "extra": extra,
            "audiences": granted,
        }, ""

    def request_token(self, ns: str, sa_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """serviceaccounts/<name>/token: a TokenRequest answered with a signed token, as
        the real ``TokenREST.Create`` (``pkg/registry/core/serviceaccount/storage/
        token.go``) does: a pod-bound token is refused for a pod of another service
        account (400) or a stale uid (409), and carries the pod's node."""
        assert self.api is not None
        store = self.api.store
        sa = store.get(("", "serviceaccounts"), ns, sa_name)
        if sa is None:
            raise errors.not_found("serviceaccounts", "", sa_name)
        spec = (body or {}).get("spec") or {}
        expiration = int(spec.get("expirationSeconds") or 3600)
        if expiration < 600:
            raise errors.invalid("TokenRequest", "authentication.k8s.io", sa_name, [_cause(
                "spec.expirationSeconds", f"Invalid value: {expiration}: may not specify a "
                "duration less than 10 minutes")])
        pod = node = None
        bound = spec.get("boundObjectRef")
        if bound:
            kind, api_version = bound.get("kind"), bound.get("apiVersion") or "v1"
            if kind != "Pod" or api_version != "v1":
                group = api_version.rpartition("/")[0] if "/" in api_version else ""
                raise errors.bad_request(
                    f"cannot bind token to object of type {group}/"
                    f"{api_version.rpartition('/')[2]}, Kind={kind}")
            pod = store.get(("", "pods"), ns, bound.get("name") or "")
            if pod is None:
                raise errors.not_found("pods", "", bound.get("name") or "")
            runs_as = (pod.get("spec") or {}).get("serviceAccountName", "default")
            if runs_as != sa_name:
                raise errors.bad_request(
                    f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                    f'serviceaccount "{runs_as}"')
            if bound.get("uid") and bound["uid"] != pod["metadata"]["uid"]:
                raise errors.conflict(
                    "Pod", "", pod["metadata"]["name"],
                    f"the UID in the bound object reference ({bound['uid']}) does not match "
                    f"the UID in record ({pod['metadata']['uid']}). The object might have "
                    "been deleted and then recreated")
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                node = store.get(("", "nodes"), "", node_name)
        audiences = list(spec.get("audiences") or API_AUDIENCES)
        token, exp = self.tokens.mint(ns, sa_name, sa["metadata"]["uid"], audiences=audiences,
                                      expiration_seconds=expiration, pod=pod, node=node)
        from datetime import UTC, datetime

        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa_name, "namespace": ns,
                         "creationTimestamp": now()},
            "spec": {**spec, "audiences": audiences, "expirationSeconds": expiration},
            "status": {
                "token": token,
                "expirationTimestamp": datetime.fromtimestamp(exp, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    # -- patching ---------------------------------------------------------------

    def patch_schema(self, rt: ResourceType) -> PatchSchema:
        model = schema.kind_schema(rt.group, rt.versions[0], rt.kind)
        return model if model is not None else FreeForm()


# -- pod helpers ---------------------------------------------------------------------


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    if "serviceAccountName" not in spec:
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or ():
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = ":" not in tag or tag.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest and "@" not in tag
                         else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for port in c.get("ports") or ():
                port.setdefault("protocol", "TCP")


def _qos_class(spec: dict[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or ()]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits") and all(r.get("requests", r["limits"]).get(k) == v
                                for k, v in r["limits"].items())
        and {"cpu", "memory"} <= set(r["limits"])
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _pod_spec_causes(spec: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(_cause(f"{path}.containers", "Required value", "FieldValueRequired"))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or ()):
            where = f"{path}.{group}[{i}]"
            name = c.get("name")
            if not name:
                causes.append(_cause(f"{where}.name", "Required value", "FieldValueRequired"))
            else:
                problem = dns_label_problem(name)
                if problem:
                    causes.append(_cause(f"{where}.name", f'Invalid value: "{name}": {problem}'))
                if name in names:
                    causes.append(_cause(f"{where}.name", f'Duplicate value: "{name}"',
                                         "FieldValueDuplicate"))
                names.add(name)
            if not c.get("image"):
                causes.append(_cause(f"{where}.image", "Required value", "FieldValueRequired"))
            for j, port in enumerate(c.get("ports") or ()):
                cp = port.get("containerPort")
                if not isinstance(cp, int) or not 1 <= cp <= 65535:
                    causes.append(_cause(f"{where}.ports[{j}].containerPort",
                                         f"Invalid value: {cp}: must be between 1 and 65535, "
                                         "inclusive"))
    if spec.get("restartPolicy") not in (None, "Always", "OnFailure", "Never"):
        causes.append(_cause(f"{path}.restartPolicy",
                             f'Unsupported value: "{spec.get("restartPolicy")}": supported '
                             'values: "Always", "OnFailure", "Never"', "FieldValueNotSupported"))
    return causes


def _pod_spec_mutable_view(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec with the fields an update may change blanked out."""
    view = {k: v for k, v in spec.items()
            if k not in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")}
    for group in ("initContainers", "containers"):
        if group in view:
            view[group] = [{k: v for k, v in c.items() if k != "image"} for c in view[group]]
    return view


def _fold_string_data(obj: dict[str, Any]) -> None:
    # A Go client's nil []byte arrives as JSON null (istiod's self-signed CA secret has
    # such keys: security/pkg/pki/ca/ca.go); the real server decodes it as empty bytes.
    for key, value in (obj.get("data") or {}).items():
        if value is None:
            obj["data"][key] = ""
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _go_quoted(values: list[str]) -> str:
    """A []string as Go's %q prints it: ["a" "b"]."""
    import json

    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def _deleted_before_leeway(obj: dict[str, Any]) -> bool:
    from datetime import UTC, datetime, timedelta

    stamp = obj["metadata"].get("deletionTimestamp")
    if not stamp:
        return False
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return when < datetime.now(UTC) - timedelta(seconds=DELETION_LEEWAY_SECONDS)


def _render(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def _render_labels(labels: dict[str, str]) -> str:
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(labels.items())) + "]"
