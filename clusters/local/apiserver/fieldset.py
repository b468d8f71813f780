"""Sets of field paths, the unit of ownership in server-side apply.

A field path names one place in an object: a field of a map (``f:name``), an item
of an associative list by its key fields (``k:{"name":"nginx"}``), an item of a set
by its value (``v:"a"``), or an item of a list by position (``i:0``).  A set of them
is kept as a trie, like ``sigs.k8s.io/structured-merge-diff/v6/fieldpath.Set``: each
node has *members* (paths that end here) and *children* (paths that go on), so the
``FieldsV1`` wire format of ``metadata.managedFields`` maps onto it directly — a key
whose value is ``{}`` is a member, a nested object is a child, and a ``"."`` entry
inside a child says that the child is a member too.

Sets are treated as values: the operations return new sets and never change their
arguments, so one set can be shared between managers and comparisons safely.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson

# A path element is a small hashable tuple:
#   ("f", name)                              a field of a map
#   ("k", ((key, json), (key, json), ...))   an associative-list item, keys sorted by name
#   ("v", json)                              a set item, by its value (compact JSON)
#   ("i", index)                             a list item by position
# Values inside keys and set items are kept as compact JSON text, which gives them
# hashing and JSON equality ("a" != 1) for free.
PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]

_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


class FieldsDoc(dict):  # type: ignore[type-arg]
    """A ``fieldsV1`` document this server wrote: immutable, so a stored object and
    its next version share it and deep copies of objects skip it (managedFields
    would otherwise double the cost of copying every object on every write)."""

    __slots__ = ()

    def __deepcopy__(self, memo: Any) -> FieldsDoc:
        return self

    def __copy__(self) -> FieldsDoc:
        return self

    def _immutable(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a fieldsV1 document written by the server cannot be changed in "
                        "place; replace the managedFields entry instead")

    __setitem__ = __delitem__ = _immutable  # type: ignore[assignment]
    pop = popitem = clear = update = setdefault = _immutable  # type: ignore[assignment]
    __ior__ = _immutable  # type: ignore[assignment]


_EMPTY_DOC = FieldsDoc()


class FieldsError(ValueError):
    """A ``fieldsV1`` document that is not a valid set of field paths."""


def field(name: str) -> PathElement:
    return ("f", name)


def value_json(value: Any) -> str:
    """Compact JSON, as structured-merge-diff writes values into path elements."""
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def key_element(pairs: dict[str, Any]) -> PathElement:
    return ("k", tuple(sorted((k, value_json(v)) for k, v in pairs.items())))


def value_element(value: Any) -> PathElement:
    return ("v", value_json(value))


def _order(pe: PathElement) -> tuple[int, Any]:
    # structured-merge-diff orders fields before keys before values before indexes.
    return (_RANK[pe[0]], pe[1])


class FieldSet:
    """A set of field paths, as a trie."""

    __slots__ = ("children", "members")

    def __init__(self) -> None:
        self.members: set[PathElement] = set()
        self.children: dict[PathElement, FieldSet] = {}

    # -- building (only on a set the caller just made) -----------------------------

    def insert(self, path: Path) -> None:
        node = self
        for pe in path[:-1]:
            child = node.children.get(pe)
            if child is None:
                child = node.children[pe] = FieldSet()
            node = child
        if path:
            node.members.add(path[-1])

    def attach(self, pe: PathElement, child: FieldSet) -> None:
        """Add ``child`` under ``pe`` (merging with what is there); empty sets are dropped."""
        if child.empty():
            return
        mine = self.children.get(pe)
        self.children[pe] = child if mine is None else mine.union(child)

    @classmethod
    def of(cls, *paths: Path) -> FieldSet:
        out = cls()
        for p in paths:
            out.insert(p)
        return out

    # -- queries -------------------------------------------------------------------

    def empty(self) -> bool:
        # Children are never kept empty, so a node with neither is the empty set.
        return not self.members and not self.children

    def paths(self) -> Iterator[Path]:
        """Every path, in structured-merge-diff's order: a node's members, then its
        children depth first (the order conflicts are reported in)."""
        for pe in sorted(self.members, key=_order):
            yield (pe,)
        for pe in sorted(self.children, key=_order):
            for rest in self.children[pe].paths():
                yield (pe, *rest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return self.members == other.members and self.children == other.children

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self.paths()]})"

    # -- algebra (new sets; arguments untouched) -----------------------------------------

    def union(self, other: FieldSet) -> FieldSet:
        if other.empty():
            return self
        if self.empty():
            return other
        out = FieldSet()
        out.members = self.members | other.members
        out.children = dict(self.children)
        for pe, child in other.children.items():
            mine = out.children.get(pe)
            out.children[pe] = child if mine is None else mine.union(child)
        return out

    def difference(self, other: FieldSet) -> FieldSet:
        """Paths of ``self`` not in ``other`` (exact paths: a member of ``other`` does
        not take the paths below it away)."""
        if other.empty() or self.empty():
            return self
        out = FieldSet()
        out.members = self.members - other.members
        same = len(out.members) == len(self.members)
        for pe, child in self.children.items():
            theirs = other.children.get(pe)
            rest = child if theirs is None else child.difference(theirs)
            same = same and rest is child
            if not rest.empty():
                out.children[pe] = rest
        return self if same else out  # unchanged: the same set, so callers can tell

    def intersection(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        if self.empty() or other.empty():
            return out
        out.members = self.members & other.members
        for pe, child in self.children.items():
            theirs = other.children.get(pe)
            if theirs is not None:
                both = child.intersection(theirs)
                if not both.empty():
                    out.children[pe] = both
        return out

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Like ``difference``, but a member of ``other`` also removes every path below
        it (structured-merge-diff's ``RecursiveDifference``, used to ignore a subtree)."""
        if other.empty() or self.empty():
            return self
        out = FieldSet()
        out.members = self.members - other.members
        for pe, child in self.children.items():
            if pe in other.members:
                continue
            theirs = other.children.get(pe)
            rest = child if theirs is None else child.recursive_difference(theirs)
            if not rest.empty():
                out.children[pe] = rest
        return out

    # -- the FieldsV1 wire format ------------------------------------------------------

    def to_fields_v1(self) -> FieldsDoc:
        out: dict[str, Any] = {}
        keys = sorted(self.members | self.children.keys(), key=_order)
        for pe in keys:
            child = self.children.get(pe)
            if child is None:
                out[serialize_element(pe)] = _EMPTY_DOC
            else:
                inner = child.to_fields_v1()
                if pe in self.members:
                    inner = FieldsDoc({".": _EMPTY_DOC, **inner})
                out[serialize_element(pe)] = inner
        return FieldsDoc(out)

    @classmethod
    def from_fields_v1(cls, doc: Any) -> FieldSet:
        if not isinstance(doc, dict):
            raise FieldsError(f"fieldsV1 must be an object, not {type(doc).__name__}")
        out = cls()
        for key, inner in doc.items():
            if key == ".":
                continue
            pe = deserialize_element(key)
            if not isinstance(inner, dict):
                raise FieldsError(f"fieldsV1 entry {key!r} must be an object")
            if not inner or "." in inner:
                out.members.add(pe)
            child = cls.from_fields_v1(inner)
            if not child.empty():
                out.children[pe] = child
        return out


# Path elements repeat across objects and writes (f:spec, f:name, k:{"name":"app"}):
# their wire spellings are memoized both ways, within a bound.
_SPELLED: dict[PathElement, str] = {}
_PARSED: dict[str, PathElement] = {}
_MEMO_SIZE = 50_000


def _memo(cache: dict[Any, Any], key: Any, make: Callable[[Any], Any]) -> Any:
    value = cache.get(key)
    if value is None:
        if len(cache) >= _MEMO_SIZE:
            cache.clear()
        value = cache[key] = make(key)
    return value


def serialize_element(pe: PathElement) -> str:
    return _memo(_SPELLED, pe, _spell)  # type: ignore[no-any-return]


def deserialize_element(text: str) -> PathElement:
    return _memo(_PARSED, text, _parse)  # type: ignore[no-any-return]


def _spell(pe: PathElement) -> str:
    kind, body = pe
    if kind == "f":
        return "f:" + body
    if kind == "k":
        return "k:{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in body) + "}"
    if kind == "v":
        return "v:" + body
    return f"i:{body}"


def _parse(text: str) -> PathElement:
    kind, sep, body = text.partition(":")
    if not sep or kind not in _RANK:
        raise FieldsError(f"{text!r} is not a field path element (f:, k:, v: or i:)")
    if kind == "f":
        return ("f", body)
    if kind == "i":
        try:
            return ("i", int(body))
        except ValueError:
            raise FieldsError(f"{text!r}: the index is not an integer") from None
    try:
        decoded = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FieldsError(f"{text!r}: {exc}") from None
    if kind == "k":
        if not isinstance(decoded, dict) or not decoded:
            raise FieldsError(f"{text!r}: a key element must be a non-empty JSON object")
        return key_element(decoded)
    return value_element(decoded)


def _go_string(value: Any) -> str:
    """A value as structured-merge-diff prints it in a path (Go's ``%q``/``%v``)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{k}={_go_string(v)}" for k, v in value.items())
    return str(value)


def element_string(pe: PathElement) -> str:
    kind, body = pe
    if kind == "f":
        return "." + body
    if kind == "k":
        return "[" + ",".join(f"{k}={_go_string(json.loads(v))}" for k, v in body) + "]"
    if kind == "v":
        return f"[={_go_string(json.loads(body))}]"
    return f"[{body}]"


def path_string(path: Path) -> str:
    """``.spec.containers[name="nginx"].image``: how the API server names a field in a
    conflict."""
    return "".join(element_string(pe) for pe in path)
