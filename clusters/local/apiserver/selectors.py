"""Label and field selectors, as the Kubernetes API server understands them.

Clients (kubectl, client-go informers, the ``kubernetes`` Python client, Istio's
controllers) filter lists and watches with ``?labelSelector=`` and
``?fieldSelector=``; controllers inside the local cluster match pods against a
Deployment's or Service's selector.  Both must behave exactly like the real API
server, or a conformance run measures our server rather than the implementation
under test.  So this module follows apimachinery's ``labels`` and ``fields``
packages closely: the same grammar, the same validation, the same matching
semantics (``!=``/``notin`` match objects *without* the label; a missing field is
the empty string) and the same canonical string form.

Errors are raised as :class:`SelectorError`; the server answers them with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SUPPORTED_FIELD_LABELS",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "check_field_selector",
    "everything",
    "field_value",
    "format_label_selector",
    "format_labels",
    "label_selector_from_spec",
    "nothing",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_map",
    "validate_label_key",
    "validate_label_value",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or is not allowed; the server answers 400."""


# --------------------------------------------------------------------------- validation

_QUALIFIED_NAME_MAX = 63
_LABEL_VALUE_MAX = 63
_DNS1123_SUBDOMAIN_MAX = 253
_QNAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_LABEL_VALUE_RE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", re.ASCII)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)
_QNAME_HELP = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character, with an optional DNS subdomain prefix and '/' "
    "(e.g. 'example.com/MyName')"
)
_VALUE_HELP = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)


def validate_label_key(key: str) -> None:
    """Raise :class:`SelectorError` unless ``key`` is a valid label key.

    Kubernetes label keys are "qualified names": an optional DNS-subdomain prefix
    and ``/``, then a name of at most 63 characters.  Rejecting bad keys in a
    selector (rather than just matching nothing) is what the real server does.
    """
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            raise SelectorError(f'invalid label key "{key}": prefix part must be non-empty')
        if len(prefix) > _DNS1123_SUBDOMAIN_MAX:
            raise SelectorError(
                f'invalid label key "{key}": prefix part must be no more than '
                f"{_DNS1123_SUBDOMAIN_MAX} characters"
            )
        if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            raise SelectorError(
                f'invalid label key "{key}": prefix part must be a lowercase RFC 1123 '
                "subdomain (lowercase alphanumerics, '-' and '.', starting and ending "
                "with an alphanumeric character)"
            )
    else:
        raise SelectorError(f'invalid label key "{key}": a qualified name {_QNAME_HELP}')
    if not name:
        raise SelectorError(f'invalid label key "{key}": name part must be non-empty')
    if len(name) > _QUALIFIED_NAME_MAX:
        raise SelectorError(
            f'invalid label key "{key}": name part must be no more than '
            f"{_QUALIFIED_NAME_MAX} characters"
        )
    if not _QNAME_RE.fullmatch(name):
        raise SelectorError(f'invalid label key "{key}": name part {_QNAME_HELP}')


def validate_label_value(key: str, value: str) -> None:
    """Raise :class:`SelectorError` unless ``value`` is a valid label value."""
    if len(value) > _LABEL_VALUE_MAX:
        raise SelectorError(
            f'invalid label value "{value}" for key "{key}": must be no more than '
            f"{_LABEL_VALUE_MAX} characters"
        )
    if not _LABEL_VALUE_RE.fullmatch(value):
        raise SelectorError(f'invalid label value "{value}" for key "{key}": {_VALUE_HELP}')


_INT64_RE: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _parse_int64(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 10, 64)``: stricter than ``int()`` (no spaces, no _)."""
    if not _INT64_RE.fullmatch(text):
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


# --------------------------------------------------------------------------- label selectors

# Operator spellings, as in apimachinery's ``selection`` package.
IN: Final = "in"
NOT_IN: Final = "notin"
EQUALS: Final = "="
DOUBLE_EQUALS: Final = "=="
NOT_EQUALS: Final = "!="
EXISTS: Final = "exists"
DOES_NOT_EXIST: Final = "!"
GREATER_THAN: Final = "gt"
LESS_THAN: Final = "lt"
_OPERATORS: Final = frozenset(
    {IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN}
)


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key <operator> values``.

    ``values`` is empty for exists/does-not-exist, one value for the equality and
    ``gt``/``lt`` operators, and a non-empty set for ``in``/``notin``.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
        """Build a validated requirement, like apimachinery's ``labels.NewRequirement``."""
        vals = tuple(values)
        validate_label_key(key)
        if operator in (IN, NOT_IN):
            if not vals:
                raise SelectorError(
                    f"invalid requirement on \"{key}\": for 'in', 'notin' operators, "
                    "values set can't be empty"
                )
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                raise SelectorError(
                    f'invalid requirement on "{key}": exact-match compatibility requires '
                    "one single value"
                )
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if vals:
                raise SelectorError(
                    f'invalid requirement on "{key}": values set must be empty for exists '
                    "and does not exist"
                )
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                raise SelectorError(
                    f"invalid requirement on \"{key}\": for 'Gt', 'Lt' operators, exactly "
                    "one value is required"
                )
            if _parse_int64(vals[0]) is None:
                raise SelectorError(
                    f"invalid requirement on \"{key}\": for 'Gt', 'Lt' operators, the value "
                    f'must be an integer, got "{vals[0]}"'
                )
        else:
            raise SelectorError(f'invalid requirement on "{key}": unknown operator "{operator}"')
        for value in vals:
            validate_label_value(key, value)
        return cls(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement.

        Note the asymmetry Kubernetes has: ``!=`` and ``notin`` match objects that
        do not carry the label at all, while ``=``/``in`` require it.
        """
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have = _parse_int64(labels[self.key])
            want = _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        """Canonical form: values sorted, ``key in (a,b)``, ``!key``, ``key>3``..."""
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({vals})"
        spelled = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{spelled}{vals}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of :class:`Requirement` s, kept sorted by key.

    ``LabelSelector()`` (no requirements) matches everything.  The distinct
    :func:`nothing` selector (``matches_nothing=True``) matches no object; it is
    what Kubernetes makes of a *nil* ``metav1.LabelSelector`` (for example a pod
    affinity term without a selector), as opposed to an empty one.
    """

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` (``None`` = no labels) is selected."""
        if self.matches_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True for the match-everything selector (no requirements)."""
        return not self.matches_nothing and not self.requirements

    def exact_match(self, key: str) -> str | None:
        """The single value ``key`` must equal (``=``/``==``/``in`` of one), if any.

        Lets a caller use an index instead of scanning, as client-go indexers do.
        """
        for r in self.requirements:
            if r.key == key and r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                return r.values[0]
        return None

    def __str__(self) -> str:
        """The canonical query-string form; ``""`` for everything and for nothing."""
        return ",".join(str(r) for r in self.requirements)


def everything() -> LabelSelector:
    """The selector that matches every object (an empty selector)."""
    return LabelSelector()


def nothing() -> LabelSelector:
    """The selector that matches no object (what a nil ``LabelSelector`` means)."""
    return LabelSelector(matches_nothing=True)


def _sorted_selector(requirements: Iterable[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


# Lexer tokens.
_T_ID = "identifier"
_T_IN = "in"
_T_NOTIN = "notin"
_T_EOS = "end of string"
_T_COMMA = ","
_T_OPEN = "("
_T_CLOSE = ")"
_T_EQ = "="
_T_DEQ = "=="
_T_NEQ = "!="
_T_NOT = "!"
_T_GT = ">"
_T_LT = "<"
_T_ERROR = "error"
_SPECIAL_CHARS: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")
_SYMBOLS: Final = {
    "!": _T_NOT,
    "!=": _T_NEQ,
    "(": _T_OPEN,
    ")": _T_CLOSE,
    ",": _T_COMMA,
    "=": _T_EQ,
    "==": _T_DEQ,
    ">": _T_GT,
    "<": _T_LT,
}
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


def _lex(text: str) -> list[tuple[str, str]]:
    """Split a selector into (token, literal) pairs, ending with end-of-string."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_T_EOS, ""))
            return out
        ch = text[i]
        if ch in _SPECIAL_CHARS:
            j = i
            while j < n and text[j] in _SPECIAL_CHARS and text[i : j + 1] in _SYMBOLS:
                j += 1
            if j == i:  # pragma: no cover - every special char is itself a symbol
                out.append((_T_ERROR, ch))
                i += 1
                continue
            lit = text[i:j]
            out.append((_SYMBOLS[lit], lit))
            i = j
            continue
        j = i
        while j < n and text[j] not in _WHITESPACE and text[j] not in _SPECIAL_CHARS:
            j += 1
        lit = text[i:j]
        out.append(({"in": _T_IN, "notin": _T_NOTIN}.get(lit, _T_ID), lit))
        i = j


class _Parser:
    """Recursive-descent parser mirroring apimachinery's ``labels.Parser``.

    Keywords ``in``/``notin`` are only keywords in operator position; as keys or
    values they are plain identifiers (``in in (in)`` is a valid selector).
    """

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _tok(self, index: int, values: bool) -> tuple[str, str]:
        tok, lit = self.items[min(index, len(self.items) - 1)]
        if values and tok in (_T_IN, _T_NOTIN):
            tok = _T_ID
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[str, str]:
        return self._tok(self.pos, values)

    def consume(self, values: bool = True) -> tuple[str, str]:
        item = self._tok(self.pos, values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok == _T_EOS:
                return requirements
            if tok not in (_T_ID, _T_NOT):
                raise SelectorError(
                    f"unable to parse requirement: found '{lit}', expected: !, identifier, "
                    "or 'end of string'"
                )
            requirements.append(self.parse_requirement())
            tok, lit = self.consume()
            if tok == _T_EOS:
                return requirements
            if tok != _T_COMMA:
                raise SelectorError(
                    f"unable to parse requirement: found '{lit}', expected: ',' or 'end of string'"
                )
            tok, lit = self.lookahead()
            if tok not in (_T_ID, _T_NOT):
                raise SelectorError(
                    f"unable to parse requirement: found '{lit}', expected: identifier after ','"
                )

    def parse_requirement(self) -> Requirement:
        operator = ""
        tok, lit = self.consume()
        if tok == _T_NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _T_ID:
            raise SelectorError(f"unable to parse requirement: found '{lit}', expected: identifier")
        key = lit
        validate_label_key(key)
        if operator == DOES_NOT_EXIST:
            return Requirement.new(key, DOES_NOT_EXIST)
        if self.lookahead()[0] in (_T_EOS, _T_COMMA):
            return Requirement.new(key, EXISTS)
        operator = self.parse_operator()
        values = self.parse_values() if operator in (IN, NOT_IN) else self.parse_exact_value()
        return Requirement.new(key, operator, sorted(values))

    def parse_operator(self) -> str:
        tok, lit = self.consume(values=False)
        ops = {
            _T_IN: IN,
            _T_NOTIN: NOT_IN,
            _T_EQ: EQUALS,
            _T_DEQ: DOUBLE_EQUALS,
            _T_NEQ: NOT_EQUALS,
            _T_GT: GREATER_THAN,
            _T_LT: LESS_THAN,
        }
        if tok not in ops:
            raise SelectorError(
                f"unable to parse requirement: found '{lit}', expected: {_BINARY_OPERATORS}"
            )
        return ops[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _T_OPEN:
            raise SelectorError(f"unable to parse requirement: found '{lit}', expected: '('")
        tok, lit = self.lookahead()
        if tok == _T_CLOSE:  # "()" is the set holding the empty string
            self.consume()
            return {""}
        if tok not in (_T_ID, _T_COMMA):
            raise SelectorError(
                f"unable to parse requirement: found '{lit}', expected: ',', ')' or identifier"
            )
        values = self.parse_identifiers()
        tok, lit = self.consume()
        if tok != _T_CLOSE:
            raise SelectorError(f"unable to parse requirement: found '{lit}', expected: ')'")
        return values

    def parse_identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _T_ID:
                values.add(lit)
                nxt, nlit = self.lookahead()
                if nxt == _T_COMMA:
                    continue
                if nxt == _T_CLOSE:
                    return values
                raise SelectorError(
                    f"unable to parse requirement: found '{nlit}', expected: ',' or ')'"
                )
            if tok == _T_COMMA:  # empty values: "(,a)", "(a,)", "(a,,b)"
                if not values:
                    values.add("")
                nxt, _ = self.lookahead()
                if nxt == _T_CLOSE:
                    values.add("")
                    return values
                if nxt == _T_COMMA:
                    self.consume()
                    values.add("")
                continue
            raise SelectorError(
                f"unable to parse requirement: found '{lit}', expected: ',', or identifier"
            )

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_T_EOS, _T_COMMA):  # "a=" selects the empty value
            return {""}
        tok, lit = self.consume()
        if tok == _T_ID:
            return {lit}
        raise SelectorError(f"unable to parse requirement: found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``?labelSelector=`` syntax into a :class:`LabelSelector`.

    Supports ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``,
    ``!a``, ``a>1``/``a<1`` and comma-separated conjunctions, with free
    whitespace.  ``None``/``""`` select everything.  Keys and values are validated
    like the real server; any problem raises :class:`SelectorError` whose message
    names the offending token.
    """
    if not text or not text.strip():
        return everything()
    return _sorted_selector(_Parser(text).parse())


_SPEC_OPERATORS: Final = {
    "In": IN,
    "NotIn": NOT_IN,
    "Exists": EXISTS,
    "DoesNotExist": DOES_NOT_EXIST,
}


def label_selector_from_spec(
    spec: Mapping[str, Any] | None, *, none_matches_everything: bool = False
) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` object (``matchLabels``/``matchExpressions``).

    Kubernetes distinguishes the two "no selector" cases, and so does this:

    * ``None`` (the field is absent / null) selects **nothing** -- a pod affinity
      term or PodDisruptionBudget without a selector matches no pod.  Pass
      ``none_matches_everything=True`` for the few fields where absence means
      "all" in the caller's semantics.
    * ``{}`` (present but empty) selects **everything** -- e.g. a NetworkPolicy's
      ``podSelector: {}``.

    Raises :class:`SelectorError` for unknown operators or invalid keys/values.
    """
    if spec is None:
        return everything() if none_matches_everything else nothing()
    match_labels = spec.get("matchLabels") or {}
    expressions = spec.get("matchExpressions") or []
    if not match_labels and not expressions:
        return everything()
    requirements = [Requirement.new(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        op = expr.get("operator")
        if op not in _SPEC_OPERATORS:
            raise SelectorError(f'"{op}" is not a valid label selector operator')
        requirements.append(
            Requirement.new(expr.get("key", ""), _SPEC_OPERATORS[op], expr.get("values") or [])
        )
    return _sorted_selector(requirements)


def selector_from_map(
    labels: Mapping[str, str] | None,
    *,
    none_matches_everything: bool = True,
    validate: bool = False,
) -> LabelSelector:
    """A selector requiring every ``key=value`` of a plain map (a Service's selector).

    Like ``labels.SelectorFromSet``, an empty or missing map selects everything.
    Beware: a Service *without* a selector must not be matched against pods at
    all (its Endpoints are managed by hand); the endpoints controller checks for
    that before calling this.  ``none_matches_everything=False`` makes ``None``
    select nothing instead, for callers that prefer that guard here.

    Values stored in objects were validated on write, so ``validate`` is off by
    default; turn it on for selectors that come straight from a request.
    """
    if labels is None and not none_matches_everything:
        return nothing()
    if not labels:
        return everything()
    if validate:
        return _sorted_selector(Requirement.new(k, EQUALS, [v]) for k, v in labels.items())
    return _sorted_selector(Requirement(k, EQUALS, (v,)) for k, v in labels.items())


def format_labels(labels: Mapping[str, str] | None) -> str:
    """``k=v,k2=v2`` sorted by key, or ``<none>``: how printers show a label map."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(spec: Mapping[str, Any] | None) -> str:
    """How printers show a ``metav1.LabelSelector``: its string, ``<none>`` or ``<error>``."""
    try:
        text = str(label_selector_from_spec(spec))
    except SelectorError:
        return "<error>"
    return text or "<none>"


# --------------------------------------------------------------------------- field selectors

# The field labels each built-in kind accepts (apimachinery's field label
# conversion functions).  Kinds not listed accept only the generic pair.
_META_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})
SUPPORTED_FIELD_LABELS: Final[Mapping[str, frozenset[str]]] = {
    "Pod": _META_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
        "spec.host",  # pre-1.0 spelling of spec.nodeName, still accepted
    },
    "Node": frozenset({"metadata.name", "spec.unschedulable"}),
    "Namespace": frozenset({"metadata.name", "status.phase"}),
    "Event": _META_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "Secret": _META_FIELDS | {"type"},
    "Service": _META_FIELDS | {"spec.clusterIP", "spec.type"},
    "ReplicationController": _META_FIELDS | {"status.replicas"},
    "ReplicaSet": _META_FIELDS | {"status.replicas"},
    "Job": _META_FIELDS | {"status.successful"},
    "CertificateSigningRequest": _META_FIELDS | {"spec.signerName"},
}

# Field labels that are not a plain JSON path into the v1 object, and the Go zero
# value a missing field has (Kubernetes compares the Go struct's field, so a
# missing bool is "false", not "").
_FIELD_ALIASES: Final = {
    ("Pod", "spec.host"): "spec.nodeName",
    ("Job", "status.successful"): "status.succeeded",
}
_FIELD_DEFAULTS: Final = {
    ("Pod", "spec.hostNetwork"): "false",
    ("Node", "spec.unschedulable"): "false",
    ("ReplicationController", "status.replicas"): "0",
    ("ReplicaSet", "status.replicas"): "0",
    ("Job", "status.successful"): "0",
}


def _to_field_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None  # maps and lists are not selectable


def _lookup(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string value of field label ``field`` on ``obj``; ``""`` when missing.

    Mostly a dotted path into the object; a few labels are computed the way the
    real server's ``*ToSelectableFields`` functions do (``status.podIP`` is the
    first of ``status.podIPs``; an Event's ``source`` falls back to
    ``reportingComponent``; missing bools are ``"false"``).
    """
    kind = obj.get("kind", "")
    if kind == "Pod" and field == "status.podIP":
        ips = _lookup(obj, "status.podIPs")
        if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
            return str(ips[0].get("ip", ""))
    if kind == "Event" and field == "source":
        source = _to_field_string(_lookup(obj, "source.component"))
        return source or _to_field_string(obj.get("reportingComponent")) or ""
    path = _FIELD_ALIASES.get((kind, field), field)
    value = _to_field_string(_lookup(obj, path))
    if value is None:
        return _FIELD_DEFAULTS.get((kind, field), "")
    return value


_FIELD_OPERATORS: Final = ("!=", "==", "=")


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector: ``field=value`` or ``field!=value``.

    ``operator`` is normalised to ``"="`` or ``"!="`` (``==`` means ``=``).
    """

    field: str
    operator: str
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Compare the object's field (``""`` when missing) with the wanted value."""
        have = field_value(obj, self.field)
        return have == self.value if self.operator == "=" else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of :class:`FieldRequirement` s; empty selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` satisfies every requirement (missing fields are ``""``)."""
        return all(r.matches(obj) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    @property
    def fields(self) -> frozenset[str]:
        """The field labels used, for checking them against what a kind supports."""
        return frozenset(r.field for r in self.requirements)

    def exact_match(self, field: str) -> str | None:
        """The value ``field`` must equal, if the selector pins it (e.g. a name lookup)."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    """Split on commas not escaped by a backslash."""
    terms: list[str] = []
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape_field_value(value: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(
                    f"invalid field selector: invalid escape sequence: \\{ch} in value '{value}'"
                )
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(
                f"invalid field selector: unescaped character '{ch}' in value '{value}'"
            )
        else:
            out.append(ch)
    if escaped:
        raise SelectorError(
            f"invalid field selector: invalid escape sequence: \\ at the end of value '{value}'"
        )
    return "".join(out)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse the ``?fieldSelector=`` syntax: ``f=v``, ``f==v``, ``f!=v``, joined by commas.

    Values may escape ``\\``, ``,`` and ``=`` with a backslash.  Whitespace around
    field names and values is ignored.  Terms are sorted, as the real server does,
    so equal selectors print equally.  ``None``/``""`` select everything.
    """
    if not text:
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if not part.strip():
            continue
        for i in range(len(part)):
            op = next((o for o in _FIELD_OPERATORS if part.startswith(o, i)), None)
            if op is not None:
                field, raw = part[:i].strip(), part[i + len(op) :].strip()
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        if not field:
            raise SelectorError(f"invalid selector: '{text}'; missing field name in '{part}'")
        value = _unescape_field_value(raw)
        requirements.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(requirements))


def check_field_selector(
    selector: FieldSelector, kind: str, *, extra_fields: Iterable[str] = ()
) -> None:
    """Raise :class:`SelectorError` if ``selector`` uses a field ``kind`` cannot select on.

    Real servers refuse unknown field labels (``field label not supported:
    spec.foo``) instead of silently matching nothing, and clients rely on that to
    detect mistakes.  ``extra_fields`` adds a custom resource's
    ``selectableFields``; kinds without a table entry accept ``metadata.name``
    and ``metadata.namespace``.
    """
    allowed = SUPPORTED_FIELD_LABELS.get(kind, _META_FIELDS) | frozenset(extra_fields)
    for requirement in selector.requirements:
        if requirement.field not in allowed:
            raise SelectorError(f"field label not supported: {requirement.field}")
