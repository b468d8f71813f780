"""The three PATCH bodies a Kubernetes API server accepts, applied to JSON-like dicts.

``application/json-patch+json`` (RFC 6902), ``application/merge-patch+json``
(RFC 7386) and ``application/strategic-merge-patch+json`` (Kubernetes' own).  The
first two are generic; the third needs per-type facts (which lists merge by which
key), which come through :class:`~clusters.local.apiserver.patchmeta.PatchSchema`.

The strategic merge patch follows ``k8s.io/apimachinery/pkg/util/strategicpatch``
(the server side, ``StrategicMergeMapPatch``), because ``kubectl apply``,
``kubectl patch`` and ``kubectl label``/``annotate`` build their patches for that
code, and a harness that wants to look like a real cluster must give the same
result.  Where apimachinery's result depends on Go map iteration order or on Go
typing (the real server decodes the result into a typed struct afterwards) this
module does the deterministic, schema-free equivalent; each such choice is noted
where it is made.

All functions leave their arguments untouched and return new objects, so a caller
can keep the stored object and the patch for error reporting or retries.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Hashable
from typing import Any

import jsonpatch
import jsonpointer

from clusters.local.apiserver.patchmeta import FreeForm, PatchMeta, PatchSchema

__all__ = [
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]

# Directive spellings, as apimachinery defines them.
_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"

_MISSING = object()  # "key absent", distinct from a JSON null
_DROP = object()  # "this value asked to disappear" (a new map or item with $patch: delete)


class PatchError(ValueError):
    """A patch that cannot be applied to the document.

    The message names where in the document (or which JSON patch operation) the
    problem is, because the API server returns it to the client verbatim and a
    bare "invalid patch" is useless to someone debugging a manifest.
    """


# --------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# --------------------------------------------------------------------------------------


def apply_json_patch(doc: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch.

    Operations are applied one at a time so a failure can name the operation's
    index and path; the library's own messages do not say which operation failed.
    """
    if not isinstance(ops, list):
        raise PatchError(f"a JSON patch must be a list of operations, not {_kind_name(ops)}")
    result: Any = copy.deepcopy(doc)
    # The library inserts "value" members by reference; copy so the result never
    # shares structure with the caller's patch.
    for index, op in enumerate(copy.deepcopy(ops)):
        if not isinstance(op, dict):
            raise PatchError(f"JSON patch operation {index} is not an object: {op!r}")
        label = f"JSON patch operation {index} ({op.get('op')!r} at path {op.get('path')!r})"
        try:
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise PatchError(f"{label}: test failed: {exc}") from exc
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
        ) as exc:
            raise PatchError(f"{label}: {exc}") from exc
    if not isinstance(result, dict):
        raise PatchError(f"JSON patch result must be an object, not {_kind_name(result)}")
    return result


# --------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# --------------------------------------------------------------------------------------


def apply_merge_patch(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch.

    The RFC allows a non-object patch (it replaces the whole document), but the
    result must still be a Kubernetes object, so such a patch is rejected here
    rather than producing something the server cannot store.
    """
    if not isinstance(patch, dict):
        raise PatchError(f"a JSON merge patch must be an object, not {_kind_name(patch)}")
    return _merge_patch(copy.deepcopy(doc), patch)


def _merge_patch(target: Any, patch: Any) -> Any:
    # ``target`` is always our own copy, so it is updated in place.
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------
# Kubernetes strategic merge patch
# --------------------------------------------------------------------------------------


def apply_strategic_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any], schema: PatchSchema
) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch, as the API server does.

    Semantics (those of apimachinery's ``StrategicMergeMapPatch``):

    * maps merge recursively; ``null`` deletes a key (and is ignored when absent);
    * a field with strategy ``replace`` is replaced, not merged;
    * lists are replaced whole unless the field's strategy is ``merge``; merge lists
      of objects match items by the merge key, merge lists of scalars are a union;
    * directives: ``$patch`` (``replace``/``delete``) on maps and list items,
      ``$retainKeys``, ``$setElementOrder/<field>``,
      ``$deleteFromPrimitiveList/<field>``; any other ``$``-key is an error;
    * merge-list order follows apimachinery exactly: patch items keep the patch's
      order (or ``$setElementOrder``'s), and items only on the server are slotted
      back in before a patch item only when the live list had them before it.
      So a patch that adds a brand-new item without ``$setElementOrder`` puts it
      *first*, as a real server does (``kubectl apply`` always sends the order).

    Deliberate differences from apimachinery, all in its undefined corners:

    * ``$patch: delete`` on an existing map leaves ``{}`` (as apimachinery does);
      on a map that did not exist, the key stays absent.
    * values copied from the patch (new keys, replaced lists, ``$patch: replace``)
      are cleaned of nulls and directives *recursively*, as if merged into an empty
      value, because no typed decoding follows to drop them as unknown fields.
    * keys are processed in patch order, not Go's random map order.
    """
    if not isinstance(patch, dict):
        raise PatchError(f"a strategic merge patch must be an object, not {_kind_name(patch)}")
    return _merge_map(copy.deepcopy(doc), copy.deepcopy(patch), schema, "")


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], schema: PatchSchema, path: str
) -> dict[str, Any]:
    """Merge ``patch`` into ``original`` (both our own copies; both are consumed)."""
    directive = patch.pop(_PATCH, _MISSING)
    if directive is not _MISSING:
        if directive == "replace":
            return _merge_map({}, patch, schema, path)
        if directive == "delete":
            return {}
        raise PatchError(f"unknown $patch directive {directive!r} at {_where(path)}")

    for key in patch:
        if key.startswith("$") and not (
            key == _RETAIN_KEYS or key.startswith(_SET_ORDER) or key.startswith(_DELETE_FROM)
        ):
            raise PatchError(f"unknown patch directive {key!r} at {_where(path)}")

    _apply_retain_keys(original, patch, path)

    # Ordered lists first: they consume their field from the patch, so the main
    # loop below does not merge them a second time.
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        _apply_set_element_order(original, patch, key, schema, path)

    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            _delete_from_primitive_list(original, key, value, path)
            continue
        if value is None:
            original.pop(key, None)
            continue
        meta = schema.meta(key)
        merged = _merge_value(original.get(key, _MISSING), value, meta, _join(path, key))
        if merged is _DROP:
            original.pop(key, None)
        else:
            original[key] = merged
    return original


def _merge_value(current: Any, value: Any, meta: PatchMeta, path: str) -> Any:
    """The new value of one field: merged when both sides are maps or lists."""
    if isinstance(current, dict) and isinstance(value, dict):
        if "replace" in meta.strategies:
            return _fresh(value, meta, path)
        return _merge_map(current, value, _child(meta), path)
    if isinstance(current, list) and isinstance(value, list) and "merge" in meta.strategies:
        return _merge_list(current, value, meta, path)
    # Absent, a different kind, a scalar, or an atomic list: the patch value wins.
    return _fresh(value, meta, path)


def _fresh(value: Any, meta: PatchMeta, path: str) -> Any:
    """A patch value taken without anything to merge with, cleaned of directives.

    apimachinery's ``removeDirectives`` drops any new map that carries ``$patch``;
    here ``$patch: replace`` keeps the map (without the directive), which is what
    the client asked for, and ``$patch: delete`` drops it.
    """
    if isinstance(value, dict):
        directive = value.get(_PATCH, _MISSING)
        if directive == "delete":
            return _DROP
        if directive not in (_MISSING, "replace"):
            raise PatchError(f"unknown $patch directive {directive!r} at {_where(path)}")
        return _merge_map({}, value, _child(meta), path)
    if isinstance(value, list):
        if "merge" in meta.strategies:
            return _merge_list([], value, meta, path)
        item_meta = PatchMeta(child=meta.child)
        items = [_fresh(item, item_meta, f"{path}[{i}]") for i, item in enumerate(value)]
        return [item for item in items if item is not _DROP]
    return value


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    """``$retainKeys``: keep only the listed keys of the live map.

    This is how ``kubectl apply`` clears a union's other members, e.g. switching a
    Deployment's ``spec.strategy`` from RollingUpdate to Recreate must also drop
    ``rollingUpdate``.  Like apimachinery, every non-null key the patch sets must
    be listed, or the patch contradicts itself.
    """
    retain = patch.pop(_RETAIN_KEYS, _MISSING)
    if retain is _MISSING:
        return
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise PatchError(f"$retainKeys at {_where(path)} must be a list of field names")
    keep = set(retain)
    for key, value in patch.items():
        if value is None or key.startswith(_SET_ORDER) or key.startswith(_DELETE_FROM):
            continue
        if key not in keep:
            raise PatchError(
                f"field {key!r} at {_where(path)} is set by the patch but not listed in "
                f"$retainKeys {retain!r}"
            )
    for key in [k for k in original if k not in keep]:
        del original[key]


def _delete_from_primitive_list(original: dict[str, Any], key: str, values: Any, path: str) -> None:
    """``$deleteFromPrimitiveList/<field>``: remove every occurrence of the values.

    Applies whatever the field's strategy (apimachinery does the same), and is a
    no-op when the list is absent: deleting from nothing must not create it.
    """
    field = key[len(_DELETE_FROM) :]
    if not field:
        raise PatchError(f"{key!r} at {_where(path)} does not name a field")
    if not isinstance(values, list):
        raise PatchError(f"{key} at {_where(path)} must be a list, not {_kind_name(values)}")
    current = original.get(field)
    if not isinstance(current, list):
        return
    doomed = {_ident(v) for v in values}
    original[field] = [item for item in current if _ident(item) not in doomed]


def _apply_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], key: str, schema: PatchSchema, path: str
) -> None:
    """``$setElementOrder/<field>``: merge the field, then order it as listed.

    Mirrors apimachinery's ``mergePatchIntoOriginal``: items named in the order
    list take that order; items only on the server keep their live order and are
    interleaved by their live position (see :func:`_normalize_order`); items named
    but present nowhere are ignored.  ``kubectl apply`` sends this for every merge
    list it touches, so it decides the final order in practice.
    """
    order = patch.pop(key)
    field = key[len(_SET_ORDER) :]
    fpath = _join(path, field)
    if not field:
        raise PatchError(f"{key!r} at {_where(path)} does not name a field")
    if not isinstance(order, list):
        raise PatchError(f"{key} at {_where(path)} must be a list, not {_kind_name(order)}")
    meta = schema.meta(field)
    merge_key = meta.merge_key if "merge" in meta.strategies else None

    live = original.get(field, _MISSING)
    if live is not _MISSING and not isinstance(live, list):
        live = _MISSING  # a non-list is replaced by the patch list, like any kind change
    wanted = patch.pop(field, _MISSING)
    if wanted is not _MISSING and not isinstance(wanted, list):
        raise PatchError(f"{fpath} must be a list when {key} is given")

    order_key = _merge_key_fn(merge_key, fpath) if merge_key else _ident
    if wanted is not _MISSING:
        _check_order_consistent(wanted, order, merge_key, order_key, key, fpath)

    if live is not _MISSING and wanted is not _MISSING:
        merged = _merge_value(live, wanted, meta, fpath)
    elif wanted is not _MISSING:
        merged = _fresh(wanted, meta, fpath)
    elif live is not _MISSING:
        merged = live
    else:
        return

    live_list: list[Any] = live if live is not _MISSING else []
    if merged and _orderable(merged, merge_key):
        named = {order_key(o) for o in order}
        in_order = [item for item in merged if order_key(item) in named]
        server_only = [item for item in merged if order_key(item) not in named]
        merged = _normalize_order(in_order, server_only, order, live_list, order_key)
    original[field] = merged


def _orderable(items: list[Any], merge_key: str | None) -> bool:
    # Lists of objects without a merge key (atomic lists) have no identity to
    # order by; apimachinery never receives $setElementOrder for them.
    if merge_key:
        return all(isinstance(item, dict) for item in items)
    return not any(isinstance(item, (dict, list)) for item in items)


def _check_order_consistent(
    wanted: list[Any],
    order: list[Any],
    merge_key: str | None,
    key_fn: Callable[[Any], Hashable],
    directive: str,
    path: str,
) -> None:
    """The patch list must list its items in the same relative order as the directive.

    A mismatch means the client computed the patch inconsistently; apimachinery
    rejects it rather than guess which order was meant.
    """
    if not wanted or not order:
        return
    items = [
        item for item in wanted if not (merge_key and isinstance(item, dict) and _PATCH in item)
    ]
    i = j = 0
    while i < len(items) and j < len(order):
        if key_fn(items[i]) == key_fn(order[j]):
            i += 1
        j += 1
    if i < len(items):
        raise PatchError(
            f"the order of the patch list at {_where(path)} does not match {directive}: "
            f"{_brief(items[i])} is missing from it or out of order"
        )


def _merge_list(original: list[Any], patch: list[Any], meta: PatchMeta, path: str) -> list[Any]:
    """Merge two lists of a field whose strategy is ``merge``."""
    if not original and not patch:
        return []
    kind = _element_kind(original + patch, path)
    if kind != "object":
        merged = _unique(original + patch)
        named = {_ident(v) for v in patch}
        in_patch = [v for v in merged if _ident(v) in named]
        server_only = [v for v in merged if _ident(v) not in named]
        return _normalize_order(in_patch, server_only, patch, original, _ident)

    merge_key = meta.merge_key
    if not merge_key:
        raise PatchError(f"cannot merge the list at {_where(path)}: its schema has no merge key")
    child = _child(meta)
    key_of = _merge_key_fn(merge_key, path)
    for i, item in enumerate(original):
        if merge_key not in item:
            _missing_merge_key(item, merge_key, path, i)

    # Special items first: deletions shrink the live list, a replace swaps it.
    plain: list[dict[str, Any]] = []
    replace = False
    for i, item in enumerate(patch):
        directive = item.get(_PATCH, _MISSING)
        if directive is _MISSING:
            if merge_key not in item:
                _missing_merge_key(item, merge_key, path, i)
            plain.append(item)
        elif directive == "delete":
            if merge_key not in item:
                _missing_merge_key(item, merge_key, path, i)
            doomed = key_of(item)
            original = [o for o in original if key_of(o) != doomed]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError(
                f"$patch: merge is not supported in the list at {_where(path)} "
                "(lists with strategy merge already merge)"
            )
        else:
            raise PatchError(
                f"unknown $patch directive {directive!r} in the list at {_where(path)}"
            )
    if replace:
        # The remaining items are the whole new list, in their given order.
        return [_merge_map({}, item, child, _item_path(path, merge_key, item)) for item in plain]

    live_order = list(original)
    merged = list(original)
    for item in plain:
        ipath = _item_path(path, merge_key, item)
        wanted = key_of(item)
        for i, existing in enumerate(merged):
            if key_of(existing) == wanted:
                merged[i] = _merge_map(existing, item, child, ipath)
                break
        else:
            merged.append(_merge_map({}, item, child, ipath))

    named = {key_of(item) for item in plain}
    in_patch, server_only = [], []
    for item in merged:
        if merge_key not in item:  # the patch nulled the merge key itself
            raise PatchError(f"the patch removes merge key {merge_key!r} from {_where(path)}")
        (in_patch if key_of(item) in named else server_only).append(item)
    return _normalize_order(in_patch, server_only, plain, live_order, key_of)


def _normalize_order(
    in_patch: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    live_order: list[Any],
    key_fn: Callable[[Any], Hashable],
) -> list[Any]:
    """Order a merged list the way apimachinery's ``normalizeElementOrder`` does.

    Patch items are sorted by ``patch_order``, server-only items by the live list,
    then the two are zipped: a server-only item goes first only when both it and
    the next patch item are in the live list and it came earlier there.  (Items
    missing from their order list, which apimachinery never produces, go last.)
    """
    in_patch = _sort_by(in_patch, patch_order, key_fn)
    server_only = _sort_by(server_only, live_order, key_fn)
    live_pos = _positions(live_order, key_fn)
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(in_patch):
        left = live_pos.get(key_fn(server_only[i]))
        right = live_pos.get(key_fn(in_patch[j]))
        if left is not None and right is not None and left < right:
            result.append(server_only[i])
            i += 1
        else:
            result.append(in_patch[j])
            j += 1
    return result + server_only[i:] + in_patch[j:]


def _sort_by(items: list[Any], order: list[Any], key_fn: Callable[[Any], Hashable]) -> list[Any]:
    pos = _positions(order, key_fn)
    known = [item for item in items if key_fn(item) in pos]
    unknown = [item for item in items if key_fn(item) not in pos]
    known.sort(key=lambda item: pos[key_fn(item)])
    return known + unknown


def _positions(order: list[Any], key_fn: Callable[[Any], Hashable]) -> dict[Hashable, int]:
    # First occurrence wins, like apimachinery's linear ``index``.
    pos: dict[Hashable, int] = {}
    for i, item in enumerate(order):
        pos.setdefault(key_fn(item), i)
    return pos


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Hashable] = set()
    result = []
    for value in values:
        ident = _ident(value)
        if ident not in seen:
            seen.add(ident)
            result.append(value)
    return result


def _element_kind(items: list[Any], path: str) -> str:
    """The one kind of element a merge list holds; mixed or nested lists are errors."""
    kinds = set()
    for item in items:
        if isinstance(item, list):
            raise PatchError(f"cannot merge the list at {_where(path)}: it contains lists")
        kinds.add(_kind_name(item))
    if len(kinds) > 1:
        raise PatchError(
            f"cannot merge the list at {_where(path)}: its items are of different kinds "
            f"({', '.join(sorted(kinds))})"
        )
    return kinds.pop()


def _merge_key_fn(merge_key: str, path: str) -> Callable[[Any], Hashable]:
    def key_of(item: Any) -> Hashable:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(
                f"{_brief(item)} in the list at {_where(path)} has no merge key {merge_key!r}"
            )
        return _ident(item[merge_key])

    return key_of


def _missing_merge_key(item: Any, merge_key: str, path: str, index: int) -> None:
    raise PatchError(
        f"item {_brief(item)} at {path}[{index}] does not contain the declared merge key "
        f"{merge_key!r}"
    )


def _ident(value: Any) -> Hashable:
    """A hashable identity with JSON equality: 1 == 1.0, but True != 1 and "1" != 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null", None)
    return ("json", json.dumps(value, sort_keys=True))


def _kind_name(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _child(meta: PatchMeta) -> PatchSchema:
    return meta.child if meta.child is not None else FreeForm()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item_path(path: str, merge_key: str, item: dict[str, Any]) -> str:
    value = item.get(merge_key)
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"{path}[{merge_key}={shown}]"


def _where(path: str) -> str:
    return path or "the top level"


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
