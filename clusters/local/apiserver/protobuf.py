"""Kubernetes' protobuf request bodies, read into the JSON form the server works on.

kubectl's generators (``create namespace|configmap|secret|deployment|role|token``),
``drain`` (an Eviction) and ``auth can-i`` (a SelfSubjectAccessReview) go through
client-go's typed clients, which send ``application/vnd.kubernetes.protobuf``.  The
wire form (k8s.io/apimachinery ``pkg/runtime/serializer/protobuf/protobuf.go``) is
the 4-byte magic ``k8s\\0`` and a ``runtime.Unknown`` whose ``typeMeta`` names the
object's apiVersion and kind and whose ``raw`` is the object's own message, as
k8s.io/api's ``generated.proto`` defines it.

No Python package ships those messages (the one on PyPI, ``k8s-proto``, is 2019's),
so the message definitions come from k8s.io/api and k8s.io/apimachinery v0.37.1
(kubectl 1.37.1's) compiled into ``kubernetes-api.binpb``, a ``FileDescriptorSet``
(``tools/k8s_descriptors.py`` rebuilds it; ``protoc
--decode=google.protobuf.FileDescriptorSet`` shows it), and the wire format is read
by Google's ``protobuf`` package.  This module turns a decoded message into what
``encoding/json`` writes for the same Go object:

- k8s' well-known messages take their JSON form: ``Time``/``MicroTime`` are RFC 3339
  strings (the zero time absent, as Go writes it ``null``), ``IntOrString`` a number
  or a string, ``Quantity`` its string, ``Duration`` Go's duration text,
  ``RawExtension``/``FieldsV1`` the JSON they carry;
- ``bytes`` are base64, as Go's JSON writes ``[]byte``;
- fields absent from the wire are absent.  Go's generated marshalling writes every
  non-pointer field, zero or not, where its JSON leaves ``omitempty`` zeros out: empty
  strings are dropped (nearly every string is ``omitempty``), and a zero number or
  ``false`` is dropped where ``kubernetes-api-json-tags.json`` lists the field as a
  non-pointer ``omitempty`` one (read from the Go struct tags by the same tool); a
  pointer's ``0`` or ``false`` (``replicas: 0``) is kept;
- embedded structs JSON inlines (``Volume``'s ``volumeSource``, ``IngressRule``'s
  ``ingressRuleValue``: listed as ``inline`` in the same file) have their fields lifted
  into the enclosing object.

Sans-IO: bytes in, a dict or a :class:`ProtobufError` out.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
API_VERSION = "v0.37.1"  # k8s.io/api and k8s.io/apimachinery the descriptors came from

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_RUNTIME = "k8s.io.apimachinery.pkg.runtime."
# Go's zero time.Time (year 1) in Unix seconds: written on the wire for a non-pointer
# Time nobody set (ObjectMeta.creationTimestamp), and ``null`` in Go's JSON.
_ZERO_TIME = -62135596800

# API group -> the k8s.io/api package its messages live in.
_PACKAGES = {
    "": "core", "apps": "apps", "batch": "batch", "policy": "policy",
    "autoscaling": "autoscaling",
    "rbac.authorization.k8s.io": "rbac", "authorization.k8s.io": "authorization",
    "authentication.k8s.io": "authentication", "networking.k8s.io": "networking",
    "discovery.k8s.io": "discovery", "events.k8s.io": "events",
    "coordination.k8s.io": "coordination", "scheduling.k8s.io": "scheduling",
    "admissionregistration.k8s.io": "admissionregistration",
}
# Option kinds every group version shares; their messages are apimachinery's.
_META_KINDS = frozenset({"DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions"})


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf object."""


class UnsupportedKind(ProtobufError):
    """A well-formed envelope around a kind with no message here (a custom resource: a
    real server takes those as JSON only, too)."""


@functools.cache
def _json_tags() -> dict[str, dict[str, frozenset[str]]]:
    """``omitempty`` and ``inline``: message -> proto field names (see the docstring)."""
    text = resources.files(__package__).joinpath("kubernetes-api-json-tags.json").read_text()
    return {key: {message: frozenset(fields) for message, fields in messages.items()}
            for key, messages in json.loads(text).items()}


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    data = resources.files(__package__).joinpath("kubernetes-api.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:  # protoc wrote them dependencies first (--include_imports)
        pool.Add(f)
    return pool


def message_name(api_version: str, kind: str) -> str:
    """The protobuf message that holds ``kind`` of ``api_version``."""
    if kind in _META_KINDS:
        return _META + kind
    group, _, version = api_version.rpartition("/")
    package = _PACKAGES.get(group)
    if package is None or not version:
        raise UnsupportedKind(
            f"the local cluster reads protobuf bodies of the built-in API groups only, not "
            f"{api_version!r}: send this object as JSON (application/json)")
    return f"k8s.io.api.{package}.{version}.{kind}"


def _message_class(name: str) -> type[Message]:
    try:
        desc = _pool().FindMessageTypeByName(name)
    except KeyError:
        raise UnsupportedKind(
            f"{name} is not a message of k8s.io/api {API_VERSION}: send this object as "
            "JSON (application/json)") from None
    return message_factory.GetMessageClass(desc)


def decode(body: bytes) -> dict[str, Any]:
    """The object a protobuf request body holds, as JSON would hold it (apiVersion and
    kind included, from the envelope)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic "
                            "number (k8s\\0)")
    try:
        envelope = _message_class(_RUNTIME + "Unknown").FromString(body[len(MAGIC):])
    except DecodeError as exc:
        raise ProtobufError(f"the protobuf envelope (runtime.Unknown) is malformed: {exc}"
                            ) from None
    meta = envelope.typeMeta  # type: ignore[attr-defined]
    api_version, kind = meta.apiVersion, meta.kind
    if not kind:
        raise ProtobufError("the protobuf envelope names no kind (typeMeta.kind)")
    encoding = envelope.contentEncoding  # type: ignore[attr-defined]
    if encoding:
        raise ProtobufError(f"the protobuf body's contentEncoding {encoding!r} is not "
                            "supported; send it unencoded")
    cls = _message_class(message_name(api_version, kind))
    try:
        msg = cls.FromString(envelope.raw)  # type: ignore[attr-defined]
    except DecodeError as exc:
        raise ProtobufError(f"the {kind} in the protobuf body is malformed: {exc}") from None
    out = {"apiVersion": api_version, "kind": kind} if api_version else {"kind": kind}
    out.update(to_json(msg))
    return out


def to_json(msg: Message) -> Any:
    """``msg`` as Go's ``encoding/json`` writes the same object (see the module's
    docstring); a k8s well-known message becomes a scalar."""
    desc: Descriptor = msg.DESCRIPTOR
    special = _SPECIAL.get(desc.full_name)
    if special is not None:
        return special(msg)
    out: dict[str, Any] = {}
    tags = _json_tags()
    zero_omitted = tags["omitempty"].get(desc.full_name, frozenset())
    inline = tags["inline"].get(desc.full_name, frozenset())
    for field, value in msg.ListFields():
        if field.name in zero_omitted and not value:
            continue
        converted = _field_value(field, value)
        if converted is _ABSENT:
            continue
        if field.name in inline and isinstance(converted, dict):
            out.update(converted)
        else:
            out[field.json_name] = converted
    return out


_ABSENT = object()


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    # An element of a list or map is kept even when empty (apiGroups: [""] is the core
    # group); only a plain field's empty string is Go's unset one.
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        entries = {k: _scalar_or_message(value_field, v, element=True)
                   for k, v in value.items()}
        return {k: v for k, v in entries.items() if v is not _ABSENT} or _ABSENT
    if field.is_repeated:
        items = [_scalar_or_message(field, v, element=True) for v in value]
        return [v for v in items if v is not _ABSENT] or _ABSENT
    return _scalar_or_message(field, value)


def _scalar_or_message(field: FieldDescriptor, value: Any, *, element: bool = False) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        converted = to_json(value)
        return _ABSENT if converted is None else converted
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.type == FieldDescriptor.TYPE_STRING and value == "" and not element:
        return _ABSENT
    return value


def _rfc3339(msg: Any, *, micro: bool) -> str | None:
    # Go writes a zero Time as an empty message (metav1.Time.Marshal), or, from older
    # writers, as year 1's seconds; both are Go's zero time, null in its JSON
    if not (msg.HasField("seconds") or msg.HasField("nanos")) or msg.seconds <= _ZERO_TIME:
        return None
    t = datetime.datetime.fromtimestamp(msg.seconds, datetime.UTC)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{msg.nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(msg: Any) -> int | str:
    return msg.strVal if msg.type == 1 else msg.intVal


def _raw_json(msg: Any) -> Any:
    import orjson  # the server's JSON reader; RawExtension holds JSON on the wire

    raw = msg.raw if hasattr(msg, "raw") else msg.Raw
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtobufError("an embedded object (RawExtension) in the protobuf body is not "
                            "JSON; send the whole object as JSON") from None


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()``: ``1h2m3.5s``, ``150ms``, ``0s``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    n = abs(nanoseconds)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _trim(n / size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(number: float) -> str:
    return f"{number:.9f}".rstrip("0").rstrip(".")


_SPECIAL: dict[str, Any] = {
    _META + "Time": lambda m: _rfc3339(m, micro=False),
    _META + "MicroTime": lambda m: _rfc3339(m, micro=True),
    _META + "Duration": lambda m: go_duration(m.duration),
    _META + "FieldsV1": _raw_json,
    _RUNTIME + "RawExtension": _raw_json,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda m: m.string,
}
