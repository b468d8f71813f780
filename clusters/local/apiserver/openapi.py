"""OpenAPI v3 documents, shaped as kubectl reads them.

kubectl (1.27+, so the pinned 1.37) reads the apiserver's OpenAPI v3 for three
things; every rule below comes from its source:

* Server-side field validation.  ``kubectl apply/create/replace`` with the default
  ``--validate=strict`` asks ``queryParamVerifierV3.HasSupport(gvk)``
  (k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go): GET
  ``/openapi/v3``, follow ``paths["apis/<group>/<version>"].serverRelativeURL``,
  and in that document find a path whose ``patch`` operation carries
  ``x-kubernetes-group-version-kind`` = {group, version, kind} and lists a
  parameter named ``fieldValidation``.  Found: kubectl sends
  ``?fieldValidation=Strict`` and leaves validation to the server.  A custom kind
  whose group-version is not in the root falls back to the ``Namespace`` PATCH of
  ``api/v1``.  Not found: kubectl validates client-side against OpenAPI *v2*.
* Strategic merge patches (kubectl/pkg/cmd/apply/patcher.go).  For a GVK whose
  PATCH ``requestBody.content`` has ``application/strategic-merge-patch+json``,
  kubectl takes the ``components.schemas`` entry whose
  ``x-kubernetes-group-version-kind`` *list* contains the GVK and walks it with
  ``strategicpatch.PatchMetaFromOpenAPIV3``: ``properties``, ``items``,
  ``allOf[0].$ref`` to ``#/components/schemas/<name>``, and the
  ``x-kubernetes-patch-strategy`` (comma-separated) /
  ``x-kubernetes-patch-merge-key`` of each property.  Custom kinds offer no
  strategic content type, so kubectl falls back to a JSON merge patch, as with a
  real apiserver.
* ``kubectl explain`` (kubectl/pkg/explain/v2/templates/plaintext.tmpl): finds the
  GVK on any get/post/put/patch/delete operation of
  ``/api[s/<group>]/<version>[/namespaces/{namespace}]/<plural>[/{name}]``, then
  the component with that GVK, following ``$ref``/``allOf``/``items``/
  ``additionalProperties`` and printing ``description``/``type``/``required``.

With v3 answering all three, kubectl 1.37 asks for ``/openapi/v2`` only where
v3 says "unsupported": ``kind: List`` manifests and kinds v3 does not describe
(validation), custom kinds (patch type).  It then needs *a* v2 document, or
``apply`` fails with "failed to download openapi"; an empty one
(``openapi_v2_protobuf``) makes it behave as with a real server's v2.

Documents are plain dicts, JSON-serializable, named like the real ones
(``io.k8s.api.core.v1.Pod``, ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``,
``io.istio.security.v1.AuthorizationPolicy`` for a CRD).  Model schemas are
converted once and cached; a document of a group-version is assembled in a few
milliseconds after the first, and the server caches whole documents per
registry generation.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clusters.local.apiserver.schema import (
    BUILTIN_KINDS,
    FieldInfo,
    FieldType,
    ModelSchema,
    group_model_prefix,
    kind_model_name,
    kind_schema,
    model_parts,
    model_schema,
)

META_PACKAGE = "io.k8s.apimachinery.pkg.apis.meta.v1"
# Types of k8s.io/apimachinery/pkg/apis/meta/v1 that the client names V1<Type>.
META_TYPES = frozenset(
    {
        "APIGroup",
        "APIGroupList",
        "APIResource",
        "APIResourceList",
        "APIVersions",
        "Condition",
        "DeleteOptions",
        "FieldSelectorRequirement",
        "GroupVersionForDiscovery",
        "LabelSelector",
        "LabelSelectorRequirement",
        "ListMeta",
        "ManagedFieldsEntry",
        "ObjectMeta",
        "OwnerReference",
        "Preconditions",
        "ServerAddressByClientCIDR",
        "Status",
        "StatusCause",
        "StatusDetails",
        "WatchEvent",
    }
)
_SPECIAL_PACKAGES = {
    "": "io.k8s.api.core",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    "internal.apiserver.k8s.io": "io.k8s.api.apiserverinternal",
}
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = f"{META_PACKAGE}.Time"
PATCH = f"{META_PACKAGE}.Patch"
_SCALAR_COMPONENTS: dict[str, dict[str, Any]] = {
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number, "
        "serialized as a string (`100m`, `1Gi`) or a number.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string",
        "format": "int-or-string",
    },
    TIME: {
        "description": "Time is a wrapper around time.Time which supports correct "
        "marshaling to YAML and JSON (RFC 3339).",
        "type": "string",
        "format": "date-time",
    },
    PATCH: {
        "description": "Patch is provided to give a concrete name and type to the "
        "Kubernetes PATCH request body.",
        "type": "object",
    },
}

_RESPONSE_TYPES = ("application/json", "application/yaml")
_PATCH_TYPES_CUSTOM = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


class _ResourceTypeLike(Protocol):
    group: str
    kind: str
    plural: str
    namespaced: bool
    verbs: Sequence[str]

    @property
    def custom(self) -> bool: ...

    @property
    def has_status(self) -> bool: ...

    def crd_schema(self, version: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class ResourceInfo:
    """One resource of a group-version, as far as its OpenAPI document is concerned.

    ``schema`` is a built-in ``ModelSchema`` (from ``schema.kind_schema``), or the
    ``openAPIV3Schema`` dict of a CRD version (``{}`` for none: free-form), or
    ``None``: the built-in of that kind if the client has one.  Built-in kinds
    accept strategic merge patches; custom kinds do not (as on a real apiserver).
    ``verbs`` limits the operations published (TokenReview: only ``create``).
    """

    kind: str
    plural: str
    namespaced: bool
    has_status: bool = False
    schema: ModelSchema | Mapping[str, Any] | None = None
    verbs: tuple[str, ...] = ALL_VERBS

    @classmethod
    def of(cls, rt: _ResourceTypeLike, version: str) -> ResourceInfo:
        """From the server's ``resources.ResourceType`` (duck-typed: no import cycle)."""
        schema: ModelSchema | Mapping[str, Any] | None
        if rt.custom:
            schema = rt.crd_schema(version) or {}
        else:
            schema = kind_schema(rt.group, version, rt.kind)
        return cls(
            kind=rt.kind,
            plural=rt.plural,
            namespaced=rt.namespaced,
            has_status=rt.has_status,
            schema=schema,
            verbs=tuple(rt.verbs),
        )


def group_version_path(group: str, version: str) -> str:
    """The key of a group-version in the v3 root: ``api/v1``, ``apis/apps/v1``."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def group_package(group: str) -> str:
    """Go package prefix of a built-in group's types (``apps`` -> ``io.k8s.api.apps``)."""
    return _SPECIAL_PACKAGES.get(group) or "io.k8s.api." + group.split(".", 1)[0]


def crd_component_name(group: str, version: str, kind: str) -> str:
    """Component name of a custom kind: reversed group, version, kind.

    ``security.istio.io``/``v1``/``AuthorizationPolicy`` ->
    ``io.istio.security.v1.AuthorizationPolicy``, as the apiextensions-apiserver
    names them (``ToRESTFriendlyName``).
    """
    return ".".join([*reversed(group.split(".")), version, kind])


@functools.cache
def _prefix_groups() -> dict[str, str]:
    return {group_model_prefix(g): g for g in BUILTIN_KINDS}


@functools.cache
def _core_models() -> frozenset[str]:
    """Every model the core/v1 kinds reach (so defined in package core/v1 or meta)."""
    import kubernetes.client.models as models

    kinds = {k for kind in BUILTIN_KINDS[""] for k in (kind, kind + "List")}
    queue = [
        name
        for name in models.__all__
        if model_parts(name)[0] in ("", "Core")
        and model_parts(name)[1] == "v1"
        and model_parts(name)[2] in kinds
    ]
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name not in seen:
            seen.add(name)
            queue.extend(_model_refs(name))
    return frozenset(seen)


def component_name(model_name: str, group: str = "") -> str:
    """The real OpenAPI name of a client model's type, in a document of ``group``.

    ``V1Pod`` -> ``io.k8s.api.core.v1.Pod``, ``V1ObjectMeta`` ->
    ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``, ``EventsV1Event`` ->
    ``io.k8s.api.events.v1.Event``.  The client does not record a type's Go
    package; types the core kinds reach are core's, the generator's prefix names
    the package of the others it had to disambiguate, and the rest belong to the
    group of the document (``V1DeploymentSpec`` in apps/v1), since Kubernetes API
    packages share types only through core and meta.
    """
    if model_name == "VersionInfo":
        return "io.k8s.apimachinery.pkg.version.Info"
    prefix, version, type_name = model_parts(model_name)
    if not prefix and version == "v1" and type_name in META_TYPES:
        return f"{META_PACKAGE}.{type_name}"
    if prefix:
        group = _prefix_groups().get(prefix, prefix.lower())
    elif model_name in _core_models():
        group = ""
    return f"{group_package(group)}.{version}.{type_name}"


def _ref(name: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}


def _type_schema(ftype: FieldType, group: str) -> dict[str, Any]:
    kind = ftype.kind
    if kind == "model":
        assert ftype.model is not None
        return _ref(component_name(ftype.model, group))
    if kind == "list":
        assert ftype.item is not None
        return {"type": "array", "items": _type_schema(ftype.item, group)}
    if kind == "map":
        assert ftype.item is not None
        return {"type": "object", "additionalProperties": _type_schema(ftype.item, group)}
    if kind == "quantity":
        return _ref(QUANTITY)
    if kind == "int-or-string":
        return _ref(INT_OR_STRING)
    if kind == "datetime":
        return _ref(TIME)
    return {
        "string": {"type": "string"},
        "integer": {"type": "integer"},
        "number": {"type": "number", "format": "double"},
        "boolean": {"type": "boolean"},
        "bytes": {"type": "string", "format": "byte"},
    }.get(kind, {})


def _property(schema: ModelSchema, info: FieldInfo, group: str) -> dict[str, Any]:
    prop = _type_schema(info.type, group)
    if info.description:
        prop["description"] = info.description
    strategies, key = schema.patch_tags(info.name)
    if key:
        prop["x-kubernetes-patch-merge-key"] = key
    if strategies:
        prop["x-kubernetes-patch-strategy"] = ",".join(sorted(strategies))
    return prop


def _type_refs(ftype: FieldType) -> Iterable[str]:
    if ftype.kind == "model":
        assert ftype.model is not None
        yield ftype.model
    elif ftype.item is not None:
        yield from _type_refs(ftype.item)


@functools.cache
def _model_refs(model_name: str) -> tuple[str, ...]:
    refs: dict[str, None] = {}
    for info in model_schema(model_name).fields.values():
        for ref in _type_refs(info.type):
            refs[ref] = None
    return tuple(refs)


@functools.cache
def _scalar_refs(model_name: str) -> frozenset[str]:
    found: set[str] = set()

    def walk(ftype: FieldType) -> None:
        if ftype.kind == "quantity":
            found.add(QUANTITY)
        elif ftype.kind == "int-or-string":
            found.add(INT_OR_STRING)
        elif ftype.kind == "datetime":
            found.add(TIME)
        elif ftype.item is not None:
            walk(ftype.item)

    for info in model_schema(model_name).fields.values():
        walk(info.type)
    return frozenset(found)


@functools.cache
def model_component(model_name: str, group: str = "") -> dict[str, Any]:
    """The OpenAPI v3 schema of a client model (no GVK) in a document of ``group``.

    Cached (documents are rebuilt whenever a CRD changes): treat as read-only.
    """
    schema = model_schema(model_name)
    out: dict[str, Any] = {}
    if schema.description:
        out["description"] = schema.description
    out["type"] = "object"
    out["properties"] = {
        name: _property(schema, info, group) for name, info in schema.fields.items()
    }
    if schema.required:
        out["required"] = list(schema.required)
    return out


def _add_model_closure(schemas: dict[str, Any], roots: Iterable[str], group: str) -> None:
    queue = list(roots)
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        schemas.setdefault(component_name(name, group), model_component(name, group))
        for scalar in _scalar_refs(name):
            schemas.setdefault(scalar, _SCALAR_COMPONENTS[scalar])
        queue.extend(_model_refs(name))


# ---------------------------------------------------------------------------
# Operations


def _param(name: str, where: str, description: str, *, type_: str = "string") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "description": description}
    if where == "path":
        out["required"] = True
    out["schema"] = {"type": type_, "uniqueItems": True}
    return out


_NAME = _param("name", "path", "name of the resource")
_NAMESPACE = _param(
    "namespace", "path", "object name and auth scope, such as for teams and projects"
)
_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
_DRY_RUN = _param(
    "dryRun",
    "query",
    "When present, indicates that modifications should not be persisted. "
    "Valid values are: - All: all dry run stages will be processed",
)
_FIELD_MANAGER = _param(
    "fieldManager",
    "query",
    "fieldManager is a name associated with the actor or entity making these changes.",
)
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "query",
    "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: "
    "- Ignore: drops unknown fields silently. - Warn: drops unknown fields and sends a "
    "warning for each. - Strict: fails the request on any unknown or duplicate field.",
)
_FORCE = _param("force", "query", 'Force is going to "force" Apply requests.', type_="boolean")
_LIST_PARAMS = [
    _param(
        "allowWatchBookmarks",
        "query",
        'allowWatchBookmarks requests watch events with type "BOOKMARK".',
        type_="boolean",
    ),
    _param(
        "continue",
        "query",
        "The continue option should be set when retrieving more results from the server.",
    ),
    _param(
        "fieldSelector",
        "query",
        "A selector to restrict the list of returned objects by their fields.",
    ),
    _param(
        "labelSelector",
        "query",
        "A selector to restrict the list of returned objects by their labels.",
    ),
    _param(
        "limit",
        "query",
        "limit is a maximum number of responses to return for a list call.",
        type_="integer",
    ),
    _param(
        "resourceVersion",
        "query",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    _param(
        "resourceVersionMatch",
        "query",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    _param(
        "sendInitialEvents",
        "query",
        "`sendInitialEvents=true` may be set together with `watch=true`.",
        type_="boolean",
    ),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", type_="integer"),
    _param("watch", "query", "Watch for changes to the described resources.", type_="boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _param(
        "gracePeriodSeconds",
        "query",
        "The duration in seconds before the object should be deleted.",
        type_="integer",
    ),
    _param(
        "orphanDependents",
        "query",
        "Deprecated: please use the PropagationPolicy.",
        type_="boolean",
    ),
    _param("propagationPolicy", "query", "Whether and how garbage collection will be performed."),
]


def _content(ref: str, media_types: Sequence[str]) -> dict[str, Any]:
    return {mt: {"schema": {"$ref": f"#/components/schemas/{ref}"}} for mt in media_types}


def _responses(ref: str, *codes: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        code: {
            "description": {"200": "OK", "201": "Created", "202": "Accepted"}[code],
            "content": _content(ref, _RESPONSE_TYPES),
        }
        for code in codes
    }
    out["401"] = {"description": "Unauthorized"}
    return out


def _operation_group(group: str) -> str:
    if not group:
        return "Core"
    return "".join(part[:1].upper() + part[1:] for part in group.removesuffix(".k8s.io").split("."))


@dataclass(frozen=True)
class _Names:
    kind_ref: str
    list_ref: str
    status_ref: str
    delete_options_ref: str
    gvk: dict[str, str]
    op_prefix: str  # e.g. CoreV1
    tag: str


def _resource_paths(res: ResourceInfo, prefix: str, names: _Names, builtin: bool) -> dict[str, Any]:
    """Path items of one resource, as the real apiserver publishes them.

    Only the operations ``res.verbs`` allows; a path left without operations is
    omitted.  Path-level ``parameters`` hold name/namespace/pretty; each
    operation lists its own query parameters (kubectl looks for
    ``fieldValidation`` there, on PATCH).
    """
    verbs = set(res.verbs)
    kind, op, scope = res.kind, names.op_prefix, "Namespaced" if res.namespaced else ""
    body = {
        "content": _content(names.kind_ref, ("application/json", "application/yaml")),
        "required": True,
    }
    patch_types = (*_PATCH_TYPES_CUSTOM, STRATEGIC_MERGE_PATCH) if builtin else _PATCH_TYPES_CUSTOM
    patch_body = {"content": _content(PATCH, patch_types), "required": True}
    delete_body = {"content": _content(names.delete_options_ref, ("application/json",))}
    write_params = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]

    def operation(
        action: str, op_id: str, description: str, params: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tags": [names.tag],
            "description": description,
            "operationId": op_id,
            "parameters": params,
            **extra,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": dict(names.gvk),
        }
        return out

    def item_ops(suffix: str, what: str, with_delete: bool) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        if "get" in verbs:
            ops["get"] = operation(
                "get",
                f"read{op}{scope}{kind}{suffix}",
                f"read {what}",
                [],
                responses=_responses(names.kind_ref, "200"),
            )
        if "update" in verbs:
            ops["put"] = operation(
                "put",
                f"replace{op}{scope}{kind}{suffix}",
                f"replace {what}",
                write_params,
                requestBody=body,
                responses=_responses(names.kind_ref, "200", "201"),
            )
        if "patch" in verbs:
            ops["patch"] = operation(
                "patch",
                f"patch{op}{scope}{kind}{suffix}",
                f"partially update {what}",
                [*write_params, _FORCE],
                requestBody=patch_body,
                responses=_responses(names.kind_ref, "200", "201"),
            )
        if with_delete and "delete" in verbs:
            ops["delete"] = operation(
                "delete",
                f"delete{op}{scope}{kind}",
                f"delete {what}",
                _DELETE_PARAMS,
                requestBody=delete_body,
                responses=_responses(names.status_ref, "200", "202"),
            )
        return ops

    collection_ops: dict[str, Any] = {}
    if "list" in verbs:
        collection_ops["get"] = operation(
            "list",
            f"list{op}{scope}{kind}",
            f"list or watch objects of kind {kind}",
            _LIST_PARAMS,
            responses=_responses(names.list_ref, "200"),
        )
    if "create" in verbs:
        collection_ops["post"] = operation(
            "post",
            f"create{op}{scope}{kind}",
            f"create a {kind}",
            write_params,
            requestBody=body,
            responses=_responses(names.kind_ref, "200", "201", "202"),
        )
    if "deletecollection" in verbs:
        collection_ops["delete"] = operation(
            "deletecollection",
            f"delete{op}Collection{scope}{kind}",
            f"delete collection of {kind}",
            [*_LIST_PARAMS, *_DELETE_PARAMS],
            requestBody=delete_body,
            responses=_responses(names.status_ref, "200"),
        )

    if res.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{res.plural}"
        scope_params, item_params = [_NAMESPACE, _PRETTY], [_NAME, _NAMESPACE, _PRETTY]
    else:
        collection = f"{prefix}/{res.plural}"
        scope_params, item_params = [_PRETTY], [_NAME, _PRETTY]
    candidates = {
        collection: (collection_ops, scope_params),
        f"{collection}/{{name}}": (
            item_ops("", f"the specified {kind}", with_delete=True),
            item_params,
        ),
    }
    if res.namespaced and "list" in verbs:
        all_namespaces = operation(
            "list",
            f"list{op}{kind}ForAllNamespaces",
            f"list or watch objects of kind {kind}",
            _LIST_PARAMS,
            responses=_responses(names.list_ref, "200"),
        )
        candidates[f"{prefix}/{res.plural}"] = ({"get": all_namespaces}, [_PRETTY])
    if res.has_status:
        candidates[f"{collection}/{{name}}/status"] = (
            item_ops("Status", f"status of the specified {kind}", with_delete=False),
            item_params,
        )
    return {
        path: {**ops, "parameters": params} for path, (ops, params) in candidates.items() if ops
    }


# ---------------------------------------------------------------------------
# Documents


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _custom_component(
    group: str, version: str, kind: str, schema: Mapping[str, Any] | None
) -> dict[str, Any]:
    out = copy.deepcopy(dict(schema)) if schema else {"x-kubernetes-preserve-unknown-fields": True}
    out["type"] = "object"
    props = out.setdefault("properties", {})
    props["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation "
        "of an object.",
        "type": "string",
    }
    props["kind"] = {
        "description": "Kind is a string value representing the REST resource this "
        "object represents.",
        "type": "string",
    }
    props["metadata"] = {
        **_ref(f"{META_PACKAGE}.ObjectMeta"),
        "description": "Standard object's metadata.",
    }
    out["x-kubernetes-group-version-kind"] = [_gvk(group, version, kind)]
    return out


def _custom_list_component(group: str, version: str, kind: str, item_ref: str) -> dict[str, Any]:
    return {
        "description": f"{kind}List is a list of {kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {
                "description": f"List of {kind.lower()}s.",
                "type": "array",
                "items": {"$ref": f"#/components/schemas/{item_ref}"},
            },
            "kind": {"type": "string"},
            "metadata": {
                **_ref(f"{META_PACKAGE}.ListMeta"),
                "description": "Standard list metadata.",
            },
        },
        "x-kubernetes-group-version-kind": [_gvk(group, version, kind + "List")],
    }


def openapi_v3_document(
    group: str, version: str, resources: Sequence[ResourceInfo]
) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version (``/openapi/v3/apis/<g>/<v>``).

    Paths for every resource (collection: list/create/deletecollection; item:
    read/replace/patch/delete; ``/status`` when ``has_status``; list across
    namespaces for namespaced ones; only those its ``verbs`` allow), each
    operation with ``x-kubernetes-group-version-kind`` and
    ``x-kubernetes-action``, writes with ``dryRun``/``fieldManager``/
    ``fieldValidation``.  ``components.schemas`` holds each kind (with its GVK
    list), its list kind, and every type they reach.  Shares cached sub-dicts
    between documents: treat the result as read-only.
    """
    prefix = "/" + group_version_path(group, version)
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    _add_model_closure(
        schemas, ["V1ObjectMeta", "V1ListMeta", "V1Status", "V1DeleteOptions"], group
    )
    schemas[PATCH] = _SCALAR_COMPONENTS[PATCH]
    op_group = _operation_group(group)
    op_prefix = f"{op_group}{version[:1].upper()}{version[1:]}"
    tag = f"{op_group[:1].lower()}{op_group[1:]}_{version}"

    for res in resources:
        gvk = _gvk(group, version, res.kind)
        model: ModelSchema | None
        if isinstance(res.schema, ModelSchema):
            model = res.schema
        elif res.schema is None:
            model = kind_schema(group, version, res.kind)
        else:
            model = None
        list_kind = res.kind + "List"
        if model is not None:
            kind_ref = component_name(model.name, group)
            _add_model_closure(schemas, [model.name], group)
            schemas[kind_ref] = {
                **model_component(model.name, group),
                "x-kubernetes-group-version-kind": [gvk],
            }
            list_model = kind_model_name(group, version, list_kind)
            if "list" not in res.verbs:
                list_ref = ""
            elif list_model is not None:
                list_ref = component_name(list_model, group)
                _add_model_closure(schemas, [list_model], group)
                schemas[list_ref] = {
                    **model_component(list_model, group),
                    "x-kubernetes-group-version-kind": [_gvk(group, version, list_kind)],
                }
            else:
                list_ref = f"{group_package(group)}.{version}.{list_kind}"
                schemas[list_ref] = _custom_list_component(group, version, res.kind, kind_ref)
        else:
            custom = res.schema if isinstance(res.schema, Mapping) else None
            kind_ref = crd_component_name(group, version, res.kind)
            schemas[kind_ref] = _custom_component(group, version, res.kind, custom)
            list_ref = crd_component_name(group, version, list_kind)
            schemas[list_ref] = _custom_list_component(group, version, res.kind, kind_ref)
        names = _Names(
            kind_ref=kind_ref,
            list_ref=list_ref,
            status_ref=component_name("V1Status", group),
            delete_options_ref=component_name("V1DeleteOptions", group),
            gvk=gvk,
            op_prefix=op_prefix,
            tag=tag,
        )
        paths.update(_resource_paths(res, prefix, names, builtin=model is not None))

    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def encode_document(doc: Mapping[str, Any]) -> tuple[bytes, str]:
    """(JSON bytes, hash) of a document.

    The hash is what the root puts in ``serverRelativeURL`` (``?hash=``) and what
    the server may send as the document's ``ETag``: uppercase hex SHA-512 of the
    bytes, like kube-openapi's.  Keys are sorted, so equal documents hash equal.
    """
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return data, hashlib.sha512(data).hexdigest().upper()


def document_hash(doc: Mapping[str, Any]) -> str:
    """The hash of ``encode_document``."""
    return encode_document(doc)[1]


def parse_group_version_path(path: str) -> tuple[str, str]:
    """``api/v1`` -> ("", "v1"); ``apis/apps/v1`` -> ("apps", "v1")."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return "", parts[1]
    if len(parts) == 3 and parts[0] == "apis":
        return parts[1], parts[2]
    raise ValueError(f"not a group-version path: {path!r}")


def openapi_v3_root(
    group_versions: Iterable[str],
    docs: Callable[[str, str], Mapping[str, Any]] | Mapping[str, str],
) -> dict[str, Any]:
    """The ``/openapi/v3`` discovery document.

    ``group_versions`` are paths (``group_version_path``: ``api/v1``,
    ``apis/apps/v1``).  ``docs`` gives each one's hash: either precomputed, as a
    mapping from path to hash, or a callable ``(group, version) -> document``
    whose result is hashed here (cache the documents: the root is asked for on
    every kubectl command).  kubectl fetches ``serverRelativeURL`` as given,
    keeping the ``hash`` query.
    """
    out: dict[str, Any] = {}
    for path in sorted(group_versions):
        if isinstance(docs, Mapping):
            digest = docs[path]
        else:
            digest = document_hash(docs(*parse_group_version_path(path)))
        out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": out}


# ---------------------------------------------------------------------------
# OpenAPI v2: an empty document, for kubectl's client-side fallback

# kubectl asks with the first (Accept); kube-openapi answers with the second
# (Content-Type), which Go's mime parser accepts ("@" it rejects).
OPENAPI_V2_PROTOBUF_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_V2_INFO = {"title": "Kubernetes", "version": "v1.37.0"}


def openapi_v2_document() -> dict[str, Any]:
    """``/openapi/v2`` as JSON: a valid Swagger 2.0 document without definitions.

    kubectl reads v2 only when v3 says a kind does not take ``fieldValidation``:
    ``kind: List`` manifests, kinds the server does not serve, custom kinds whose
    CRD is not there yet.  Under ``--validate=strict`` it then validates
    client-side against v2, and *fails* if v2 cannot be fetched ("failed to
    download openapi").  A document without definitions makes it skip that
    validation (no schema for the kind), exactly as a real server's v2 does for
    kinds it has no schema for; the server still validates each object it is
    sent, since kubectl asks for ``fieldValidation=Strict`` regardless.  It also
    answers the patcher's v2 lookup for custom kinds ("no patch types"), which
    leads kubectl to the JSON merge patch a real server's custom kinds get.
    """
    return {"swagger": "2.0", "info": dict(_V2_INFO), "paths": {}, "definitions": {}}


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    out = bytearray([number << 3 | 2])
    size = len(payload)
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


def openapi_v2_protobuf() -> bytes:
    """``openapi_v2_document`` as the protobuf kubectl asks for.

    kubectl requests ``/openapi/v2`` with ``Accept: OPENAPI_V2_PROTOBUF_ACCEPT``
    only; answer with ``Content-Type: OPENAPI_V2_PROTOBUF``.  It decodes the
    body as a gnostic ``openapi_v2.Document`` (github.com/google/gnostic
    openapiv2/OpenAPIv2.proto: swagger = 1, info = 2 {title = 1, version = 2},
    paths = 8, definitions = 9); JSON there would not parse.
    """
    info = _proto_field(1, _V2_INFO["title"].encode()) + _proto_field(
        2, _V2_INFO["version"].encode()
    )
    return (
        _proto_field(1, b"2.0")
        + _proto_field(2, info)
        + _proto_field(8, b"")
        + _proto_field(9, b"")
    )
