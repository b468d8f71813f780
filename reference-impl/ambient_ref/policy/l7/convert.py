"""AuthorizationPolicy (Kubernetes object) to the ``L7Policy`` a waypoint enforces.

The waypoint twin of ``policy/convert.py``: istiod turns the AuthorizationPolicies
attached to a waypoint into Envoy RBAC filters (istio/istio
pilot/pkg/networking/core/listener_waypoint.go); ``compile_l7`` is that step, written
to be read.  It returns the ``L7Policy`` (``model``) and one status condition of type
``WaypointAccepted``; the ``targetRefs`` and ``selector`` it records are read by
``attach``, which decides where the policy applies.

Bad input never raises and fails closed, in the spirit of the L4 ``convert``: in an
ALLOW, a rule holding anything unreadable is dropped (it can only allow less); in a
DENY, an unreadable field, source, operation or condition is read as matching anything
(it can only deny more).  A policy that cannot be attributed at all (not an object, no
name, unknown action) compiles to ``None`` with a condition naming the field.  AUDIT
compiles (it is evaluated but never decides); CUSTOM (an external authorizer) is not
supported and compiles to ``None``.

Depends on ``model``, ``attach`` (the attachment fields) and ``policy/common.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..common import (
    REASON_ACCEPTED,
    REASON_INVALID,
    REASON_UNSUPPORTED,
    ROOT_NAMESPACE,
    dry_run_annotation,
    listed_problems,
    make_condition,
    parse_port,
    parse_service_account,
    policy_generation,
    read_envelope,
    unknown_spec_keys,
)
from ..common import type_name as _type_name
from ..model import StringMatch, parse_network
from .attach import has_target_refs, read_policy_selector, read_target_refs
from .model import (
    Condition,
    HostMatch,
    L7Action,
    L7Policy,
    L7Rule,
    Matcher,
    PathTemplate,
)

CONDITION_TYPE = "WaypointAccepted"

_HEADER_KEY = re.compile(r"request\.headers\[([^\[\]]+)\]")


def _condition(status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    return make_condition(CONDITION_TYPE, status, reason, message, generation)


class _Invalid(Exception):
    """A value that cannot be read; carries the field path for the condition."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what}")


def _with_negations(fields: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str, bool]]:
    """Each field as ``(attribute, kind of value, negate)``, with its ``not*`` twin, which
    negates it: ``paths`` gives ``paths`` and ``notPaths``."""
    result: dict[str, tuple[str, str, bool]] = {}
    for key, (attribute, kind) in fields.items():
        result[key] = (attribute, kind, False)
        result[f"not{key[0].upper()}{key[1:]}"] = (attribute, kind, True)
    return result


# key: (attribute, kind of value, negate), for each key and its not* twin
_SOURCE_FIELDS = _with_negations(
    {
        "principals": ("source.principal", "string"),
        "namespaces": ("source.namespace", "string"),
        "serviceAccounts": ("source.account", "account"),
        "ipBlocks": ("source.ip", "ip"),
        "remoteIpBlocks": ("source.ip", "ip"),
        "requestPrincipals": ("request.auth.principal", "string"),
        "trustDomains": ("source.trust_domain", "string"),
    }
)
_OPERATION_FIELDS = _with_negations(
    {
        "hosts": ("request.host", "host"),
        "ports": ("destination.port", "port"),
        "methods": ("request.method", "string"),
        "paths": ("request.path", "path"),
    }
)
_WHEN_KEYS: dict[str, tuple[str, str]] = {
    "source.ip": ("source.ip", "ip"),
    "remote.ip": ("source.ip", "ip"),
    "source.namespace": ("source.namespace", "string"),
    "source.principal": ("source.principal", "string"),
    "destination.ip": ("destination.ip", "ip"),
    "destination.port": ("destination.port", "port"),
}


class _Compiler:
    def __init__(self, root_namespace: str) -> None:
        self.root_namespace = root_namespace
        self.namespace = ""
        self.action = L7Action.ALLOW
        self.generation: int | None = None
        self.problems: list[str] = []

    def reject(self, reason: str, message: str) -> tuple[None, list[dict[str, Any]]]:
        return None, [_condition("False", reason, message, self.generation)]

    def compile(self, policy: Any) -> tuple[L7Policy | None, list[dict[str, Any]]]:
        self.generation = policy_generation(policy)
        envelope = read_envelope(policy, found="not", api_version_problem="is not supported")
        if isinstance(envelope, str):
            return self.reject(REASON_INVALID, envelope)
        name, namespace, spec = envelope.name, envelope.namespace, envelope.spec
        self.namespace = namespace

        action = spec.get("action", "ALLOW")
        try:
            self.action = L7Action(action)
        except ValueError:
            return self.reject(
                REASON_INVALID,
                f"spec.action: unknown action {action!r} (expected ALLOW, DENY, AUDIT or CUSTOM)",
            )
        if self.action is L7Action.CUSTOM:
            return self.reject(
                REASON_UNSUPPORTED,
                "spec.action: CUSTOM (external authorization) is not supported by this "
                "waypoint; the policy is not enforced",
            )

        dry_run = self.dry_run(envelope.meta)
        self.problems.extend(unknown_spec_keys(spec))
        targets, problems = read_target_refs(spec, namespace)
        self.problems.extend(problems)
        has_refs = has_target_refs(spec)
        selector, selector_problem = read_policy_selector(spec.get("selector"))
        if selector_problem:
            self.problems.append(f"spec.selector: {selector_problem}")
        rules = self.rules(spec.get("rules"))
        if selector_problem and self.action is L7Action.ALLOW:
            rules = []  # read as selecting everything: an ALLOW must not open workloads

        compiled = L7Policy(
            name=name,
            namespace=namespace,
            action=self.action,
            rules=tuple(rules),
            targets=tuple(targets),
            has_target_refs=has_refs,
            selector=selector,
            dry_run=dry_run,
        )
        return compiled, [self.status()]

    def status(self) -> dict[str, Any]:
        notes = []
        if self.action is L7Action.AUDIT:
            notes.append("AUDIT policies are evaluated but never change a decision.")
        if self.problems:
            outcome = (
                "ALLOW rules holding invalid values never match."
                if self.action is not L7Action.DENY
                else "each invalid part of this DENY policy is read as matching everything."
            )
            message = (
                f"invalid AuthorizationPolicy for the waypoint: {listed_problems(self.problems)}. "
                f"Enforced fail-closed: {outcome}"
            )
            return _condition("False", REASON_INVALID, " ".join([message, *notes]), self.generation)
        message = " ".join(["attached to the waypoint", *notes]) if notes else "accepted"
        return _condition("True", REASON_ACCEPTED, message, self.generation)

    def dry_run(self, meta: Mapping[str, Any]) -> bool:
        annotations = meta.get("annotations")
        if not isinstance(annotations, Mapping):
            return False
        dry_run, problem = dry_run_annotation(annotations)
        if problem:
            self.problems.append(problem)
        return dry_run

    # -- rules -----------------------------------------------------------------------

    def match_all(self) -> list[L7Rule]:
        """What an unreadable rule becomes: nothing for ALLOW, everything for DENY."""
        return [L7Rule()] if self.action is L7Action.DENY else []

    def rules(self, value: Any) -> list[L7Rule]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(f"spec.rules: expected a list, not {_type_name(value)}")
            return self.match_all()
        result: list[L7Rule] = []
        for index, item in enumerate(value):
            result.extend(self.rule(item, f"spec.rules[{index}]"))
        return result

    def rule(self, rule: Any, path: str) -> list[L7Rule]:
        if not isinstance(rule, Mapping):
            self.problems.append(f"{path}: expected an object, not {_type_name(rule)}")
            return self.match_all()
        invalid = False
        for key in sorted(set(rule) - {"from", "to", "when"}, key=str):
            self.problems.append(f"{path}.{key}: unknown field")
            invalid = True
        sections: dict[str, tuple[tuple[Condition, ...], ...] | None] = {}
        for key, wrapper, fields in (
            ("from", "source", _SOURCE_FIELDS),
            ("to", "operation", _OPERATION_FIELDS),
        ):
            items = rule.get(key)
            sections[key] = None
            if items is None:
                continue
            if not isinstance(items, list):
                self.problems.append(f"{path}.{key}: expected a list, not {_type_name(items)}")
                invalid = True
                continue
            alternatives = []
            anything = False
            for i, item in enumerate(items):
                conditions, bad = self.entry(item, f"{path}.{key}[{i}]", wrapper, fields)
                invalid |= bad
                if bad and not conditions:
                    anything = True  # DENY: an unreadable entry matches anything
                alternatives.append(conditions)
            if alternatives and not anything:
                sections[key] = tuple(alternatives)
        when: list[Condition] = []
        conditions = rule.get("when")
        if conditions is not None and not isinstance(conditions, list):
            self.problems.append(f"{path}.when: expected a list, not {_type_name(conditions)}")
            invalid = True
            conditions = None
        for i, item in enumerate(conditions or ()):
            try:
                when.extend(self.when(item, f"{path}.when[{i}]"))
            except _Invalid as exc:
                self.problems.append(str(exc))
                invalid = True  # DENY: the condition is left out, i.e. read as true
        if invalid and self.action is not L7Action.DENY:
            return []
        return [L7Rule(sections["from"], sections["to"], tuple(when))]

    def entry(
        self, item: Any, path: str, wrapper: str, fields: Mapping[str, tuple[str, str, bool]]
    ) -> tuple[tuple[Condition, ...], bool]:
        """One ``{source: ...}``/``{operation: ...}``: its readable conditions, and whether
        anything was unreadable."""
        if not isinstance(item, Mapping) or not isinstance(item.get(wrapper), Mapping):
            self.problems.append(f"{path}.{wrapper}: expected an object")
            return (), True
        invalid = False
        for extra in sorted(set(item) - {wrapper}, key=str):
            self.problems.append(f"{path}.{extra}: unknown field")
            invalid = True
        result: list[Condition] = []
        for key, value in item[wrapper].items():
            where = f"{path}.{wrapper}.{key}"
            if key not in fields:
                self.problems.append(f"{where}: unknown field")
                invalid = True
                continue
            if value is None:
                continue
            attribute, kind, negate = fields[key]
            try:
                values = self.values(value, where, kind)
            except _Invalid as exc:
                self.problems.append(str(exc))
                invalid = True
                continue
            if values:
                result.append(Condition(attribute, values, negate))
        if not result and not invalid:
            # Istio's validation refuses an empty source or operation.
            self.problems.append(f"{path}.{wrapper}: must not be empty")
            invalid = True
        return tuple(result), invalid

    def when(self, item: Any, path: str) -> list[Condition]:
        if not isinstance(item, Mapping):
            raise _Invalid(path, f"expected an object, not {_type_name(item)}")
        extras = sorted(set(item) - {"key", "values", "notValues"}, key=str)
        if extras:
            raise _Invalid(f"{path}.{extras[0]}", "unknown field")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise _Invalid(f"{path}.key", "expected a non-empty string")
        header = _HEADER_KEY.fullmatch(key)
        if header:
            attribute, kind = f"request.headers[{header.group(1).lower()}]", "string"
        elif key.startswith("request.auth."):
            attribute, kind = "request.auth", "string"  # no JWT: never present
        elif key in _WHEN_KEYS:
            attribute, kind = _WHEN_KEYS[key]
        else:
            raise _Invalid(f"{path}.key", f"unsupported key {key!r}")
        result = []
        for name, negate in (("values", False), ("notValues", True)):
            value = item.get(name)
            if value is not None:
                values = self.values(value, f"{path}.{name}", kind)
                if values:
                    result.append(Condition(attribute, values, negate))
        if not result:
            raise _Invalid(path, f"{key!r} needs values or notValues")
        return result

    # -- values ----------------------------------------------------------------------

    def values(self, value: Any, path: str, kind: str) -> tuple[Matcher, ...]:
        if not isinstance(value, list):
            raise _Invalid(path, f"expected a list, not {_type_name(value)}")
        result: list[Matcher] = []
        for i, item in enumerate(value):
            try:
                result.append(self.value(item, kind))
            except ValueError as exc:
                raise _Invalid(f"{path}[{i}]", str(exc)) from None
        return tuple(result)

    def value(self, item: Any, kind: str) -> Matcher:
        if kind == "ip":
            return parse_network(item)
        if kind == "port":
            return parse_port(item)
        if kind == "account":
            return parse_service_account(item, self.namespace)
        if kind == "path" and isinstance(item, str) and ("{" in item or "}" in item):
            return PathTemplate.parse(item)
        if kind == "host":
            if not isinstance(item, str):
                raise ValueError(f"expected a string, not {item!r}")
            return HostMatch(StringMatch.parse(item.lower()))
        return StringMatch.parse(item)


def compile_l7(
    policy: Any, root_namespace: str = ROOT_NAMESPACE
) -> tuple[L7Policy | None, list[dict[str, Any]]]:
    """Compile a security.istio.io v1/v1beta1 AuthorizationPolicy (a dict) for a waypoint.

    Returns the policy, or None when it is not enforced at all (unattributable input,
    unknown action, CUSTOM), and its ``WaypointAccepted`` status condition.  Never
    raises; see the module docstring for how bad input fails closed.
    """
    try:
        return _Compiler(root_namespace).compile(policy)
    except Exception as exc:  # pragma: no cover - a bug here must not take the proxy down
        return None, [_condition("False", REASON_INVALID, f"not compiled: {exc!r}", None)]

