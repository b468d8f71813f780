"""The shape of a type as server-side apply sees it: which maps and lists merge, by
what key, and which values are replaced whole.

structured-merge-diff (``sigs.k8s.io/structured-merge-diff/v6/schema``) describes
every position of an object by one of a few relationships:

* a **map** is granular (each key merged and owned on its own) or atomic; a struct
  is a map with declared fields, whose undeclared keys (``labels``) are map entries;
* a **list** is atomic (replaced and owned whole: the default), a *set* of scalars
  (``x-kubernetes-list-type: set``; items owned by value) or an *associative* list
  of objects (``x-kubernetes-list-type: map``; items owned by their key fields,
  ``x-kubernetes-list-map-keys``);
* a **scalar** is a leaf; so is anything free-form declared atomic;
* where nothing is declared (``x-kubernetes-preserve-unknown-fields``) the shape is
  *deduced* from the value: maps are granular, lists atomic.

Built-in kinds take these facts from the strategic-merge tags of the release's OpenAPI
definitions (``schema.patch_tags_table``: a ``merge`` list with a merge key is associative on
it, one without a key is a set), corrected where the apply markers of k8s.io/api
differ from the patch tags (``APPLY_LISTS``, ``ATOMIC_STRUCTS``, ``ATOMIC_MAPS``;
from the ``+listType``/``+listMapKey``/``+structType``/``+mapType`` markers of
k8s.io/api v0.36, as compiled into client-go's
``applyconfigurations/internal/internal.go``).  Custom resources take them from
their CRD's structural schema, as the real server does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from . import schema
from .resources import ResourceType

SCALAR = "scalar"
MAP = "map"
LIST = "list"
DEDUCED = "deduced"  # free-form: maps granular, lists atomic, decided by the value
LEAF = "leaf"  # free-form but atomic: always one owned value

# (client model, JSON field) -> list keys where the apply markers differ from the
# strategic-merge tags: a tuple of key fields (associative), () for a set, None for
# atomic.
APPLY_LISTS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("V1Container", "ports"): ("containerPort", "protocol"),
    ("V1EphemeralContainer", "ports"): ("containerPort", "protocol"),
    ("V1ServiceSpec", "ports"): ("port", "protocol"),
    ("V1PodSpec", "topologySpreadConstraints"): ("topologyKey", "whenUnsatisfiable"),
    ("V1ResourceRequirements", "claims"): ("name",),
    ("V1ResourceStatus", "resources"): ("resourceID",),
    ("V1ContainerRestartRuleOnExitCodes", "values"): (),
    ("V1NodeAllocatableResourceClaimStatus", "containers"): (),
    ("V1Endpoint", "addresses"): (),
    ("V1PodStatus", "hostIPs"): None,
    ("V1PodStatus", "nodeAllocatableResourceClaimStatuses"): None,
    # k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1 markers.
    ("V1CustomResourceDefinitionStatus", "conditions"): ("type",),
    ("V1JSONSchemaProps", "x-kubernetes-validations"): ("rule",),
}

# Structs marked ``+structType=atomic``: replaced and owned whole.
ATOMIC_STRUCTS = frozenset({
    "V1ConfigMapKeySelector",
    "CoreV1EndpointPort",
    "DiscoveryV1EndpointPort",
    "V1EndpointAddress",
    "V1FileKeySelector",
    "V1LabelSelector",
    "V1LocalObjectReference",
    "V1NodeSelector",
    "V1NodeSelectorTerm",
    "V1ObjectFieldSelector",
    "V1ObjectReference",
    "V1OwnerReference",
    "V1ResourceFieldSelector",
    "V1RoleRef",
    "RbacV1Subject",
    "V1ScopeSelector",
    "V1SecretKeySelector",
    "V1SecretReference",
    "V1TopologySelectorTerm",
    "V1TypedLocalObjectReference",
    "V1CrossVersionObjectReference",
})

# Maps marked ``+mapType=atomic``.
ATOMIC_MAPS = frozenset({
    ("V1PodSpec", "nodeSelector"),
    ("V1ServiceSpec", "selector"),
    ("V1ReplicationControllerSpec", "selector"),
})


class Shape:
    """One position of a type.  ``fields`` (declared fields of a struct) are built on
    first use, because types are recursive (JSONSchemaProps) and large."""

    __slots__ = ("_build", "_fields", "atomic", "element", "key_defaults", "keys", "kind")

    def __init__(
        self,
        kind: str,
        *,
        atomic: bool = False,
        element: Shape | None = None,
        keys: tuple[str, ...] | None = None,
        key_defaults: Mapping[str, Any] | None = None,
        fields: Callable[[], dict[str, Shape]] | None = None,
    ) -> None:
        self.kind = kind
        self.atomic = atomic
        self.element = element  # map: the value of undeclared keys; list: the items
        self.keys = keys  # list: () a set, a tuple the key fields of an associative list
        self.key_defaults = key_defaults or {}
        self._build = fields
        self._fields: dict[str, Shape] | None = None

    @property
    def fields(self) -> dict[str, Shape]:
        if self._fields is None:
            self._fields = self._build() if self._build is not None else {}
        return self._fields

    def declares(self, name: str) -> bool:
        return self.kind == MAP and name in self.fields

    def child(self, name: str) -> Shape:
        """The shape of key ``name`` of this map."""
        if self.kind == DEDUCED:
            return DEDUCED_SHAPE
        found = self.fields.get(name) if self.kind == MAP else None
        if found is not None:
            return found
        return self.element if self.element is not None else DEDUCED_SHAPE

    def __repr__(self) -> str:
        return f"Shape({self.kind}{', atomic' if self.atomic else ''}, keys={self.keys})"


SCALAR_SHAPE = Shape(SCALAR)
DEDUCED_SHAPE = Shape(DEDUCED)
LEAF_SHAPE = Shape(LEAF)


# -- built-in kinds -------------------------------------------------------------------


_MODEL_SHAPES: dict[str, Shape] = {}


def model_shape(model_name: str) -> Shape:
    """The shape of client model ``model_name`` (``"V1Deployment"``), built once."""
    shape = _MODEL_SHAPES.get(model_name)
    if shape is None:
        model = schema.model_schema(model_name)
        shape = Shape(MAP, atomic=model_name in ATOMIC_STRUCTS,
                      fields=lambda: {name: _field_shape(model, name, info.type)
                                      for name, info in model.fields.items()})
        _MODEL_SHAPES[model_name] = shape
    return shape


def _type_shape(ftype: schema.FieldType) -> Shape:
    if ftype.kind == "model":
        assert ftype.model is not None
        return model_shape(ftype.model)
    if ftype.kind == "any":
        return LEAF_SHAPE
    if ftype.kind == "map":
        assert ftype.item is not None
        return Shape(MAP, element=_type_shape(ftype.item))
    if ftype.kind == "list":
        # A list with no field to carry markers (a list of lists) is atomic.
        assert ftype.item is not None
        return Shape(LIST, atomic=True, element=_type_shape(ftype.item))
    return SCALAR_SHAPE


def _field_shape(model: schema.ModelSchema, name: str, ftype: schema.FieldType) -> Shape:
    if ftype.kind == "map":
        assert ftype.item is not None
        return Shape(MAP, atomic=(model.name, name) in ATOMIC_MAPS,
                     element=_type_shape(ftype.item))
    if ftype.kind != "list":
        return _type_shape(ftype)
    assert ftype.item is not None
    item = _type_shape(ftype.item)
    if (model.name, name) in APPLY_LISTS:
        keys = APPLY_LISTS[model.name, name]
    else:
        strategies, merge_key = model.patch_tags(name)
        keys = None
        if "merge" in strategies:
            keys = (merge_key,) if merge_key else ()
    if keys is None:
        return Shape(LIST, atomic=True, element=item)
    return Shape(LIST, element=item, keys=keys, key_defaults=_zero_defaults(ftype.item, keys))


def _zero_defaults(item: schema.FieldType, keys: tuple[str, ...]) -> dict[str, Any]:
    """Values of key fields an item may leave out.  Every key field of a built-in list
    has a default in the OpenAPI: its zero value, or ``TCP`` for ``protocol``."""
    if item.kind != "model" or not keys:
        return {}
    model = schema.model_schema(item.model or "")
    out: dict[str, Any] = {}
    for key in keys:
        info = model.field(key)
        if key == "protocol":
            out[key] = "TCP"
        elif info is not None and info.type.kind == "integer":
            out[key] = 0
        elif info is not None and info.type.kind == "string":
            out[key] = ""
    return out


# -- custom resources --------------------------------------------------------------------


_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


def crd_shape(openapi: Mapping[str, Any] | None) -> Shape:
    """The shape of a custom resource from its CRD's ``openAPIV3Schema``.

    ``metadata`` is always ObjectMeta, whatever the schema says of it (the real
    server does the same)."""
    top = _crd_node(openapi or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})

    def fields() -> dict[str, Shape]:
        out = dict(top.fields) if top.kind == MAP else {}
        out["apiVersion"] = SCALAR_SHAPE
        out["kind"] = SCALAR_SHAPE
        out["metadata"] = model_shape("V1ObjectMeta")
        return out

    element = top.element if top.kind == MAP else DEDUCED_SHAPE
    return Shape(MAP, element=element, fields=fields)


def _crd_node(s: Mapping[str, Any]) -> Shape:
    if s.get("x-kubernetes-int-or-string"):
        return SCALAR_SHAPE
    kind = s.get("type")
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    if kind == "array":
        item_schema = s.get("items") if isinstance(s.get("items"), dict) else {}
        item = _crd_node(item_schema)
        list_type = s.get("x-kubernetes-list-type", "atomic")
        if list_type == "set":
            return Shape(LIST, element=item, keys=())
        if list_type == "map":
            keys = tuple(s.get("x-kubernetes-list-map-keys") or ())
            props = item_schema.get("properties") or {}
            defaults = {k: props[k]["default"] for k in keys
                        if isinstance(props.get(k), dict) and "default" in props[k]}
            return Shape(LIST, element=item, keys=keys, key_defaults=defaults)
        return Shape(LIST, atomic=True, element=item)
    if kind == "object" or "properties" in s or "additionalProperties" in s:
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        element: Shape | None
        if isinstance(extra, dict):
            element = _crd_node(extra)
        elif preserve or extra is True or not props:
            element = DEDUCED_SHAPE
        else:
            element = None
        return Shape(MAP, atomic=s.get("x-kubernetes-map-type") == "atomic", element=element,
                     fields=lambda: {k: _crd_node(v) for k, v in props.items()
                                     if isinstance(v, dict)})
    if kind in _SCALAR_TYPES:
        return SCALAR_SHAPE
    return DEDUCED_SHAPE


# -- by resource -------------------------------------------------------------------------


def shape_for(rt: ResourceType, version: str) -> Shape:
    """The shape of objects of ``rt`` at ``version``."""
    if rt.custom:
        return crd_shape(rt.crd_schema(version))
    return _builtin_shape(rt.group, version, rt.kind)


@functools.cache
def _builtin_shape(group: str, version: str, kind: str) -> Shape:
    model = schema.kind_model_name(group, version, kind)
    return model_shape(model) if model else crd_shape(None)
