"""AuthorizationPolicy (Kubernetes object) to the ztunnel ``Authorization``, as istiod does.

The rules come from istiod's conversion (istio/istio
pilot/pkg/serviceregistry/ambient/authorization.go) and the field list of the API
(istio/api security/v1beta1/authorization_policy.proto):

* ``targetRef``/``targetRefs`` policies belong to waypoints: ztunnel gets nothing and
  no ztunnel condition is written.
* No selector gives NAMESPACE scope, or GLOBAL in the root namespace; a selector gives
  WORKLOAD_SELECTOR.
* Only ALLOW and DENY exist at ztunnel; AUDIT and CUSTOM are rejected in the status.
* Each AuthorizationPolicy rule becomes one ``Rule`` whose clauses are, in istiod's
  order: the ``to`` operations (one Match each, ORed), the ``from`` sources (one Match
  each, ORed), then one clause per ``when`` condition.  A missing or empty ``to``/``from``
  list adds no clause, so ``rules: [{}]`` matches everything.
* Supported: sources' ``principals``, ``namespaces``, ``serviceAccounts``, ``ipBlocks``
  and their ``not*`` twins; operations' ``ports``/``notPorts``; ``when`` keys
  ``source.ip``, ``source.namespace``, ``source.principal``, ``destination.ip`` and
  ``destination.port`` (``values`` and ``notValues``).
* Everything else a rule can say (``hosts``, ``methods``, ``paths``, ``requestPrincipals``,
  ``remoteIpBlocks``, their ``not*`` twins, other ``when`` keys, and, like current
  istiod, ``trustDomains``/``notTrustDomains``) is an HTTP attribute ztunnel cannot see:

  - ALLOW: the whole rule is dropped (never matches), which is more restrictive than
    written; if every rule goes, the policy allows nothing.
  - DENY: those fields are removed and the rest kept.  A Match left empty is skipped by
    ztunnel (matches nothing), so an HTTP-only DENY has no effect, while a DENY mixing
    ports with methods denies the whole port.

Status conditions (one, of type ``ZtunnelAccepted``, like istiod's):

=================  ======  ===================================================================
reason             status  when
=================  ======  ===================================================================
Accepted           True    converted as written ("attached to ztunnel")
UnsupportedValue   True    sent without its HTTP attributes (istiod's message, verbatim)
UnsupportedValue   False   AUDIT or CUSTOM action: nothing is sent
InvalidValue       False   malformed input: the fail-closed form below is sent, or nothing
                           when the policy cannot be attributed at all
=================  ======  ===================================================================

Bad input never raises.  A real API server's validation keeps most of it out, but the
reference must be safe without one, and istiod's own handling (skip the value it cannot
parse) can widen a policy.  The rule used here is *fail closed*: whatever cannot be read
is resolved in the direction that denies more.

* ALLOW: a rule holding anything unreadable is dropped, like an HTTP rule.  ``rules``
  that is not a list leaves no rule (allow-nothing).  The policy itself is still sent,
  so the workload keeps "an ALLOW policy exists, so deny by default"; dropping the whole
  policy instead could leave a workload with no ALLOW policy, which allows everything.
* DENY: an unreadable field is removed from its Match (a Match is a conjunction, so
  that can only widen it).  A Match with nothing readable left stands for "anything",
  so its clause is removed (a rule with fewer clauses matches more).  An unreadable
  rule, or ``rules`` that is not a list, becomes a rule matching every connection.
* An unreadable selector is read as selecting every workload of the namespace (of the
  mesh, in the root namespace).  That widens a DENY; for an ALLOW the policy is also
  emptied, because an ALLOW added to workloads it did not select could open them.
* Policies that cannot be attributed at all (not an object, no name or namespace, a
  spec that is not an object, an unknown action) yield ``authorization=None``, as istiod
  does for an action it does not support, with a condition naming the field.
* An empty ``source`` or ``operation``, and a supported ``when`` key without values,
  are refused by Istio's validation; here they count as unreadable.  (As empty Matches
  they would be skipped, which would quietly disarm a DENY.)
* An ``istio.io/dry-run`` annotation that is not a boolean is ignored, so the policy is
  enforced (istiod logs it and does the same); the condition reports it.
* Unknown ``spec`` fields are reported but change nothing (their meaning is unknowable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .common import (
    API_VERSIONS,
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
    read_selector,
    unknown_spec_keys,
)
from .common import DRY_RUN_ANNOTATION as DRY_RUN_ANNOTATION
from .common import type_name as _type_name
from .model import (
    Action,
    Authorization,
    Clause,
    IPNetwork,
    Match,
    Rule,
    Scope,
    StringMatch,
    parse_network,
)

TRUST_DOMAIN = "cluster.local"

CONDITION_TYPE = "ZtunnelAccepted"
ACCEPTED_MESSAGE = "attached to ztunnel"

_HTTP_RULE_FMT = (
    "ztunnel does not support HTTP attributes (found: {found}). "
    "In ambient mode you must use a waypoint proxy to enforce HTTP rules. {boilerplate}"
)
_HTTP_DENY_NO_EFFECT = (
    "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at "
    "ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce "
    "this policy."
)
_HTTP_DENY_MIXED = (
    "DENY policy with HTTP attributes is enforced without the HTTP rules. "
    "This will be more restrictive than requested."
)
_HTTP_ALLOW = (
    "Within an ALLOW policy, rules matching HTTP attributes are omitted. "
    "This will be more restrictive than requested."
)

_RULE_KEYS = ("to", "from", "when")
_L4_SOURCE = {
    "principals": "principals",
    "notPrincipals": "not_principals",
    "namespaces": "namespaces",
    "notNamespaces": "not_namespaces",
    "serviceAccounts": "service_accounts",
    "notServiceAccounts": "not_service_accounts",
    "ipBlocks": "source_ips",
    "notIpBlocks": "not_source_ips",
}
_HTTP_SOURCE = frozenset(
    {
        "requestPrincipals",
        "notRequestPrincipals",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
        "trustDomains",
        "notTrustDomains",
    }
)
_L4_OPERATION = {"ports": "destination_ports", "notPorts": "not_destination_ports"}
_HTTP_OPERATION = frozenset({"hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"})
# when key -> (kind of value, Match field for values, Match field for notValues)
_L4_WHEN = {
    "source.ip": ("ip", "source_ips", "not_source_ips"),
    "source.namespace": ("string", "namespaces", "not_namespaces"),
    "source.principal": ("principal", "principals", "not_principals"),
    "destination.ip": ("ip", "destination_ips", "not_destination_ips"),
    "destination.port": ("port", "destination_ports", "not_destination_ports"),
}


@dataclass(frozen=True)
class Conversion:
    """What istiod does with one AuthorizationPolicy.

    ``authorization`` is what ztunnels receive, or ``None`` when they receive nothing.
    ``conditions`` go to the policy's ``status.conditions`` (the writer adds
    ``lastTransitionTime``); empty for ``targetRefs`` policies, which are the waypoint's.
    """

    authorization: Authorization | None
    conditions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Whether the ``ZtunnelAccepted`` condition is True."""
        return any(
            c.get("type") == CONDITION_TYPE and c.get("status") == "True" for c in self.conditions
        )


def convert(
    policy: Mapping[str, Any],
    root_namespace: str = ROOT_NAMESPACE,
    trust_domain: str = TRUST_DOMAIN,
) -> Conversion:
    """Convert a security.istio.io v1/v1beta1 AuthorizationPolicy (as a dict) for ztunnel.

    ``root_namespace`` decides GLOBAL scope.  ``trust_domain`` is the mesh's: istiod's
    ambient conversion applies no trust-domain aliasing, so principals are passed through
    verbatim, but one naming another trust domain can never match (ztunnel only accepts
    peers of its own trust domain, istio/ztunnel src/tls/workload.rs), and the condition
    message says so.

    Never raises; see the module docstring for how bad input is handled.
    """
    try:
        return _Converter(root_namespace, trust_domain).convert(policy)
    except Exception as exc:  # pragma: no cover - a bug here must not take istiod down
        return Conversion(None, [_condition("False", REASON_INVALID, f"not converted: {exc!r}")])


def convert_for_xds(
    policy: Mapping[str, Any],
    root_namespace: str = ROOT_NAMESPACE,
    trust_domain: str = TRUST_DOMAIN,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``convert`` in the control plane's wire form.

    Returns ``(Authorization.to_dict() or None, conditions)``, the shape the xDS layer's
    ``policy_resources`` takes.
    """
    result = convert(policy, root_namespace, trust_domain)
    authorization = result.authorization.to_dict() if result.authorization else None
    return authorization, result.conditions


def _condition(
    status: str, reason: str, message: str, generation: int | None = None
) -> dict[str, Any]:
    return make_condition(CONDITION_TYPE, status, reason, message, generation)


@dataclass
class _Draft:
    """A Match being built from one source, operation or condition."""

    fields: dict[str, list[Any]] = field(default_factory=dict)
    http: list[str] = field(default_factory=list)
    invalid: bool = False

    @property
    def empty(self) -> bool:
        return not any(self.fields.values())

    def match(self) -> Match:
        return Match(**self.fields)


def _has_effective_rules(rules: list[Rule]) -> bool:
    """Whether some rule can fire at ztunnel: no clause, or no clause made of empty Matches."""
    return any(
        all(any(not m.is_empty() for m in clause.matches) for clause in rule.clauses)
        for rule in rules
    )


class _Converter:
    def __init__(self, root_namespace: str, trust_domain: str) -> None:
        self.root_namespace = root_namespace
        self.trust_domain = trust_domain
        self.namespace = ""
        self.action = Action.ALLOW
        self.generation: int | None = None
        self.problems: list[str] = []
        self.http: set[str] = set()
        self.foreign_principals: list[str] = []
        self.selector_invalid = False

    # -- the policy --------------------------------------------------------------------

    def reject(self, reason: str, message: str) -> Conversion:
        return Conversion(None, [_condition("False", reason, message, self.generation)])

    def invalid(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def convert(self, policy: Any) -> Conversion:
        self.generation = policy_generation(policy)
        envelope = read_envelope(
            policy,
            found="found",
            api_version_problem=f"is not one of {', '.join(sorted(API_VERSIONS))}",
        )
        if isinstance(envelope, str):
            return self.reject(REASON_INVALID, envelope)
        name, namespace, spec = envelope.name, envelope.namespace, envelope.spec
        self.namespace = namespace

        dry_run = self.dry_run(envelope.meta)

        waypoint = self.targets_waypoint(spec)
        if waypoint is not None:
            return waypoint

        action = spec.get("action")
        if action is None or action == "ALLOW":
            self.action = Action.ALLOW
        elif action == "DENY":
            self.action = Action.DENY
        elif action in ("AUDIT", "CUSTOM"):
            return self.reject(REASON_UNSUPPORTED, f"ztunnel does not support the {action} action")
        else:
            return self.reject(
                REASON_INVALID,
                f"spec.action: unknown action {action!r} (expected ALLOW, DENY, AUDIT or CUSTOM)",
            )

        self.problems.extend(unknown_spec_keys(spec))

        scope, selector = self.scope(spec)
        rules = self.rules(spec.get("rules"))
        if self.selector_invalid and self.action is Action.ALLOW:
            rules = []

        authorization = Authorization(
            name=name,
            namespace=namespace,
            scope=scope,
            action=self.action,
            rules=tuple(rules),
            selector=selector,
            dry_run=dry_run,
        )
        return Conversion(authorization, [self.status(rules)])

    def status(self, rules: list[Rule]) -> dict[str, Any]:
        http_message = ""
        if self.http:
            if self.action is Action.ALLOW:
                boilerplate = _HTTP_ALLOW
            elif _has_effective_rules(rules):
                boilerplate = _HTTP_DENY_MIXED
            else:
                boilerplate = _HTTP_DENY_NO_EFFECT
            found = ", ".join(sorted(self.http))
            http_message = _HTTP_RULE_FMT.format(found=found, boilerplate=boilerplate)
        note = ""
        if self.foreign_principals:
            note = (
                f" Note: ztunnel only accepts peers of trust domain {self.trust_domain!r}, so "
                f"these principals never match: {', '.join(self.foreign_principals)}."
            )
        if self.problems:
            message = (
                f"invalid AuthorizationPolicy for ztunnel: {listed_problems(self.problems)}. "
                f"Enforced fail-closed: {self.fail_closed_outcome()}"
            )
            if http_message:
                message += " " + http_message
            return _condition("False", REASON_INVALID, message + note, self.generation)
        if http_message:
            return _condition("True", REASON_UNSUPPORTED, http_message + note, self.generation)
        return _condition("True", REASON_ACCEPTED, ACCEPTED_MESSAGE + note, self.generation)

    def fail_closed_outcome(self) -> str:
        if self.action is Action.ALLOW:
            if self.selector_invalid:
                return (
                    "the unreadable selector is read as selecting every workload, and this "
                    "ALLOW policy allows nothing."
                )
            return "ALLOW rules holding invalid values never match."
        outcome = "each invalid condition of this DENY policy is read as matching everything."
        if self.selector_invalid:
            outcome = "the unreadable selector is read as selecting every workload; " + outcome
        return outcome

    def dry_run(self, meta: Mapping[str, Any]) -> bool:
        annotations = meta.get("annotations")
        if annotations is None:
            return False
        if not isinstance(annotations, Mapping):
            self.invalid("metadata.annotations", "expected an object; the policy is enforced")
            return False
        dry_run, problem = dry_run_annotation(annotations)
        if problem:
            self.problems.append(problem)
        return dry_run

    def targets_waypoint(self, spec: Mapping[str, Any]) -> Conversion | None:
        """``Conversion(None, [])`` for a policy that targets a waypoint, else None."""
        refs, ref = spec.get("targetRefs"), spec.get("targetRef")
        if (isinstance(refs, list) and refs) or (isinstance(ref, Mapping) and ref):
            return Conversion(None, [])
        for key, value, expected in (
            ("targetRefs", refs, list),
            ("targetRef", ref, Mapping),
        ):
            if value is not None and not isinstance(value, expected):
                # Meant for a waypoint either way; ztunnel gets nothing, but say why.
                return self.reject(
                    REASON_INVALID,
                    f"spec.{key}: expected {'a list' if expected is list else 'an object'}, "
                    f"found {_type_name(value)}; not sent to ztunnel",
                )
        return None

    def scope(self, spec: Mapping[str, Any]) -> tuple[Scope, dict[str, str] | None]:
        labels, problem = read_selector(
            spec.get("selector"), found="found", falsy_labels_empty=False
        )
        if labels is None:
            if self.namespace == self.root_namespace:
                return Scope.GLOBAL, None
            return Scope.NAMESPACE, None
        if problem is not None:
            self.invalid("spec.selector", problem)
            self.selector_invalid = True
        return Scope.WORKLOAD_SELECTOR, labels

    # -- rules -------------------------------------------------------------------------

    def rules(self, value: Any) -> list[Rule]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.invalid("spec.rules", f"expected a list, found {_type_name(value)}")
            return self.unreadable_rule()
        rules: list[Rule] = []
        for index, item in enumerate(value):
            rules.extend(self.rule(item, f"spec.rules[{index}]"))
        return rules

    def unreadable_rule(self) -> list[Rule]:
        """ALLOW: nothing (never matches).  DENY: a rule that matches everything."""
        return [] if self.action is Action.ALLOW else [Rule(())]

    def rule(self, rule: Any, path: str) -> list[Rule]:
        if not isinstance(rule, Mapping):
            self.invalid(path, f"expected an object, found {_type_name(rule)}")
            return self.unreadable_rule()
        invalid = False
        http = False
        for key in sorted(set(rule) - set(_RULE_KEYS), key=str):
            # Ignoring a section makes a rule match more: right for DENY, and ALLOW drops it.
            self.invalid(f"{path}.{key}", "unknown field")
            invalid = True
        clauses: list[Clause] = []
        for key, parse in (("to", self.operation), ("from", self.source)):
            items = rule.get(key)
            if items is None:
                continue
            if not isinstance(items, list):
                self.invalid(f"{path}.{key}", f"expected a list, found {_type_name(items)}")
                invalid = True
                continue  # no clause: matches everything
            drafts = [parse(item, f"{path}.{key}[{i}]") for i, item in enumerate(items)]
            invalid |= any(d.invalid for d in drafts)
            http |= any(d.http for d in drafts)
            if drafts and not any(d.invalid and d.empty for d in drafts):
                clauses.append(Clause(tuple(d.match() for d in drafts)))
        conditions = rule.get("when")
        if conditions is not None and not isinstance(conditions, list):
            self.invalid(f"{path}.when", f"expected a list, found {_type_name(conditions)}")
            invalid = True
            conditions = None
        for i, item in enumerate(conditions or ()):
            draft = self.condition(item, f"{path}.when[{i}]")
            invalid |= draft.invalid
            http |= bool(draft.http)
            if not (draft.invalid and draft.empty):
                clauses.append(Clause((draft.match(),)))
        if self.action is Action.ALLOW and (invalid or http):
            return []
        return [Rule(tuple(clauses))]

    def source(self, item: Any, path: str) -> _Draft:
        draft, source = self.entry(item, path, "source")
        for key, value in source.items():
            where = f"{path}.source.{key}"
            if key in _HTTP_SOURCE:
                if value:
                    self.found_http(draft, key)
            elif key not in _L4_SOURCE:
                self.invalid(where, "unknown field")
                draft.invalid = True
            elif value is not None:
                if key in ("principals", "notPrincipals"):
                    values = self.strings(value, where, principal=True)
                elif key in ("namespaces", "notNamespaces"):
                    values = self.strings(value, where)
                elif key in ("serviceAccounts", "notServiceAccounts"):
                    values = self.service_accounts(value, where)
                else:
                    values = self.networks(value, where)
                self.set_field(draft, _L4_SOURCE[key], values)
        self.require_content(draft, f"{path}.source")
        return draft

    def operation(self, item: Any, path: str) -> _Draft:
        draft, operation = self.entry(item, path, "operation")
        for key, value in operation.items():
            where = f"{path}.operation.{key}"
            if key in _HTTP_OPERATION:
                if value:
                    self.found_http(draft, key)
            elif key not in _L4_OPERATION:
                self.invalid(where, "unknown field")
                draft.invalid = True
            elif value is not None:
                self.set_field(draft, _L4_OPERATION[key], self.ports(value, where))
        self.require_content(draft, f"{path}.operation")
        return draft

    def entry(self, item: Any, path: str, key: str) -> tuple[_Draft, Mapping[str, Any]]:
        """Unwrap ``{source: {...}}`` / ``{operation: {...}}``; ``{}`` when unreadable."""
        draft = _Draft()
        if not isinstance(item, Mapping):
            self.invalid(path, f"expected an object with {key!r}, found {_type_name(item)}")
            draft.invalid = True
            return draft, {}
        for extra in sorted(set(item) - {key}, key=str):
            self.invalid(f"{path}.{extra}", "unknown field")
            draft.invalid = True
        inner = item.get(key)
        if not isinstance(inner, Mapping):
            self.invalid(f"{path}.{key}", f"expected an object, found {_type_name(inner)}")
            draft.invalid = True
            return draft, {}
        return draft, inner

    def require_content(self, draft: _Draft, path: str) -> None:
        # Istio's validation refuses an empty source or operation; as a Match it would be
        # skipped, which would quietly disarm a DENY.
        if not draft.invalid and not draft.http and draft.empty:
            self.invalid(path, "must not be empty")
            draft.invalid = True

    def condition(self, item: Any, path: str) -> _Draft:
        draft = _Draft()
        if not isinstance(item, Mapping):
            self.invalid(path, f"expected an object, found {_type_name(item)}")
            draft.invalid = True
            return draft
        for extra in sorted(set(item) - {"key", "values", "notValues"}, key=str):
            self.invalid(f"{path}.{extra}", "unknown field")
            draft.invalid = True
        key = item.get("key")
        if not isinstance(key, str) or not key:
            self.invalid(f"{path}.key", "expected a non-empty string")
            draft.invalid = True
            return draft
        if key not in _L4_WHEN:
            self.found_http(draft, key)
            return draft
        kind, positive, negative = _L4_WHEN[key]
        for attr, field_name in (("values", positive), ("notValues", negative)):
            value = item.get(attr)
            if value is None:
                continue
            where = f"{path}.{attr}"
            if kind == "ip":
                values = self.networks(value, where)
            elif kind == "port":
                values = self.ports(value, where)
            else:
                values = self.strings(value, where, principal=kind == "principal")
            self.set_field(draft, field_name, values)
        if not draft.invalid and draft.empty:
            self.invalid(path, f"{key!r} needs values or notValues")
            draft.invalid = True
        return draft

    def found_http(self, draft: _Draft, name: str) -> None:
        draft.http.append(name)
        self.http.add(name)

    @staticmethod
    def set_field(draft: _Draft, name: str, values: list[Any] | None) -> None:
        if values is None:
            draft.invalid = True  # reported already; the field is left out
        elif values:
            draft.fields[name] = values

    # -- values ------------------------------------------------------------------------

    def values(self, value: Any, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.invalid(path, f"expected a list, found {_type_name(value)}")
            return None
        return value

    def parsed(self, value: Any, path: str, parse: Callable[[Any], Any]) -> list[Any] | None:
        """Each item of a list through ``parse``; None (reported) at the first it refuses."""
        items = self.values(value, path)
        if items is None:
            return None
        result = []
        for i, item in enumerate(items):
            try:
                result.append(parse(item))
            except ValueError as exc:
                self.invalid(f"{path}[{i}]", str(exc))
                return None
        return result

    def strings(self, value: Any, path: str, principal: bool = False) -> list[StringMatch] | None:
        if not principal:
            return self.parsed(value, path, StringMatch.parse)
        return self.parsed(value, path, lambda item: self.principal(StringMatch.parse(item)))

    def principal(self, match: StringMatch) -> StringMatch:
        """``match``, noting it when it names another trust domain (it can never match)."""
        if match.kind in ("exact", "prefix") and "/" in match.value:
            domain = match.value.split("/", 1)[0]
            if domain != self.trust_domain:
                self.foreign_principals.append(str(match))
        return match

    def service_accounts(self, value: Any, path: str) -> list[tuple[str, str]] | None:
        return self.parsed(value, path, lambda item: parse_service_account(item, self.namespace))

    def networks(self, value: Any, path: str) -> list[IPNetwork] | None:
        return self.parsed(value, path, parse_network)

    def ports(self, value: Any, path: str) -> list[int] | None:
        return self.parsed(value, path, parse_port)
