"""A custom resource's CEL rules (``x-kubernetes-validations``), evaluated as the real
server evaluates them (k8s.io/apiextensions-apiserver ``pkg/apiserver/schema/cel``).

Every schema node that has rules and a value in the object is checked: ``self`` is
the value there; on an update, ``oldSelf`` is the stored value at the same place, and
a rule that reads ``oldSelf`` (a transition rule) runs only when there is one (and is
skipped on create, unless ``optionalOldSelf``).  A rule that is false gives the real
server's error: the node's path (plus the rule's ``fieldPath``), ``Invalid value:
"<schema type>"``, and the rule's ``message`` (or ``messageExpression``'s result, or
``failed rule: <rule>``), with the rule's ``reason`` (FieldValueInvalid by default).
A rule that cannot be compiled or evaluated is reported the way the real server
reports it, with its text.

The CEL implementation is ``cel-python`` (``celpy``), with the functions of the
Kubernetes CEL libraries rules commonly call added here (cel-go's strings extension:
``join``, ``split``, ``lowerAscii``, ``upperAscii``, ``trim``, ``replace``,
``indexOf``, ``lastIndexOf``, ``substring``, ``charAt``; Kubernetes' list library:
``isSorted``, ``sum``, ``min``, ``max``; its regex library: ``find``, ``findAll``).
``quantity()``, ``url()``, ``ip()``, ``cidr()`` and format checks are not: a rule
calling a function this environment lacks is not judged (a correct object must never
be refused for what the real server would accept), and is returned as skipped, for a
warning.  Sans-IO: objects in, causes out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes

Cause = dict[str, str]
_OLD_SELF = re.compile(r"\boldSelf\b")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired",
            "FieldValueDuplicate")


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()


def _split(text: Any, sep: Any, limit: Any = -1) -> celtypes.ListType:
    n = int(limit)
    if n == 0:
        return celtypes.ListType([])
    parts = str(text).split(str(sep), n - 1 if n > 0 else -1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    s = str(text)
    return celtypes.StringType(s[int(start):] if end is None else s[int(start):int(end)])


def _index(text: Any, what: Any, start: Any = 0) -> celtypes.IntType:
    if isinstance(text, list):
        return celtypes.IntType(next((i for i, v in enumerate(text) if v == what), -1))
    return celtypes.IntType(str(text).find(str(what), int(start)))


def _last_index(text: Any, what: Any) -> celtypes.IntType:
    if isinstance(text, list):
        found = [i for i, v in enumerate(text) if v == what]
        return celtypes.IntType(found[-1] if found else -1)
    return celtypes.IntType(str(text).rfind(str(what)))


def _find(text: Any, pattern: Any) -> celtypes.StringType:
    match = re.search(str(pattern), str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> celtypes.ListType:
    found = [m.group(0) for m in re.finditer(str(pattern), str(text))]
    if int(limit) >= 0:
        found = found[:int(limit)]
    return celtypes.ListType([celtypes.StringType(f) for f in found])


# Functions of Kubernetes' CEL environment that celpy lacks (see the docstring).
_EXTENSIONS: dict[str, Any] = {
    "join": lambda items, sep="": celtypes.StringType(str(sep).join(str(i) for i in items)),
    "split": _split,
    "lowerAscii": lambda text: celtypes.StringType(str(text).lower()),
    "upperAscii": lambda text: celtypes.StringType(str(text).upper()),
    "trim": lambda text: celtypes.StringType(str(text).strip()),
    "replace": lambda text, old, new, n=-1: celtypes.StringType(
        str(text).replace(str(old), str(new), int(n))),
    "indexOf": _index,
    "lastIndexOf": _last_index,
    "substring": _substring,
    "charAt": lambda text, i: celtypes.StringType(str(text)[int(i):int(i) + 1]),
    "isSorted": lambda items: celtypes.BoolType(list(items) == sorted(items)),
    "sum": lambda items: sum(items[1:], items[0]) if items else celtypes.IntType(0),
    "min": lambda items: min(items),
    "max": lambda items: max(items),
    "find": _find,
    "findAll": _find_all,
}


@functools.lru_cache(maxsize=2048)
def _program(rule: str) -> Any:
    env = _environment()
    return env.program(env.compile(rule), functions=_EXTENSIONS)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class Verdict:
    """What the rules said: the causes of a refusal (none: every rule held), and the
    rules not judged here, as ``<field>: <rule>`` (they call functions this CEL
    environment lacks)."""

    causes: list[Cause] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Unsupported(Exception):
    pass


def check(obj: Mapping[str, Any], schema: Mapping[str, Any] | None,
          old: Mapping[str, Any] | None = None) -> Verdict:
    """What the object's CEL rules say about it."""
    verdict = Verdict()
    if schema:
        _walk(obj, old, schema, "", verdict)
    return verdict


def _walk(value: Any, old: Any, s: Mapping[str, Any], path: str, verdict: Verdict) -> None:
    if value is None:
        return
    for rule in s.get("x-kubernetes-validations") or ():
        if isinstance(rule, Mapping) and isinstance(rule.get("rule"), str):
            try:
                cause = _evaluate(rule, value, old, s, path)
            except _Unsupported:
                verdict.skipped.append(f"{path or '<root>'}: {rule['rule']}")
                continue
            if cause is not None:
                verdict.causes.append(cause)
    if isinstance(value, dict):
        props = s.get("properties") or {}
        additional = s.get("additionalProperties")
        for key, item in value.items():
            child = props.get(key)
            if child is None and isinstance(additional, Mapping):
                child = additional
            if isinstance(child, Mapping):
                old_item = old.get(key) if isinstance(old, dict) else None
                _walk(item, old_item, child, _child(path, key), verdict)
    elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
        # oldSelf of a list item is correlated only for map lists, by their keys
        keys = s.get("x-kubernetes-list-map-keys") if s.get("x-kubernetes-list-type") == "map" \
            else None
        olds: dict[tuple[Any, ...], Any] = {}
        if keys and isinstance(old, list):
            olds = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(value):
            old_item = olds.get(tuple(item.get(k) for k in keys)) \
                if keys and isinstance(item, dict) else None
            _walk(item, old_item, s["items"], f"{path}[{i}]", verdict)


def _evaluate(rule: Mapping[str, Any], value: Any, old: Any, s: Mapping[str, Any],
              path: str) -> Cause | None:
    text = rule["rule"]
    transition = bool(_OLD_SELF.search(text))
    if transition and old is None and not rule.get("optionalOldSelf"):
        return None
    where = path
    if isinstance(rule.get("fieldPath"), str) and rule["fieldPath"]:
        where = path + rule["fieldPath"] if rule["fieldPath"].startswith((".", "[")) \
            else _child(path, rule["fieldPath"])
    shown = s.get("type") or "object"
    activation = {"self": celpy.json_to_cel(value)}
    if transition:
        activation["oldSelf"] = celpy.json_to_cel(old) if old is not None else \
            celtypes.MapType({})
    try:
        result = _program(text).evaluate(activation)
    except celpy.CELParseError as exc:
        return _cause(where or "<root>", "FieldValueInvalid",
                      f"Invalid value: \"{shown}\": compilation failed: {exc}")
    except celpy.CELEvalError as exc:
        if "undeclared reference" in str(exc.args[0]):  # a function celpy lacks
            raise _Unsupported(text) from None
        return _cause(where or "<root>", "FieldValueInvalid",
                      f'Invalid value: "{shown}": {text}: evaluation error: {exc.args[0]}')
    except Exception as exc:  # celpy's own failures: a 422, never a 500
        return _cause(where or "<root>", "FieldValueInvalid",
                      f'Invalid value: "{shown}": {text}: evaluation error: {exc}')
    if bool(result):
        return None
    reason = rule.get("reason") if rule.get("reason") in _REASONS else "FieldValueInvalid"
    return _cause(where or "<root>", str(reason),
                  f'Invalid value: "{shown}": {_message(rule, activation)}')


def _message(rule: Mapping[str, Any], activation: dict[str, Any]) -> str:
    expression = rule.get("messageExpression")
    if isinstance(expression, str) and expression:
        try:
            produced = _program(expression).evaluate(activation)
        except (celpy.CELParseError, celpy.CELEvalError):
            produced = None
        if isinstance(produced, str) and produced.strip():
            return str(produced)
    if isinstance(rule.get("message"), str) and rule["message"]:
        return str(rule["message"])
    return f"failed rule: {rule['rule']}"


def _cause(field: str, reason: str, message: str) -> Cause:
    return {"field": field, "reason": reason, "message": message}
