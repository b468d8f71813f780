"""Server-side apply and field ownership (``metadata.managedFields``), as pure
functions over objects.

This is the API server's field manager (``k8s.io/apimachinery/pkg/util/managedfields/
internal``) over structured-merge-diff's ``merge.Updater``:

* every write records who set what: a create, update or non-apply patch gives its
  manager (``?fieldManager=``, else the User-Agent up to the first ``/``) an
  ``Update`` entry owning the fields it changed, and takes those fields away from
  the other managers (``record_update``);
* an apply (``application/apply-patch+yaml``) merges the configuration into the
  live object, gives its manager an ``Apply`` entry owning exactly the fields the
  configuration sets, removes fields the same manager applied before and no longer
  applies (unless another manager owns them), and refuses to change a field another
  manager owns (409 Conflict listing each field and manager) unless ``force``, which
  takes the field over (``apply``).

The rules of the real field manager are kept: entries are keyed by manager,
operation, subresource and (for updates only) apiVersion; ``apiVersion``, ``kind``
and the server-set metadata are never owned; the fields a subresource resets are
not owned through it (a kind's ``status`` through the main resource, everything
but ``status`` through ``/status``); an update's time changes only when it took
fields, an apply's only when it changed the object; at most ten update entries are
kept, older ones folded into ``ancient-changes``; an object whose managedFields a
client reset is not tracked again until the next apply, whose first step makes the
existing fields ``before-first-apply``'s.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import errors
from .applyschema import Shape
from .fieldset import FieldsError, FieldSet, field, path_string
from .meta import now as _now
from .typedvalue import (
    TypedError,
    compare,
    ensure_named_fields_are_members,
    equal,
    merge,
    remove_items,
    to_field_set,
)

APPLY = "Apply"
UPDATE = "Update"
MAX_UPDATE_MANAGERS = 10
FIELD_MANAGER_MAX_LENGTH = 128
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Never owned by anyone (the field manager's stripMetaManager).
_NEVER_OWNED = FieldSet.of(
    (field("apiVersion"),),
    (field("kind"),),
    (field("metadata"),),
    *((field("metadata"), field(name)) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")),
)
_STATUS = FieldSet.of((field("status"),))


@dataclass(frozen=True)
class Scope:
    """What one write is about: the type, the version it was made in, and the
    subresource ("" for the main resource)."""

    shape: Shape
    api_version: str
    subresource: str = ""
    # The kind has a status subresource, so its main resource ignores status.
    status_subresource: bool = False
    # A custom resource: stored as JSON, so maps emptied by a removal stay ``{}``.
    custom: bool = False

    def owned(self, fields: FieldSet) -> FieldSet:
        """The part of ``fields`` a write through this scope can own."""
        if self.subresource == "status":
            status = fields.children.get(field("status"))
            out = FieldSet()
            if field("status") in fields.members:
                out.members.add(field("status"))
            if status is not None:
                out.children[field("status")] = status
            return out
        if self.status_subresource:
            return fields.recursive_difference(_STATUS)
        return fields

    def view(self, obj: Any) -> Any:
        """The part of ``obj`` a write through this scope can own (what ``owned``
        keeps of its paths), so comparisons skip the rest."""
        if not isinstance(obj, dict):
            return obj
        if self.subresource == "status":
            return {"status": obj["status"]} if "status" in obj else {}
        if self.status_subresource and "status" in obj:
            return {k: v for k, v in obj.items() if k != "status"}
        return obj


# A manager entry is identified by these; apiVersion only for Update entries (an
# applier stays the same manager whatever version it applies in).
Ident = tuple[str, str, str, str]  # (manager, operation, apiVersion or "", subresource)


@dataclass(frozen=True)
class Entry:
    fields: FieldSet
    api_version: str
    time: str | None = None
    # The fieldsV1 document ``fields`` was read from, reused when writing it back
    # unchanged (most writes change one entry at most).
    wire: dict[str, Any] | None = None


Managers = dict[Ident, Entry]


def ident(manager: str, operation: str, api_version: str, subresource: str = "") -> Ident:
    return (manager, operation, api_version if operation == UPDATE else "", subresource)


# -- managedFields on the wire ----------------------------------------------------------------


def decode(entries: Any) -> Managers:
    """``metadata.managedFields`` as managers; ``ValueError`` names what is wrong."""
    out: Managers = {}
    if entries is None:
        return out
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"managed fields entry {i} is not an object")
        operation = entry.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = entry.get("apiVersion")
        if not api_version:
            raise ValueError("apiVersion must not be empty")
        fields_type = entry.get("fieldsType")
        if not fields_type:
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if fields_type != "FieldsV1":
            raise ValueError(f'invalid fieldsType "{fields_type}" in managed fields entry {i}')
        wire = entry.get("fieldsV1") or {}
        try:
            fields = _read_fields(wire)
        except FieldsError as exc:
            raise ValueError(f"managed fields entry {i}: {exc}") from None
        key = ident(str(entry.get("manager", "")), operation, api_version,
                    str(entry.get("subresource", "")))
        out[key] = Entry(fields, api_version, entry.get("time"),
                         wire if isinstance(wire, dict) else None)
    return out


# fieldsV1 documents of stored objects, read once: (document, set) by id(document).
# Holding the document keeps its id from being reused while it is cached.  Only what
# was read is kept (objects written more than once), within a bound: each entry costs
# about as much memory again as its object.
_READ: dict[int, tuple[Any, FieldSet]] = {}
_READ_CACHE_SIZE = 4096


def _read_fields(wire: Any) -> FieldSet:
    hit = _READ.get(id(wire))
    if hit is not None and hit[0] is wire:
        return hit[1]
    fields = FieldSet.from_fields_v1(wire)
    if len(_READ) >= _READ_CACHE_SIZE:
        del _READ[next(iter(_READ))]
    _READ[id(wire)] = (wire, fields)
    return fields


def encode(managers: Managers) -> list[dict[str, Any]] | None:
    """Managers as ``metadata.managedFields``, in the real server's order."""
    if not managers:
        return None
    out = []
    for (manager, operation, _, subresource), entry in managers.items():
        doc: dict[str, Any] = {"manager": manager, "operation": operation,
                               "apiVersion": entry.api_version}
        if entry.time:
            doc["time"] = entry.time
        doc["fieldsType"] = "FieldsV1"
        wire = entry.wire
        if wire is None or _READ.get(id(wire), (None, None))[1] is not entry.fields:
            wire = entry.fields.to_fields_v1()
        doc["fieldsV1"] = wire
        if subresource:
            doc["subresource"] = subresource
        out.append(doc)
    out.sort(key=lambda d: (d["operation"], d.get("time") or "", d["manager"], d["apiVersion"],
                            d.get("subresource", "")))
    return out


def _ident_json(key: Ident) -> str:
    """The manager identifier the real server sorts and prints conflicts by."""
    manager, operation, api_version, subresource = key
    doc = {"manager": manager, "operation": operation}
    if api_version:
        doc["apiVersion"] = api_version
    if subresource:
        doc["subresource"] = subresource
    return json.dumps(doc, separators=(",", ":"))


def describe_manager(key: Ident) -> str:
    """``"kubectl"``, ``"istiod" with subresource "status"``, ``"kubectl-edit" using v1``."""
    manager, operation, api_version, subresource = key
    text = json.dumps(manager, ensure_ascii=False)
    if subresource:
        text += f' with subresource "{subresource}"'
    if operation == UPDATE:
        text += f" using {api_version}"
    return text


# -- who writes ----------------------------------------------------------------------------


def manager_from_user_agent(user_agent: str) -> str:
    """The part of a User-Agent before the first ``/``, printable characters only, at
    most 128 bytes: what the real server records when a writer names no manager."""
    prefix = user_agent.split("/", 1)[0]
    if prefix.isprintable() and len(prefix) <= FIELD_MANAGER_MAX_LENGTH and prefix.isascii():
        return prefix
    out = ""
    for ch in prefix:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out


def field_manager_problem(name: str) -> dict[str, str] | None:
    """A StatusCause for a ``fieldManager`` the real server refuses, else ``None``."""
    if len(name.encode()) > FIELD_MANAGER_MAX_LENGTH:
        return {"field": "fieldManager", "reason": "FieldValueTooLong",
                "message": f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"}
    for i, ch in enumerate(name):
        if not ch.isprintable():
            return {"field": "fieldManager", "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {json.dumps(name)}: invalid character "
                               f"U+{ord(ch):04X} (at position {i})"}
    return None


# -- updates -------------------------------------------------------------------------------


_CURRENT: Ident = ("current-operation", UPDATE, "", "")


def record_update(scope: Scope, live: dict[str, Any] | None, new: dict[str, Any],
                  manager: str, *, now: Callable[[], str] = _now) -> list[dict[str, Any]] | None:
    """The managedFields ``new`` is stored with after a create (``live`` is None), an
    update or a non-apply patch by ``manager``.

    The managers are the ones ``new`` carries if a client sent valid ones, else the
    live object's; ``[]`` resets them, and an existing object without managers stays
    untracked.  A value that does not fit its type leaves the object untracked too,
    as the real server does rather than failing the write."""
    managers = _managers_for_write(scope, live, new)
    if not managers and live is not None:
        return None
    try:
        managers = _record(scope, _bare(live), _bare(new), managers,
                           ident(manager or "unknown", UPDATE, scope.api_version,
                                 scope.subresource), now)
    except TypedError:
        return None
    return encode(managers)


def _record(scope: Scope, live: dict[str, Any], new: dict[str, Any], managers: Managers,
            key: Ident, now: Callable[[], str]) -> Managers:
    managers, changed = _take_changes(scope, live, new, managers, _CURRENT, force=True)
    taken = changed.modified.union(changed.added).difference(_NEVER_OWNED)
    if not taken.empty():
        previous = managers.get(key)
        fields = taken if previous is None else taken.union(previous.fields)
        managers[key] = Entry(fields, scope.api_version, now())
    _cap_update_managers(managers)
    return managers


def _take_changes(scope: Scope, live: Any, new: Any, managers: Managers, writer: Ident,
                  *, force: bool) -> tuple[Managers, Any]:
    """structured-merge-diff's ``Updater.update``: other managers lose the fields the
    write changes (or, without ``force``, those changes are conflicts) and the fields
    it removes."""
    changes = compare(scope.view(live), scope.view(new), scope.shape)
    changes.added = scope.owned(changes.added)
    changes.modified = scope.owned(changes.modified)
    changes.removed = scope.owned(changes.removed)
    touched = changes.modified.union(changes.added)
    conflicts = {key: clash for key, entry in managers.items()
                 if key != writer and not (clash := entry.fields.intersection(touched)).empty()}
    if conflicts and not force:
        raise conflict_error(conflicts)
    out: Managers = {}
    for key, entry in managers.items():
        fields = entry.fields
        if key != writer:
            if key in conflicts:
                fields = fields.difference(conflicts[key])
            fields = fields.difference(changes.removed)
        if not fields.empty():
            out[key] = entry if fields is entry.fields else replace(entry, fields=fields)
    return out, changes


def _cap_update_managers(managers: Managers) -> None:
    """Fold the oldest update entries into one ``ancient-changes`` entry per version
    until at most ``MAX_UPDATE_MANAGERS`` are left (capmanagers.go)."""
    updaters = [k for k in managers if k[1] == UPDATE]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda k: (managers[k].time or "", _ident_json(k)))
    first_of_version: dict[str, Ident] = {}
    count = len(updaters)
    for key in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        entry = managers[key]
        version = entry.api_version
        bucket = ident("ancient-changes", UPDATE, version)
        if version not in first_of_version:
            first_of_version[version] = key
            continue
        if bucket not in managers:
            managers[bucket] = managers.pop(first_of_version[version])
        managers[bucket] = Entry(entry.fields.union(managers[bucket].fields), version,
                                 entry.time)
        del managers[key]
        count -= 1


# -- apply ---------------------------------------------------------------------------------


@dataclass
class Applied:
    """The object an apply produces (with its managedFields) and whether anything but
    managedFields changed."""

    obj: dict[str, Any]
    changed: bool


def apply(scope: Scope, live: dict[str, Any] | None, config: dict[str, Any], manager: str,
          *, force: bool, now: Callable[[], str] = _now) -> Applied:
    """Apply ``config`` as ``manager`` to ``live`` (None: the object does not exist).

    Raises the 409 Conflict ``ApiError`` when the configuration changes fields other
    managers own and ``force`` is false, and a 500 naming the path when the
    configuration has two items with one key (what the real server answers)."""
    # The result is changed by the caller afterwards, so it must share nothing with
    # the stored object or the request.
    live = copy.deepcopy(live)
    config = copy.deepcopy(config)
    try:
        applied_fields = scope.owned(to_field_set(config, scope.shape, allow_duplicates=False))
    except TypedError as exc:
        raise errors.ApiError(500, "InternalError",
                              f"failed to create typed patch object ({_describe(config)}): "
                              f"{exc}") from None
    base = _bare(live)
    managers: Managers = {}
    if live is not None:
        try:
            managers = decode(live.get("metadata", {}).get("managedFields"))
        except ValueError:
            managers = {}
    try:
        if not managers and live is not None:
            managers = _record(scope, {}, base, {}, ident("before-first-apply", UPDATE,
                                                          scope.api_version, scope.subresource),
                               now)
        key = ident(manager, APPLY, scope.api_version, scope.subresource)
        merged = merge(base, config, scope.shape)
        last = managers.get(key)
        managers[key] = Entry(applied_fields, scope.api_version, last.time if last else None)
        if last is not None and not last.fields.empty():
            merged = _prune(scope, merged, managers, key, last.fields)
        managers, _ = _take_changes(scope, base, merged, managers, key, force=force)
    except TypedError as exc:
        raise errors.ApiError(500, "InternalError",
                              f"failed to merge the applied configuration into "
                              f"{_describe(config)}: {exc}") from None
    changed = not equal(base, merged)
    if key in managers:
        entry = managers[key]
        fields = entry.fields.difference(_NEVER_OWNED)
        if fields.empty():
            del managers[key]
        else:
            managers[key] = Entry(fields, entry.api_version, now() if changed else entry.time)
    result = merged if changed else base
    if manager == "kubectl":
        _sync_last_applied(result, config)
    encoded = encode(managers)
    meta = result.setdefault("metadata", {})
    if encoded is None:
        meta.pop("managedFields", None)
    else:
        meta["managedFields"] = encoded
    return Applied(result, changed)


def _prune(scope: Scope, merged: dict[str, Any], managers: Managers, key: Ident,
           last: FieldSet) -> dict[str, Any]:
    """Remove what ``key`` applied last time and not now, unless another manager (or
    the new configuration) owns it (``Updater.prune``)."""
    shape = scope.shape

    def members(fields: FieldSet) -> FieldSet:
        return ensure_named_fields_are_members(fields, shape)

    def without(fields: FieldSet) -> dict[str, Any]:
        return remove_items(merged, fields, shape, keep_emptied=scope.custom)

    last = members(last)
    pruned = without(last)
    # Add back what anyone owns.
    owned = FieldSet()
    for entry in managers.values():
        owned = owned.union(entry.fields)
    merged_fields = members(to_field_set(merged, shape))
    pruned = without(merged_fields.difference(
        members(to_field_set(pruned, shape)).union(members(owned))))
    # Remove only what this manager had: items nobody owned stay.
    pruned_fields = members(to_field_set(pruned, shape))
    return without(merged_fields.difference(pruned_fields).intersection(last))


def _sync_last_applied(obj: dict[str, Any], config: dict[str, Any]) -> None:
    """kubectl's client-side apply annotation follows a server-side apply by kubectl
    (lastappliedupdater.go), so switching back to client-side apply stays correct."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(LAST_APPLIED):
        return
    last = copy.deepcopy(config)
    last_annotations = (last.get("metadata") or {}).get("annotations")
    if isinstance(last_annotations, dict):
        last_annotations.pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = json.dumps(last, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False) + "\n"


# -- conflicts -----------------------------------------------------------------------------


def conflict_error(conflicts: dict[Ident, FieldSet]) -> errors.ApiError:
    """The real server's 409: one cause per field and manager, and the message kubectl
    prints with its advice appended."""
    found = [(key, path) for key in sorted(conflicts, key=_ident_json)
             for path in conflicts[key].paths()]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {describe_manager(k)}",
               "field": path_string(p)} for k, p in found]
    if len(found) == 1:
        key, path = found[0]
        message = (f"Apply failed with 1 conflict: conflict with {describe_manager(key)}: "
                   f"{path_string(path)}")
    else:
        lines = []
        for key in sorted(conflicts, key=_ident_json):
            lines.append(f"conflicts with {describe_manager(key)}:")
            lines.extend(f"- {path_string(p)}" for p in conflicts[key].paths())
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return errors.ApiError(409, "Conflict", message, causes=causes)


# -- helpers -------------------------------------------------------------------------------


def _bare(obj: dict[str, Any] | None) -> dict[str, Any]:
    """``obj`` without managedFields ({} for no object: a create's "before").  A
    shallow copy: only read, or deep-copied by whoever changes it."""
    if obj is None:
        return {}
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _managers_of(obj: dict[str, Any] | None) -> Managers:
    if obj is None:
        return {}
    try:
        return decode((obj.get("metadata") or {}).get("managedFields"))
    except ValueError:
        return {}


def _managers_for_write(scope: Scope, live: dict[str, Any] | None,
                        new: dict[str, Any]) -> Managers:
    """decodeLiveOrNew: a subresource write keeps the live managers; a main-resource
    write may reset them (``[]``) or replace them with valid ones of its own."""
    if scope.subresource:
        return _managers_of(live)
    sent = (new.get("metadata") or {}).get("managedFields")
    if isinstance(sent, list) and (sent == [] or sent == [{}]):
        return {}
    if sent:
        try:
            managers = decode(sent)
        except ValueError:
            managers = {}
        if managers:
            return managers
    return _managers_of(live)


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return (f"{meta.get('namespace', '')}/{meta.get('name', '')}; {group}/{version}, "
            f"Kind={obj.get('kind', '')}")
