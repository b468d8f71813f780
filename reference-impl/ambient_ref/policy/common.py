"""What the ztunnel (``convert``) and waypoint (``l7.convert``) policy readers share.

Both read the same Kubernetes object, so the "envelope" checks (object, kind,
apiVersion, metadata, spec), the dry-run annotation, the selector and the scalar value
parsers are written once here.  Where the two word a message differently, the wording
is passed in, so each keeps its own status texts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROOT_NAMESPACE = "istio-system"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
API_VERSIONS = frozenset({"security.istio.io/v1", "security.istio.io/v1beta1"})

REASON_ACCEPTED = "Accepted"
REASON_UNSUPPORTED = "UnsupportedValue"
REASON_INVALID = "InvalidValue"

SPEC_KEYS = frozenset({"selector", "targetRef", "targetRefs", "action", "provider", "rules"})
MAX_LISTED_PROBLEMS = 10
PORT = re.compile(r"[0-9]{1,5}")
# Go's strconv.ParseBool, which istiod uses for the dry-run annotation.
GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def make_condition(
    condition_type: str, status: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


@dataclass(frozen=True)
class Envelope:
    """The attributable parts of an AuthorizationPolicy: its metadata, name, namespace, spec."""

    meta: Mapping[str, Any]
    name: str
    namespace: str
    spec: Mapping[str, Any]


def policy_generation(policy: Any) -> int | None:
    """``metadata.generation`` when it is readable, for the conditions' ``observedGeneration``."""
    if not isinstance(policy, Mapping):
        return None
    meta = policy.get("metadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("generation"), int):
        return meta["generation"]
    return None


def read_envelope(policy: Any, *, found: str, api_version_problem: str) -> Envelope | str:
    """The policy's envelope, or the message saying why it cannot be attributed.

    ``found`` words a type mismatch (``"expected an object, {found} list"``);
    ``api_version_problem`` follows ``"apiVersion: {value!r} "``.
    """
    if not isinstance(policy, Mapping):
        return f"policy: expected an object, {found} {type_name(policy)}"
    meta = policy.get("metadata")
    kind = policy.get("kind")
    if kind is not None and kind != "AuthorizationPolicy":
        return f"kind: {kind!r} is not AuthorizationPolicy"
    api_version = policy.get("apiVersion")
    if api_version is not None and api_version not in API_VERSIONS:
        return f"apiVersion: {api_version!r} {api_version_problem}"
    if not isinstance(meta, Mapping):
        return "metadata: expected an object"
    name, namespace = meta.get("name"), meta.get("namespace")
    for key, value in (("name", name), ("namespace", namespace)):
        if not isinstance(value, str) or not value:
            return f"metadata.{key}: expected a non-empty string"
    spec = policy.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        return f"spec: expected an object, {found} {type_name(spec)}"
    return Envelope(meta, name, namespace, spec)


def unknown_spec_keys(spec: Mapping[str, Any]) -> list[str]:
    """A problem for each unknown ``spec`` field (their meaning is unknowable)."""
    return [
        f"spec.{key}: unknown field (ignored)" for key in sorted(set(spec) - SPEC_KEYS, key=str)
    ]


def dry_run_annotation(annotations: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``istio.io/dry-run`` as istiod reads it, and a problem when it is not a boolean."""
    value = annotations.get(DRY_RUN_ANNOTATION)
    if value is None or value == "":
        return False, None
    parsed = GO_BOOLS.get(value) if isinstance(value, str) else None
    if parsed is None:
        return False, (
            f"metadata.annotations[{DRY_RUN_ANNOTATION}]: {value!r} is not a boolean; "
            "the policy is enforced"
        )
    return parsed, None


def listed_problems(problems: list[str]) -> str:
    """The first ``MAX_LISTED_PROBLEMS`` problems, ``; ``-joined, then how many more."""
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    if more:
        listed.append(f"and {more} more")
    return "; ".join(listed)


def read_selector(
    selector: Any, *, found: str, falsy_labels_empty: bool
) -> tuple[dict[str, str] | None, str | None]:
    """``(labels, problem)``: None without a selector, ``{}`` for an unreadable one.

    ``falsy_labels_empty`` reads any falsy ``matchLabels`` as ``{}``; otherwise only null.
    """
    if selector is None:
        return None, None
    if not isinstance(selector, Mapping):
        return {}, f"expected an object, {found} {type_name(selector)}"
    unknown = sorted(set(selector) - {"matchLabels"}, key=str)
    if unknown:
        return {}, f"unknown field {unknown[0]!r} (only matchLabels is supported)"
    labels = selector.get("matchLabels")
    if labels is None or (falsy_labels_empty and not labels):
        labels = {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return {}, "matchLabels must map strings to strings"
    return dict(labels), None


def parse_port(item: Any) -> int:
    """A port as the API has it (a string; a YAML int is accepted too); ValueError if not."""
    if isinstance(item, str) and PORT.fullmatch(item):
        port = int(item)
    elif isinstance(item, int) and not isinstance(item, bool):
        port = item
    else:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{item!r} is not a port number (0-65535)")
    return port


def parse_service_account(item: Any, namespace: str) -> tuple[str, str]:
    """``"ns/sa"``, or ``"sa"`` in the policy's ``namespace``; no wildcards.  ValueError if not."""
    if isinstance(item, str) and "*" not in item:
        account_namespace, slash, name = item.rpartition("/")
        if not slash:
            account_namespace = namespace
        if account_namespace and name and "/" not in account_namespace:
            return (account_namespace, name)
    raise ValueError(f"{item!r} is not 'namespace/name' or 'name'")
