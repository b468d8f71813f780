"""Types of API objects: built-in kinds from the client's models, custom kinds from CRDs.

The local apiserver must treat a manifest the way a real one does: reject values of
the wrong type, refuse or drop fields the type does not have, and merge lists by
key in strategic merge patches.  All of that needs the type of every field.

Built-in kinds get theirs from the official ``kubernetes`` client, which is
generated from the same OpenAPI document as the real apiserver's: every model class
(``V1Deployment``) carries ``openapi_types`` (attribute -> type string such as
``'List[V1Container]'``) and ``attribute_map`` (attribute -> JSON field), and its
pydantic fields carry the description and whether the field is required.  Reading
those, lazily and once per model, keeps this module from hand-copying hundreds of
types and keeps it in step with the pinned client.

What the models lack is patch metadata (``patchStrategy``/``patchMergeKey`` struct
tags), so those come from the release's OpenAPI definitions (``patch_tags_table``),
and a few value shapes the generator flattens to ``str``/``object`` (quantities,
int-or-string) are recovered by name.

Custom kinds are checked against their CRD's structural ``openAPIV3Schema``
(``validate_crd_schema``/``prune_crd``).

Issues are reported as ``FieldIssue``: ``field`` is the path as Kubernetes prints it
(``spec.template.spec.containers[0].ports[0].containerPort``), ``reason`` a
Kubernetes ``CauseType`` string, ``message`` the error body *without* the path (as in
a ``StatusCause``); the server prints ``f"{field}: {message}"`` in the Status
message, as the real apiserver does.  A value of the wrong type is
``FieldValueTypeInvalid`` with kube-openapi's wording (what a real apiserver says
for custom resources; for built-ins it fails decoding with a 400 instead):
``Invalid value: "string": spec.replicas in body must be of type integer:
"string"``.  Map values of built-in types are addressed Go-style
(``metadata.labels[app]``), of CRD ``additionalProperties`` kube-openapi-style
(``spec.selector.app``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import functools
import inspect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client.models as _models

from clusters.local.apiserver.patchmeta import PatchMeta

# --- Kubernetes CauseType strings (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
FIELD_VALUE_INVALID = "FieldValueInvalid"
FIELD_VALUE_TYPE_INVALID = "FieldValueTypeInvalid"
FIELD_VALUE_REQUIRED = "FieldValueRequired"
FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
FIELD_VALUE_TOO_MANY = "FieldValueTooMany"

_UNKNOWN_PREFIX = 'unknown field "'


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field, shaped like a Kubernetes ``StatusCause``."""

    field: str
    reason: str
    message: str


def is_unknown_field(issue: FieldIssue) -> bool:
    """Whether ``issue`` reports a field the type does not have.

    The real apiserver answers those (under ``fieldValidation=Strict``) with a 400
    ``strict decoding error: unknown field "spec.foo"``, not with the 422 Invalid
    that other issues produce, so the server needs to tell them apart.
    """
    return issue.reason == FIELD_VALUE_INVALID and issue.message.startswith(_UNKNOWN_PREFIX)


# ---------------------------------------------------------------------------
# Field types


@dataclass(frozen=True)
class FieldType:
    """The type of one field.

    ``kind`` is one of: ``string``, ``integer``, ``number``, ``boolean``,
    ``datetime`` (RFC 3339 string), ``bytes`` (base64 string), ``quantity``
    (resource quantity: string or number), ``int-or-string``, ``any`` (free-form:
    RawExtension, JSON), ``model`` (``model`` names the client model), ``list`` and
    ``map`` (string keys; ``item`` is the element type).
    """

    kind: str
    model: str | None = None
    item: FieldType | None = None


@dataclass(frozen=True)
class FieldInfo:
    """One field of a model: JSON name, type, description, required-ness in OpenAPI."""

    name: str
    type: FieldType
    description: str = ""
    required: bool = False


_PRIMITIVES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "datetime": "datetime",
    "date": "datetime",
    "bytes": "bytes",
    "object": "any",
}

# ``resource.Quantity`` is ``str`` in the client, but JSON numbers are valid
# quantities (``cpu: 1``).  Maps of quantities, by JSON field name; every
# ``Dict[str, str]`` field of these names in the client models is one.
QUANTITY_MAP_FIELDS = frozenset(
    {
        "allocatable",
        "allocatedResources",
        "capacity",
        "consumedCapacity",
        "default",
        "defaultRequest",
        "hard",
        "limits",
        "max",
        "maxLimitRequestRatio",
        "min",
        "overhead",
        "podFixed",
        "requests",
        "used",
    }
)
# Scalar quantities, by (model, JSON field).
QUANTITY_FIELDS = frozenset(
    {
        ("V1EmptyDirVolumeSource", "sizeLimit"),
        ("V1ResourceFieldSelector", "divisor"),
        ("V1CSIStorageCapacity", "capacity"),
        ("V1CSIStorageCapacity", "maximumVolumeSize"),
        ("V2MetricTarget", "value"),
        ("V2MetricTarget", "averageValue"),
        ("V2MetricValueStatus", "value"),
        ("V2MetricValueStatus", "averageValue"),
    }
)
# ``intstr.IntOrString`` is ``object`` in the client; these are all the ``object``
# fields that are IntOrString (targetPort, probe ports, maxSurge, ...).  Other
# ``object`` fields are truly free-form (RawExtension, apiextensions JSON).
INT_OR_STRING_FIELDS = frozenset(
    {"port", "targetPort", "maxSurge", "maxUnavailable", "minAvailable"}
)

# Patch metadata: the ``x-kubernetes-patch-strategy``/``-patch-merge-key`` extensions
# of the Kubernetes OpenAPI definitions (from k8s.io/api's ``patchStrategy`` struct
# tags), for the Kubernetes release of the pinned client models.  The official client
# package ships neither the OpenAPI document nor this metadata on its models, so the
# definitions come from kubernetes-validate, which packages the upstream OpenAPI
# definitions of each release; nothing is copied by hand.
OPENAPI_DEFINITIONS_PACKAGE = "kubernetes_validate"


def _client_release() -> str:
    """``v1.37.0`` for client 37.x: the client's major version is Kubernetes' minor."""
    import kubernetes

    return f"v1.{kubernetes.__version__.split('.')[0]}.0"


def _model_name(definition: str) -> str:
    """The client model of an OpenAPI definition: ``io.k8s.api.core.v1.PodSpec`` is
    ``V1PodSpec`` (the generator drops the group and capitalises the version)."""
    *_, version, kind = definition.split(".")
    return version[:1].upper() + version[1:] + kind


@functools.cache
def patch_tags_table() -> dict[tuple[str, str], tuple[frozenset[str], str | None]]:
    """(client model, JSON field) -> (patch strategies, merge key), every tagged field."""
    from importlib import resources

    release = _client_release()
    path = (resources.files(OPENAPI_DEFINITIONS_PACKAGE) / "kubernetes-json-schema"
            / f"{release}-local" / "_definitions.json")
    try:
        definitions = json.loads(path.read_text())["$defs"]
    except (OSError, KeyError, ValueError) as exc:
        raise RuntimeError(f"the Kubernetes {release} OpenAPI definitions are not in "
                           f"{OPENAPI_DEFINITIONS_PACKAGE} ({exc}): install the version of "
                           "kubernetes-validate that pyproject.toml pins") from exc
    table: dict[tuple[str, str], tuple[frozenset[str], str | None]] = {}
    for name, definition in definitions.items():
        for field, prop in (definition.get("properties") or {}).items():
            strategy = prop.get("x-kubernetes-patch-strategy")
            if strategy:
                table[_model_name(name), field] = (frozenset(strategy.split(",")),
                                                   prop.get("x-kubernetes-patch-merge-key"))
    return table


# Required fields this server enforces on built-in kinds.  Kept deliberately small:
# the real apiserver enforces required-ness in hand-written validation (not from
# OpenAPI ``required``), and a false rejection breaks a conformance run far worse
# than a missed one.  These are the ones real validation reports as
# ``Required value`` for any object; metadata.name is checked by the server.
ENFORCED_REQUIRED: dict[str, tuple[str, ...]] = {
    "V1PodSpec": ("containers",),
    "V1Container": ("name",),
    "V1EphemeralContainer": ("name",),
    "V1ContainerPort": ("containerPort",),
    "V1EnvVar": ("name",),
    "V1Volume": ("name",),
    "V1VolumeMount": ("name", "mountPath"),
    "V1ServicePort": ("port",),
    "V1DeploymentSpec": ("selector",),
    "V1ReplicaSetSpec": ("selector",),
    "V1StatefulSetSpec": ("selector",),
    "V1DaemonSetSpec": ("selector",),
    "V1EndpointSlice": ("addressType",),
    "V1CustomResourceDefinitionSpec": ("group", "names", "scope", "versions"),
    "V1CustomResourceDefinitionNames": ("plural", "kind"),
}


# ---------------------------------------------------------------------------
# Model schemas


_MODEL_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")


def model_parts(model_name: str) -> tuple[str, str, str]:
    """Split a client model name into (disambiguating prefix, version, type name).

    ``V1Deployment`` -> ("", "v1", "Deployment"); ``CoreV1Event`` -> ("Core", "v1",
    "Event"): the generator prefixes a type with its API package when two packages
    define the same name.  A name not of that shape gives ("", "", name).
    """
    m = _MODEL_NAME.match(model_name)
    if m is None:
        return "", "", model_name
    return m.group(1) or "", m.group(2).lower(), m.group(3)


class _MapSchema:
    """Patch facts of a ``map[string]Model``: every key's value is the model."""

    def __init__(self, value: ModelSchema) -> None:
        self.value = value

    def meta(self, field: str) -> PatchMeta:
        return PatchMeta(child=self.value)


class ModelSchema:
    """The schema of one client model (a Kubernetes struct type).

    Immutable once built; one instance per model (``model_schema`` caches them),
    so identity comparison and hashing by identity are safe.  Implements the
    ``PatchSchema`` protocol of ``patchmeta.py``.
    """

    __slots__ = ("description", "fields", "name", "required")

    def __init__(
        self,
        name: str,
        description: str,
        fields: Mapping[str, FieldInfo],
        required: tuple[str, ...],
    ) -> None:
        self.name = name
        self.description = description
        self.fields = fields
        self.required = required

    def __repr__(self) -> str:
        return f"ModelSchema({self.name})"

    @property
    def version(self) -> str:
        """API version of the model's package (``v1``, ``v2``, ``v1beta1``)."""
        return model_parts(self.name)[1]

    @property
    def type_name(self) -> str:
        """The Go type name (``Deployment`` for ``V1Deployment``)."""
        return model_parts(self.name)[2]

    @property
    def is_kind(self) -> bool:
        """Whether this is a top-level object (has apiVersion, kind and metadata)."""
        return {"apiVersion", "kind", "metadata"} <= self.fields.keys()

    def field(self, name: str) -> FieldInfo | None:
        """The field with JSON name ``name``, if the type has it."""
        return self.fields.get(name)

    def patch_tags(self, field: str) -> tuple[frozenset[str], str | None]:
        """(patch strategies, merge key) of ``field``; empty when untagged."""
        return patch_tags_table().get((self.name, field), (frozenset(), None))

    def meta(self, field: str) -> PatchMeta:
        """Strategic-merge-patch facts of ``field`` (``PatchSchema`` protocol)."""
        info = self.fields.get(field)
        if info is None:
            return PatchMeta()
        strategies, key = self.patch_tags(field)
        return PatchMeta(strategies=strategies, merge_key=key, child=_child_schema(info.type))


def _child_schema(ftype: FieldType) -> ModelSchema | _MapSchema | None:
    if ftype.kind == "model":
        assert ftype.model is not None
        return model_schema(ftype.model)
    if ftype.kind == "list":
        assert ftype.item is not None
        return _child_schema(ftype.item)
    if ftype.kind == "map":
        assert ftype.item is not None
        inner = _child_schema(ftype.item)
        if isinstance(inner, ModelSchema):
            return _MapSchema(inner)
    return None


def _parse_type(type_string: str, model: str, field: str) -> FieldType:
    t = type_string.strip()
    if t.startswith("List[") and t.endswith("]"):
        return FieldType("list", item=_parse_type(t[5:-1], model, field))
    if t.startswith("Dict[") and t.endswith("]"):
        value = t[5:-1].split(",", 1)[1]
        item = _parse_type(value, model, field)
        if item.kind == "string" and field in QUANTITY_MAP_FIELDS:
            item = FieldType("quantity")
        return FieldType("map", item=item)
    if t in _PRIMITIVES:
        kind = _PRIMITIVES[t]
        if kind == "string" and (model, field) in QUANTITY_FIELDS:
            kind = "quantity"
        elif kind == "any" and field in INT_OR_STRING_FIELDS:
            kind = "int-or-string"
        return FieldType(kind)
    if hasattr(_models, t):
        return FieldType("model", model=t)
    return FieldType("any")


def _class_description(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("Attributes:", 1)[0].strip()


@functools.cache
def model_schema(model_name: str) -> ModelSchema:
    """The schema of client model ``model_name`` (``"V1Deployment"``).

    Built on first use and cached: there are ~850 models and a run touches a few
    dozen.  Referenced models are resolved lazily too (``FieldType.model``).
    Raises ``KeyError`` for a name the client does not have.
    """
    cls = getattr(_models, model_name, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        raise KeyError(model_name)
    pyd_fields = getattr(cls, "model_fields", {})
    fields: dict[str, FieldInfo] = {}
    required: list[str] = []
    for attr, type_string in cls.openapi_types.items():
        name = cls.attribute_map[attr]
        pyd = pyd_fields.get(attr)
        is_required = bool(pyd is not None and pyd.is_required())
        fields[name] = FieldInfo(
            name=name,
            type=_parse_type(type_string, model_name, name),
            description=(pyd.description or "") if pyd is not None else "",
            required=is_required,
        )
        if is_required:
            required.append(name)
    return ModelSchema(model_name, _class_description(cls), fields, tuple(required))


# ---------------------------------------------------------------------------
# Kinds

# GA kinds of the built-in API groups, by group.  Used to refuse a model name that
# exists but belongs to another group (("apps", "v1", "Pod") is not V1Pod) and, by
# openapi.py, to name sub-types after the package that owns them.
BUILTIN_KINDS: dict[str, tuple[str, ...]] = {
    "": (
        "Binding",
        "ComponentStatus",
        "ConfigMap",
        "Endpoints",
        "Event",
        "LimitRange",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "ResourceQuota",
        "Secret",
        "Service",
        "ServiceAccount",
    ),
    "admissionregistration.k8s.io": (
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
    ),
    "apiextensions.k8s.io": ("CustomResourceDefinition",),
    "apiregistration.k8s.io": ("APIService",),
    "apps": ("ControllerRevision", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"),
    "authentication.k8s.io": ("SelfSubjectReview", "TokenRequest", "TokenReview"),
    "authorization.k8s.io": (
        "LocalSubjectAccessReview",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
        "SubjectAccessReview",
    ),
    "autoscaling": ("HorizontalPodAutoscaler", "Scale"),
    "batch": ("CronJob", "Job"),
    "certificates.k8s.io": ("CertificateSigningRequest", "PodCertificateRequest"),
    "coordination.k8s.io": ("Lease",),
    "discovery.k8s.io": ("EndpointSlice",),
    "events.k8s.io": ("Event",),
    "flowcontrol.apiserver.k8s.io": ("FlowSchema", "PriorityLevelConfiguration"),
    "networking.k8s.io": ("IPAddress", "Ingress", "IngressClass", "NetworkPolicy", "ServiceCIDR"),
    "node.k8s.io": ("RuntimeClass",),
    "policy": ("Eviction", "PodDisruptionBudget"),
    "rbac.authorization.k8s.io": ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"),
    "resource.k8s.io": (
        "DeviceClass",
        "DeviceTaintRule",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "ResourceSlice",
    ),
    "scheduling.k8s.io": ("PriorityClass",),
    "storage.k8s.io": (
        "CSIDriver",
        "CSINode",
        "CSIStorageCapacity",
        "StorageClass",
        "VolumeAttachment",
        "VolumeAttributesClass",
    ),
    "storagemigration.k8s.io": ("StorageVersionMigration",),
}


def group_model_prefix(group: str) -> str:
    """The generator's disambiguating prefix for a group: "" -> Core, events.k8s.io -> Events."""
    return "Core" if not group else group.split(".", 1)[0].capitalize()


def _known_groups_of(kind: str) -> list[str]:
    kind = kind.removesuffix("List")
    return [g for g, kinds in BUILTIN_KINDS.items() if kind in kinds]


def kind_model_name(group: str, version: str, kind: str) -> str | None:
    """The client model of a built-in kind, or ``None``.

    The model is ``<Version><Kind>`` (``V1Deployment``, ``V1beta1DeviceClass``), or
    ``<Group><Version><Kind>`` where the generator had to disambiguate
    (``CoreV1Event`` vs ``EventsV1Event``, ``AuthenticationV1TokenRequest``).  A name
    that exists but belongs to another group per ``BUILTIN_KINDS`` is refused.
    ``XxxList`` kinds resolve to their list models.
    """
    ver = version[:1].upper() + version[1:]
    for candidate in (f"{group_model_prefix(group)}{ver}{kind}", f"{ver}{kind}"):
        cls = getattr(_models, candidate, None)
        if cls is None or not hasattr(cls, "attribute_map"):
            continue
        fields = set(cls.attribute_map.values())
        if not {"apiVersion", "kind"} <= fields:
            continue
        known = _known_groups_of(kind)
        if known and group not in known:
            continue
        return candidate
    return None


def kind_schema(group: str, version: str, kind: str) -> ModelSchema | None:
    """The schema of built-in kind group/version/kind, ``None`` if the client has none.

    e.g. ("", "v1", "Pod") -> V1Pod, ("apps", "v1", "Deployment") -> V1Deployment,
    ("events.k8s.io", "v1", "Event") -> EventsV1Event.
    """
    name = kind_model_name(group, version, kind)
    return model_schema(name) if name else None


# ---------------------------------------------------------------------------
# Rendering values the way Go's field.Error does


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def render_value(value: Any) -> str:
    """A value as ``field.Error`` prints it: strings quoted, null as ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _type_issue(path: str, value: Any, want: str) -> FieldIssue:
    # The CRD (kube-openapi) wording, the one users see from real apiservers:
    # `Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
    got = _json_type(value)
    return FieldIssue(
        path,
        FIELD_VALUE_TYPE_INVALID,
        f'Invalid value: "{got}": {path or "body"} in body must be of type {want}: "{got}"',
    )


def _invalid(path: str, value: Any, detail: str) -> FieldIssue:
    return FieldIssue(path, FIELD_VALUE_INVALID, f"Invalid value: {render_value(value)}: {detail}")


def _required(path: str) -> FieldIssue:
    return FieldIssue(path, FIELD_VALUE_REQUIRED, "Required value")


def _unknown(path: str) -> FieldIssue:
    return FieldIssue(path, FIELD_VALUE_INVALID, f'{_UNKNOWN_PREFIX}{path}"')


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------
# Built-in validation and pruning

_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scalar(value: Any, kind: str, path: str) -> FieldIssue | None:
    if kind == "string":
        return None if isinstance(value, str) else _type_issue(path, value, "string")
    if kind == "integer":
        return None if _is_int(value) else _type_issue(path, value, "integer")
    if kind == "number":
        return None if _is_number(value) else _type_issue(path, value, "number")
    if kind == "boolean":
        return None if isinstance(value, bool) else _type_issue(path, value, "boolean")
    if kind == "int-or-string":
        ok = _is_int(value) or isinstance(value, str)
        return None if ok else _type_issue(path, value, "integer,string")
    if kind == "quantity":
        if _is_number(value):
            return None
        if not isinstance(value, str):
            return _type_issue(path, value, "string")
        if _QUANTITY.match(value):
            return None
        return _invalid(
            path,
            value,
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )
    if kind == "datetime":
        if not isinstance(value, str):
            return _type_issue(path, value, "string")
        try:
            datetime.datetime.fromisoformat(value)
        except ValueError:
            return _invalid(path, value, "must be an RFC 3339 date-time")
        return None
    if kind == "bytes":
        if not isinstance(value, str):
            return _type_issue(path, value, "string")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return _invalid(path, value, "illegal base64 data")
        return None
    return None  # "any"


def _is_empty(value: Any) -> bool:
    # Hand-written validation tests Go zero values: "" and an empty list are missing.
    return value is None or (isinstance(value, (str, list)) and not value)


def _validate_type(
    value: Any, ftype: FieldType, path: str, strict: bool, issues: list[FieldIssue]
) -> None:
    if value is None:
        return  # null means "unset" for every field of a built-in type
    kind = ftype.kind
    if kind == "model":
        assert ftype.model is not None
        _validate_model(value, model_schema(ftype.model), path, strict, issues)
    elif kind == "list":
        if not isinstance(value, list):
            issues.append(_type_issue(path, value, "array"))
            return
        assert ftype.item is not None
        for i, item in enumerate(value):
            _validate_type(item, ftype.item, f"{path}[{i}]", strict, issues)
    elif kind == "map":
        if not isinstance(value, dict):
            issues.append(_type_issue(path, value, "object"))
            return
        assert ftype.item is not None
        for key, item in value.items():
            _validate_type(item, ftype.item, f"{path}[{key}]", strict, issues)
    else:
        issue = _check_scalar(value, kind, path)
        if issue is not None:
            issues.append(issue)


def _validate_model(
    value: Any, schema: ModelSchema, path: str, strict: bool, issues: list[FieldIssue]
) -> None:
    if not isinstance(value, dict):
        issues.append(_type_issue(path, value, "object"))
        return
    for key, item in value.items():
        p = _child(path, key)
        info = schema.fields.get(key)
        if info is None:
            if strict:
                issues.append(_unknown(p))
            continue
        _validate_type(item, info.type, p, strict, issues)
    for name in ENFORCED_REQUIRED.get(schema.name, ()):
        if _is_empty(value.get(name)):
            issues.append(_required(_child(path, name)))


def validate(obj: Mapping[str, Any], schema: ModelSchema, *, strict: bool) -> list[FieldIssue]:
    """Type-check ``obj`` against built-in ``schema``; report unknown fields if ``strict``.

    Checks JSON types at every level, quantity and base64 formats, and the few
    required fields in ``ENFORCED_REQUIRED``.  With ``strict`` (the request's
    ``fieldValidation=Strict``) every field the type lacks is an issue (see
    ``is_unknown_field``); otherwise unknown fields are not reported here: the
    server drops them with ``prune_unknown`` and warns, as the real apiserver does.
    An empty list means the object is acceptable.
    """
    issues: list[FieldIssue] = []
    _validate_model(obj, schema, "", strict, issues)
    return issues


def _prune_type(value: Any, ftype: FieldType, path: str, unknown: list[str]) -> Any:
    kind = ftype.kind
    if kind == "model" and isinstance(value, dict):
        assert ftype.model is not None
        return _prune_model(value, model_schema(ftype.model), path, unknown)
    if kind == "list" and isinstance(value, list):
        assert ftype.item is not None
        return [_prune_type(v, ftype.item, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        assert ftype.item is not None
        return {k: _prune_type(v, ftype.item, f"{path}[{k}]", unknown) for k, v in value.items()}
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def _prune_model(
    value: Mapping[str, Any], schema: ModelSchema, path: str, unknown: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        p = _child(path, key)
        info = schema.fields.get(key)
        if info is None:
            unknown.append(p)
            continue
        out[key] = _prune_type(item, info.type, p, unknown)
    return out


def prune_unknown(obj: Mapping[str, Any], schema: ModelSchema) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``obj`` without the fields built-in ``schema`` does not have.

    Returns (pruned copy, paths of the dropped fields).  The real apiserver drops
    unknown fields of built-in kinds when decoding; under ``fieldValidation=Warn``
    (kubectl's ``--validate=warn``; also the default of other clients) it sends
    each as a warning ``unknown field "<path>"``.  The input is not modified.
    """
    unknown: list[str] = []
    return _prune_model(obj, schema, "", unknown), unknown


# ---------------------------------------------------------------------------
# CustomResourceDefinition structural schemas

_META_KEYS = ("apiVersion", "kind", "metadata")
_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # kube-openapi takes an integral float (1.0) as an integer.
    "integer": lambda v: _is_int(v) or (isinstance(v, float) and v.is_integer()),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
}


def _crd_value_checks(
    value: Any, s: Mapping[str, Any], path: str, issues: list[FieldIssue]
) -> None:
    """Enum and bounds (what kube-openapi checks besides types and structure)."""
    if "enum" in s and isinstance(s["enum"], list) and value not in s["enum"]:
        supported = ", ".join(render_value(v) for v in s["enum"])
        issues.append(
            FieldIssue(
                path,
                FIELD_VALUE_NOT_SUPPORTED,
                f"Unsupported value: {render_value(value)}: supported values: {supported}",
            )
        )
    where = path or "body"
    if isinstance(value, str):
        if "maxLength" in s and len(value) > s["maxLength"]:
            issues.append(
                FieldIssue(
                    path,
                    FIELD_VALUE_TOO_LONG,
                    f"Too long: may not be more than {s['maxLength']} bytes",
                )
            )
        if "minLength" in s and len(value) < s["minLength"]:
            issues.append(
                _invalid(
                    path, value, f"{where} in body should be at least {s['minLength']} chars long"
                )
            )
        pattern = s.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True  # an ECMA regex Python cannot compile: do not reject on it
            if not matched:
                issues.append(_invalid(path, value, f"{where} in body should match '{pattern}'"))
    elif _is_number(value):
        maximum, minimum = s.get("maximum"), s.get("minimum")
        if maximum is not None:
            if s.get("exclusiveMaximum") and value >= maximum:
                issues.append(
                    _invalid(path, value, f"{where} in body should be less than {maximum}")
                )
            elif value > maximum:
                issues.append(
                    _invalid(
                        path, value, f"{where} in body should be less than or equal to {maximum}"
                    )
                )
        if minimum is not None:
            if s.get("exclusiveMinimum") and value <= minimum:
                issues.append(
                    _invalid(path, value, f"{where} in body should be greater than {minimum}")
                )
            elif value < minimum:
                issues.append(
                    _invalid(
                        path, value, f"{where} in body should be greater than or equal to {minimum}"
                    )
                )
    elif isinstance(value, list):
        if "maxItems" in s and len(value) > s["maxItems"]:
            issues.append(
                FieldIssue(
                    path,
                    FIELD_VALUE_TOO_MANY,
                    f"Too many: {len(value)}: must have at most {s['maxItems']} items",
                )
            )
        if "minItems" in s and len(value) < s["minItems"]:
            issues.append(
                _invalid(
                    path,
                    _json_type(value),
                    f"{where} in body should have at least {s['minItems']} items",
                )
            )
    elif isinstance(value, dict):
        if "maxProperties" in s and len(value) > s["maxProperties"]:
            issues.append(
                FieldIssue(
                    path,
                    FIELD_VALUE_TOO_MANY,
                    f"Too many: {len(value)}: must have at most {s['maxProperties']} items",
                )
            )
        if "minProperties" in s and len(value) < s["minProperties"]:
            issues.append(
                _invalid(
                    path,
                    _json_type(value),
                    f"{where} in body should have at least {s['minProperties']} properties",
                )
            )


def _crd_matches(value: Any, s: Mapping[str, Any]) -> bool:
    tmp: list[FieldIssue] = []
    _crd_validate(value, s, "", False, tmp, preserve=True)
    return not tmp


def _crd_composition(value: Any, s: Mapping[str, Any], path: str, issues: list[FieldIssue]) -> None:
    got = _json_type(value)
    all_of = s.get("allOf") or []
    if all_of and not all(_crd_matches(value, sub) for sub in all_of):
        issues.append(_invalid(path, got, "must validate all the schemas (allOf)"))
    any_of = s.get("anyOf") or []
    if any_of and not any(_crd_matches(value, sub) for sub in any_of):
        issues.append(_invalid(path, got, "must validate at least one schema (anyOf)"))
    one_of = s.get("oneOf") or []
    if one_of:
        n = sum(1 for sub in one_of if _crd_matches(value, sub))
        if n == 0:
            issues.append(
                _invalid(
                    path, got, "must validate one and only one schema (oneOf). Found none valid"
                )
            )
        elif n > 1:
            issues.append(
                _invalid(
                    path,
                    got,
                    f"must validate one and only one schema (oneOf). Found {n} valid alternatives",
                )
            )
    not_ = s.get("not")
    if isinstance(not_, Mapping) and _crd_matches(value, not_):
        issues.append(_invalid(path, got, "must not validate the schema (not)"))


def _crd_validate(
    value: Any,
    s: Mapping[str, Any],
    path: str,
    strict: bool,
    issues: list[FieldIssue],
    *,
    preserve: bool = False,
    resource_root: bool = False,
    in_list: bool = False,
) -> None:
    if value is None:
        # A null property that is not nullable is pruned by the apiserver before
        # validation (prune_crd drops it); a null array item is a type error.
        if in_list and not s.get("nullable") and "type" in s:
            issues.append(_type_issue(path, value, s["type"]))
        return
    if s.get("x-kubernetes-int-or-string"):
        if not (_is_int(value) or isinstance(value, str)):
            issues.append(_type_issue(path, value, "integer,string"))
            return
    else:
        stype = s.get("type")
        check = _JSON_TYPES.get(stype) if isinstance(stype, str) else None
        if check is not None and not check(value):
            issues.append(_type_issue(path, value, stype))
            return
    _crd_value_checks(value, s, path, issues)
    _crd_composition(value, s, path, issues)

    if isinstance(value, dict):
        props = s.get("properties") or {}
        additional = s.get("additionalProperties")
        keep_unknown = preserve or bool(s.get("x-kubernetes-preserve-unknown-fields"))
        embedded = resource_root or bool(s.get("x-kubernetes-embedded-resource"))
        for key, item in value.items():
            p = _child(path, key)
            if embedded and key in _META_KEYS:
                if key == "metadata":
                    _validate_type(item, FieldType("model", "V1ObjectMeta"), p, strict, issues)
                elif not isinstance(item, str):
                    issues.append(_type_issue(p, item, "string"))
            elif key in props:
                _crd_validate(item, props[key], p, strict, issues)
            elif isinstance(additional, Mapping):
                _crd_validate(item, additional, p, strict, issues)
            elif additional is True or keep_unknown:
                continue
            elif strict:
                issues.append(_unknown(p))
        for name in s.get("required") or ():
            if value.get(name) is None and not (props.get(name) or {}).get("nullable"):
                issues.append(_required(_child(path, name)))
    elif isinstance(value, list):
        items = s.get("items")
        if isinstance(items, Mapping):
            item_preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
            for i, item in enumerate(value):
                _crd_validate(
                    item,
                    items,
                    f"{path}[{i}]",
                    strict,
                    issues,
                    preserve=item_preserve,
                    in_list=True,
                )


def validate_crd_schema(
    obj: Mapping[str, Any], openapi_v3_schema: Mapping[str, Any] | None, *, strict: bool
) -> list[FieldIssue]:
    """Validate a custom resource against its CRD version's ``openAPIV3Schema``.

    Covers the structural-schema subset the apiserver enforces with kube-openapi:
    ``type``, ``properties``, ``items``, ``required``, ``enum``,
    ``additionalProperties``, ``nullable``, ``x-kubernetes-int-or-string``,
    ``x-kubernetes-preserve-unknown-fields`` (no unknown-field issues at that
    level), ``x-kubernetes-embedded-resource``, length/range/count bounds,
    ``pattern`` and ``allOf``/``anyOf``/``oneOf``/``not``.  CEL rules
    (``x-kubernetes-validations``) are ``celrules.py``'s.  Not covered: ``format``,
    list-type uniqueness.
    ``apiVersion``/``kind``/``metadata`` at the root are always allowed;
    ``metadata`` is checked as an ObjectMeta.  With ``strict``, fields the schema
    does not allow are issues (``is_unknown_field``); otherwise ``prune_crd``
    drops them.  A missing schema accepts anything.
    """
    issues: list[FieldIssue] = []
    schema = openapi_v3_schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    _crd_validate(obj, schema, "", strict, issues, resource_root=True)
    return issues


def _crd_prune(
    value: Any,
    s: Mapping[str, Any],
    path: str,
    unknown: list[str],
    *,
    preserve: bool = False,
    resource_root: bool = False,
) -> Any:
    if isinstance(value, dict):
        props = s.get("properties") or {}
        additional = s.get("additionalProperties")
        keep_unknown = preserve or bool(s.get("x-kubernetes-preserve-unknown-fields"))
        embedded = resource_root or bool(s.get("x-kubernetes-embedded-resource"))
        out: dict[str, Any] = {}
        for key, item in value.items():
            p = _child(path, key)
            if embedded and key in _META_KEYS:
                if key == "metadata" and isinstance(item, dict):
                    out[key] = _prune_model(item, model_schema("V1ObjectMeta"), p, unknown)
                else:
                    out[key] = copy.deepcopy(item)
            elif key in props:
                if item is None and not props[key].get("nullable"):
                    continue  # the apiserver drops non-nullable nulls
                out[key] = _crd_prune(item, props[key], p, unknown)
            elif isinstance(additional, Mapping):
                if item is None and not additional.get("nullable"):
                    continue
                out[key] = _crd_prune(item, additional, p, unknown)
            elif additional is True or keep_unknown:
                out[key] = copy.deepcopy(item)
            else:
                unknown.append(p)
        return out
    if isinstance(value, list):
        items = s.get("items")
        if not isinstance(items, Mapping):
            return copy.deepcopy(value)
        item_preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        return [
            _crd_prune(v, items, f"{path}[{i}]", unknown, preserve=item_preserve)
            for i, v in enumerate(value)
        ]
    return value


def default_crd(value: Any, s: Mapping[str, Any] | None) -> None:
    """Fill in the schema's ``default`` values in custom resource ``value``, in place,
    as the apiserver does after pruning and before validation (apiextensions-apiserver
    ``pkg/apiserver/schema/defaulting/algorithm.go``): a property that is missing, or
    null without ``nullable``, gets a copy of its default, then every property
    (defaulted ones included), additional property and list item is defaulted by its
    own schema.  CEL rules rely on it: the Gateway API's read ``self.group`` of a
    backendRef that names none."""
    if not isinstance(s, Mapping):
        return
    if isinstance(value, dict):
        props = s.get("properties") or {}
        for key, prop in props.items():
            if "default" not in prop or prop["default"] is None:
                continue
            if key not in value or (value[key] is None and not prop.get("nullable")):
                value[key] = copy.deepcopy(prop["default"])
        additional = s.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                default_crd(item, props[key])
            elif isinstance(additional, Mapping):
                default_crd(item, additional)
    elif isinstance(value, list):
        for item in value:
            default_crd(item, s.get("items"))


_MISSING, _UNRESOLVED = object(), object()
_PATH_STEP = re.compile(r"([^\[\]]*)((?:\[\d+\])*)")


def value_at(obj: Any, path: str) -> Any:
    """The value at a field path of the form issues and causes name
    (``spec.rules[0].matches``); ``_MISSING`` if there is none there, ``_UNRESOLVED``
    if the path cannot be read (a map key with a dot in it)."""
    node = obj
    for part in path.split("."):
        m = _PATH_STEP.fullmatch(part)
        if m is None:
            return _UNRESOLVED
        name, indices = m.groups()
        if name:
            if not isinstance(node, dict) or name not in node:
                return _MISSING
            node = node[name]
        for index in re.findall(r"\d+", indices):
            if not isinstance(node, list) or int(index) >= len(node):
                return _MISSING
            node = node[int(index)]
    return node


def unchanged(path: str, new: Any, old: Any) -> bool:
    """Whether an update leaves the value at ``path`` as it was (absent in both
    counts as unchanged)."""
    before, after = value_at(old, path), value_at(new, path)
    return before is not _UNRESOLVED and after is not _UNRESOLVED and before == after


def ratchet(issues: list[FieldIssue], new: Any, old: Any) -> list[FieldIssue]:
    """CRD validation ratcheting (KEP-4008, on by default since Kubernetes 1.30, GA in
    1.33): on an update, a schema error at a value the update leaves unchanged is not
    reported, so an object stored under looser rules (an older version's schema, a
    CRD tightened since) can still have its status or other fields written.  Unknown
    fields are never ratcheted."""
    return [i for i in issues if is_unknown_field(i) or not unchanged(i.field, new, old)]


def prune_crd(
    obj: Mapping[str, Any], openapi_v3_schema: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """A copy of custom resource ``obj`` without the fields its schema does not allow.

    Returns (pruned copy, paths of the dropped fields): the apiserver's pruning of
    structural schemas, which keeps everything under
    ``x-kubernetes-preserve-unknown-fields`` and the apiVersion/kind/metadata of
    the root and of embedded resources (unknown ``metadata`` fields are dropped,
    as ObjectMeta decoding does).  Nulls of properties that are not ``nullable``
    are dropped too, silently, as the apiserver does before defaulting.  The
    input is not modified.
    """
    unknown: list[str] = []
    schema = openapi_v3_schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    pruned = _crd_prune(obj, schema, "", unknown, resource_root=True)
    return pruned, unknown
