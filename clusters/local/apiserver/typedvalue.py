"""The four walks server-side apply makes over an object and its shape: the fields a
value sets, what changed between two values, merging an applied configuration into
a live object, and removing a set of fields.

Each follows the walker of the same name in ``sigs.k8s.io/structured-merge-diff/v6/
typed`` (``tofieldset.go``, ``compare.go``, ``merge.go``, ``remove.go``) closely,
including its corner cases (an empty map or list on both sides is one leaf value;
``null`` on a granular map or list is an empty one; duplicate items in a live list
are tolerated and owned as one), because which paths come out decides ownership,
conflicts and what a later apply removes.  Values are plain JSON data; nothing here
does I/O or changes its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .applyschema import DEDUCED, DEDUCED_SHAPE, LIST, MAP, Shape
from .fieldset import FieldSet, PathElement, field, key_element, path_string, value_element


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # "no value here", distinct from a JSON null

_LEAF = "leaf"


class TypedError(ValueError):
    """A value that does not fit its shape (an associative-list item without its key,
    a duplicate item in an applied configuration); the message names the path(s)."""


def _kind(shape: Shape, value: Any) -> str:
    """How a present value is walked: as a granular map, a granular list, or a leaf."""
    if shape.kind == DEDUCED:
        return MAP if isinstance(value, dict) else _LEAF
    if shape.atomic:
        return _LEAF
    if shape.kind == MAP:
        return MAP if value is None or isinstance(value, dict) else _LEAF
    if shape.kind == LIST:
        return LIST if value is None or isinstance(value, list) else _LEAF
    return _LEAF


def _pair_kind(shape: Shape, lhs: Any, rhs: Any) -> str:
    kinds = {_kind(shape, v) for v in (lhs, rhs) if v is not MISSING}
    return kinds.pop() if len(kinds) == 1 else _LEAF


def _element_shape(shape: Shape) -> Shape:
    return shape.element if shape.element is not None else DEDUCED_SHAPE


def child_shape(shape: Shape, pe: PathElement) -> Shape:
    return shape.child(pe[1]) if pe[0] == "f" else _element_shape(shape)


def equal(a: Any, b: Any) -> bool:
    """JSON equality of two values (``1 == 1.0``).

    Python's own ``==`` decides, in C: objects are compared whole on every write.
    Where it differs from JSON (``True == 1``) it matters only for a value that
    switches between a boolean and a number, which a typed field cannot do; for a
    scalar compared alone the difference is checked."""
    if isinstance(a, bool) is not isinstance(b, bool):
        return False
    return a == b


def item_element(shape: Shape, item: Any, where: str) -> PathElement:
    """The path element of one item of a granular list (``listItemToPathElement``)."""
    if shape.keys:
        if not isinstance(item, dict):
            raise TypedError(f"{where}: associative list with keys may not have "
                             f"{'a null' if item is None else 'non-map'} element")
        pairs = {}
        for key in shape.keys:
            if key in item:
                pairs[key] = item[key]
            elif key in shape.key_defaults:
                pairs[key] = shape.key_defaults[key]
        if not pairs:
            raise TypedError(f"{where}: associative list with keys has an element that omits "
                             f"all key fields {list(shape.keys)} (and doesn't have default "
                             "values for any key fields)")
        return key_element(pairs)
    if isinstance(item, (dict, list)) or item is None:
        what = "a map" if isinstance(item, dict) else "a list" if isinstance(item, list) \
            else "an explicit null"
        raise TypedError(f"{where}: associative list without keys has an element that's {what}")
    return value_element(item)


# -- the fields a value sets --------------------------------------------------------------


def to_field_set(value: Any, shape: Shape, *, allow_duplicates: bool = True) -> FieldSet:
    """Every path ``value`` sets (``TypedValue.ToFieldSet``).

    Leaves are members, and so are list items and map entries (not struct fields,
    which are implied by what is below them).  An applied configuration is converted
    with ``allow_duplicates=False``: two items with one key are an error there."""
    errors: list[str] = []
    out, _ = _to_set(value, shape, "", errors, allow_duplicates)
    if errors:
        raise TypedError("\n".join(errors))
    return out or FieldSet()


def _to_set(value: Any, shape: Shape, where: str, errors: list[str],
            allow_duplicates: bool) -> tuple[FieldSet | None, bool]:
    """(set below this value, whether this value is itself a member)."""
    kind = _kind(shape, value)
    if kind == _LEAF:
        return None, True
    out = FieldSet()
    if kind == LIST:
        element = _element_shape(shape)
        items: dict[PathElement, Any] = {}
        seen_twice: set[PathElement] = set()
        for i, item in enumerate(value or ()):
            try:
                pe = item_element(shape, item, f"{where}[{i}]")
            except TypedError as exc:
                errors.append(str(exc))
                continue
            if pe in items:
                if not allow_duplicates and pe not in seen_twice:
                    errors.append(f"{where or '.'}: duplicate entries for key "
                                  f"{path_string((pe,))}")
                seen_twice.add(pe)
            else:
                items[pe] = item
        for pe, item in items.items():
            out.members.add(pe)
            if pe in seen_twice:
                continue  # duplicates are owned as one item, not field by field
            below, _ = _to_set(item, element, where + path_string((pe,)), errors,
                               allow_duplicates)
            if below is not None:
                out.attach(pe, below)
        return out, False
    for key, item in (value or {}).items():
        pe = field(key)
        below, member = _to_set(item, shape.child(key), f"{where}.{key}", errors,
                                allow_duplicates)
        if below is not None:
            out.attach(pe, below)
        if member or item is None or item == {} or not shape.declares(key):
            out.members.add(pe)
    return out, False


# -- what changed ---------------------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet
    modified: FieldSet
    removed: FieldSet


def compare(lhs: Any, rhs: Any, shape: Shape) -> Comparison:
    """The paths ``rhs`` adds, modifies and removes relative to ``lhs``
    (``TypedValue.Compare``); each path is in at most one of the three sets."""
    added, modified, removed, _ = _compare(lhs, rhs, shape)
    return Comparison(added or FieldSet(), modified or FieldSet(), removed or FieldSet())


_NONE3: tuple[None, None, None] = (None, None, None)


def _compare(lhs: Any, rhs: Any, shape: Shape) -> tuple[Any, Any, Any, str | None]:
    if lhs is MISSING:
        return None if rhs is MISSING else _every_path(rhs, shape), None, None, "added"
    if rhs is MISSING:
        return None, None, _every_path(lhs, shape), "removed"
    if equal(lhs, rhs):
        # Most of an object is the same before and after a write: one deep equality
        # check (in C for the common case) instead of a walk.
        return (*_NONE3, None)
    kind = _pair_kind(shape, lhs, rhs)
    if kind == MAP:
        lmap = lhs if isinstance(lhs, dict) else {}
        rmap = rhs if isinstance(rhs, dict) else {}
        if lmap or rmap:
            return _compare_children(
                ((field(k), lmap.get(k, MISSING), rmap.get(k, MISSING), shape.child(k))
                 for k in {**lmap, **rmap}), lhs, rhs)
    elif kind == LIST:
        litems = lhs if isinstance(lhs, list) else []
        ritems = rhs if isinstance(rhs, list) else []
        if litems or ritems:
            return _compare_lists(litems, ritems, shape, lhs, rhs)
    # A leaf: a scalar, an atomic value, or empty on both sides.
    if lhs is MISSING:
        return (*_NONE3, "added")
    if rhs is MISSING:
        return (*_NONE3, "removed")
    return (*_NONE3, None if equal(lhs, rhs) else "modified")


def _every_path(value: Any, shape: Shape) -> FieldSet | None:
    """What comparing ``value`` with nothing finds below it: every path, containers
    included (a duplicated list item counts once, as itself).  None for a leaf."""
    kind = _kind(shape, value)
    if kind == MAP and value:
        out = FieldSet()
        for key, item in value.items():
            pe = field(key)
            out.members.add(pe)
            below = _every_path(item, shape.child(key))
            if below is not None:
                out.children[pe] = below
        return out
    if kind == LIST and value:
        element = _element_shape(shape)
        out = FieldSet()
        counts: dict[PathElement, int] = {}
        items: dict[PathElement, Any] = {}
        for i, item in enumerate(value):
            pe = item_element(shape, item, f"[{i}]")
            counts[pe] = counts.get(pe, 0) + 1
            items.setdefault(pe, item)
        for pe, item in items.items():
            out.members.add(pe)
            below = _every_path(item, element) if counts[pe] == 1 else None
            if below is not None:
                out.children[pe] = below
        return out
    return None


def _container_status(lhs: Any, rhs: Any) -> str | None:
    return "added" if lhs is MISSING else "removed" if rhs is MISSING else None


def _compare_children(children: Any, lhs: Any, rhs: Any) -> tuple[Any, Any, Any, str | None]:
    added, modified, removed = FieldSet(), FieldSet(), FieldSet()
    for pe, left, right, child in children:
        a, m, r, status = _compare(left, right, child)
        _collect(pe, a, m, r, status, added, modified, removed)
    return added, modified, removed, _container_status(lhs, rhs)


def _collect(pe: PathElement, a: Any, m: Any, r: Any, status: str | None,
             added: FieldSet, modified: FieldSet, removed: FieldSet) -> None:
    for below, into in ((a, added), (m, modified), (r, removed)):
        if below is not None:
            into.attach(pe, below)
    if status == "added":
        added.members.add(pe)
    elif status == "removed":
        removed.members.add(pe)
    elif status == "modified":
        modified.members.add(pe)


def _index(items: list[Any], shape: Shape) -> dict[PathElement, list[Any]]:
    out: dict[PathElement, list[Any]] = {}
    for i, item in enumerate(items):
        out.setdefault(item_element(shape, item, f"[{i}]"), []).append(item)
    return out


def _compare_lists(litems: list[Any], ritems: list[Any], shape: Shape, lhs: Any,
                   rhs: Any) -> tuple[Any, Any, Any, str | None]:
    element = _element_shape(shape)
    left, right = _index(litems, shape), _index(ritems, shape)
    added, modified, removed = FieldSet(), FieldSet(), FieldSet()
    for pe in {**left, **right}:
        lvals, rvals = left.get(pe, []), right.get(pe, [])
        if len(lvals) <= 1 and len(rvals) <= 1:
            a, m, r, status = _compare(lvals[0] if lvals else MISSING,
                                       rvals[0] if rvals else MISSING, element)
            _collect(pe, a, m, r, status, added, modified, removed)
        elif len(lvals) >= 2 and len(rvals) >= 2:
            if not equal(lvals, rvals):
                modified.members.add(pe)
        elif len(lvals) >= 2:  # duplicates gone
            if rvals:
                a, m, r, status = _compare(MISSING, rvals[0], element)
                _collect(pe, a, m, r, status, added, modified, removed)
            removed.members.add(pe)
        else:  # duplicates appeared
            if lvals:
                a, m, r, status = _compare(lvals[0], MISSING, element)
                _collect(pe, a, m, r, status, added, modified, removed)
            added.members.add(pe)
    return added, modified, removed, _container_status(lhs, rhs)


# -- merging an applied configuration ---------------------------------------------------------


def merge(lhs: Any, rhs: Any, shape: Shape) -> Any:
    """``rhs`` (an applied configuration) merged into ``lhs`` (the live object)
    (``TypedValue.Merge``): granular maps and lists merge, everything else is taken
    from ``rhs``.  Associative lists keep the live order for live items and put new
    items where the configuration puts them, as structured-merge-diff does."""
    if rhs is MISSING:
        return lhs
    if lhs is MISSING:
        return rhs
    kind = _pair_kind(shape, lhs, rhs)
    if kind == MAP:
        lmap = lhs if isinstance(lhs, dict) else {}
        rmap = rhs if isinstance(rhs, dict) else {}
        if not lmap and not rmap:
            return rhs
        out = {}
        for key in {**lmap, **rmap}:
            merged = merge(lmap.get(key, MISSING), rmap.get(key, MISSING), shape.child(key))
            if merged is not MISSING:
                out[key] = merged
        return out
    if kind == LIST:
        litems = lhs if isinstance(lhs, list) else []
        ritems = rhs if isinstance(rhs, list) else []
        if not litems and not ritems:
            return rhs
        return _merge_lists(litems, ritems, shape)
    return rhs


_DUPLICATE: Any = object()


def _merge_lists(litems: list[Any], ritems: list[Any], shape: Shape) -> list[Any]:
    element = _element_shape(shape)
    rpes = [item_element(shape, item, f"[{i}]") for i, item in enumerate(ritems)]
    rvals = dict(zip(rpes, ritems, strict=True))
    lpes = []
    lvals: dict[PathElement, Any] = {}
    for i, item in enumerate(litems):
        pe = item_element(shape, item, f"[{i}]")
        lvals[pe] = _DUPLICATE if pe in lvals else item
        lpes.append(pe)

    def live(pe: PathElement) -> Any:
        found = lvals.get(pe, MISSING)
        return MISSING if found is _DUPLICATE else found

    shared = [pe for pe in rpes if pe in lvals]
    next_shared = shared.pop(0) if shared else None
    done: set[PathElement] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                done.add(pe)
                out.append(merge(live(pe), rvals[pe], element))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rvals and next_shared is not None and next_shared != pe:
                li += 1  # a shared item, but not the one due in this round
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in rvals:
                out.append(litems[li])
                li += 1
                continue
            if pe in done:
                li += 1
        if ri < len(rpes):
            pe = rpes[ri]
            done.add(pe)
            out.append(merge(live(pe), rvals[pe], element))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# -- removing fields ------------------------------------------------------------------------


def remove_items(value: Any, doomed: FieldSet, shape: Shape, *, keep_emptied: bool) -> Any:
    """``value`` without the paths in ``doomed`` (``TypedValue.RemoveItems``).

    A map or list emptied by the removal stays as ``{}``/``[]`` when
    ``keep_emptied`` (custom resources, stored as JSON), and is dropped otherwise (a
    built-in kind, whose Go type omits empty fields on the real server)."""
    out = _remove(value, doomed, shape, keep_emptied)
    return {} if out is MISSING else out


def _remove(value: Any, doomed: FieldSet, shape: Shape, keep: bool) -> Any:
    kind = _kind(shape, value)
    if kind == _LEAF:
        return MISSING if isinstance(value, (dict, list)) else value
    if not value:
        return MISSING
    if kind == LIST:
        element = _element_shape(shape)
        items: list[Any] = []
        touched = False
        for i, item in enumerate(value):
            pe = item_element(shape, item, f"[{i}]")
            if pe in doomed.members:
                continue
            below = doomed.children.get(pe)
            if below is not None:
                touched = True
                # An emptied item stays, as {} (structured-merge-diff keeps it too).
                item = _emptied(item, _remove(item, below, element, keep), True)
            items.append(item)
        return items if items or (touched and keep) else MISSING
    out: dict[str, Any] = {}
    touched = False
    for key, item in value.items():
        pe = field(key)
        if pe in doomed.members:
            continue
        below = doomed.children.get(pe)
        if below is not None:
            touched = True
            item = _emptied(item, _remove(item, below, shape.child(key), keep), keep)
            if item is MISSING:
                continue
        out[key] = item
    return out if out or (touched and keep) else MISSING


def _emptied(before: Any, after: Any, keep: bool) -> Any:
    if after is not MISSING:
        return after
    if not keep:
        return MISSING
    if isinstance(before, dict):
        return {}
    if isinstance(before, list):
        return []
    return None


def ensure_named_fields_are_members(fields: FieldSet, shape: Shape) -> FieldSet:
    """``fields`` plus every declared struct field on the way to one of its paths
    (``Set.EnsureNamedFieldsAreMembers``), so removing a set also removes the
    struct fields it leaves empty."""
    out = FieldSet()
    out.members = set(fields.members)
    for pe, below in fields.children.items():
        if pe[0] == "f" and shape.kind == MAP and shape.declares(pe[1]):
            out.members.add(pe)
        out.children[pe] = ensure_named_fields_are_members(below, child_shape(shape, pe))
    return out
