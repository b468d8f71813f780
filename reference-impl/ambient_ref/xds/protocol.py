"""The configuration protocol between the control plane and ztunnels: wire format and state.

Istio's ztunnel speaks Delta ADS (gRPC) to istiod.  This implementation keeps its semantics
(a full state on connect, incremental updates after, versions, acknowledgements, resuming
on reconnect) in a form a reader can follow with a WebSocket client and ``json``: JSON
messages over a WebSocket on HTTPS.  This module is sans-IO: messages, the server's
``ResourceStore`` and the client's ``ClientState``; ``server.py`` and ``client.py`` move the
bytes.

Transport
    ``GET /v1/xds`` upgraded to a WebSocket, over TLS in a cluster, with
    ``Authorization: Bearer <Kubernetes service account token>``; the server answers 401
    without a valid token.  One message per text frame: a JSON object whose ``"type"`` names
    it.  Either side pings (WebSocket heartbeat) to notice a peer that vanished.

Resource types
    ``"workload"`` (key: pod uid), ``"service"`` (key: ``"namespace/hostname"``) and
    ``"authorization"`` (key: ``"namespace/name"``).  A resource is a JSON object (see
    ``types.py``; authorizations are opaque here).  A message names every type it carries;
    an unknown type is a malformed message.

Versions
    One version covers the whole configuration (all types): every change the server
    publishes gets a new one.  Versions are opaque strings to clients (the server writes
    ``"<epoch>.<serial>"``: the epoch is random per server process, so a version of a
    previous process is never mistaken for a current one; the serial increases by one per
    change).  Clients only compare versions for equality.

Client to server
    ``{"type": "hello", "node": str, "namespace": str | null,
    "resource_versions": {type: version}}``
        First message on every connection.  ``resource_versions`` is what the client holds
        (empty on first start).  Sent again on an open connection, it asks for a resync.
    ``{"type": "ack", "version": str}``
        The message of that version was applied.
    ``{"type": "nack", "version": str, "error": str}``
        The message of that version was rejected; the client keeps serving the configuration
        it had (``version`` is ``""`` if the message was too broken to name one).

Server to client
    ``{"type": "snapshot", "version": str, "resources": {type: {key: resource}}}``
        The whole configuration: it replaces what the client had.  A type left out is empty.
    ``{"type": "delta", "version": str, "base": str, "upserts": {type: {key: resource}},
    "removals": {type: [key]}}``
        What changed from version ``base`` to ``version``: resources added or replaced whole,
        and keys removed.  A client applies it only if it holds exactly ``base``.

Ordering
    After a hello the server sends a snapshot or, when the hello shows the client holds a
    version the server still has the history from, a delta from that version (possibly
    empty: ``base == version``).  After that, each delta's ``base`` is the previous
    message's ``version``.  The server does not wait for acks before sending more; acks
    record, per session, what a ztunnel applied.  A server with a client too slow to keep up
    drops the deltas queued for it and sends one snapshot instead.

NACK
    A client rejects a message it cannot apply as a whole (it never applies half of one):
    a malformed message or resource, or a delta whose ``base`` is not the version it holds.
    It keeps serving its last good configuration and sends ``nack``.  For a delta it also
    sends a hello with empty ``resource_versions``, asking for a snapshot, and ignores
    deltas until that snapshot arrives.  For a rejected snapshot it asks for nothing:
    the same snapshot would come back; the next change repairs it.  The server logs a nack
    and keeps it in the session's state for operators.

Reconnect and resync
    A client that loses its connection keeps serving its last configuration, reconnects with
    bounded, jittered exponential backoff, and says in its hello which version it holds.  The
    server resumes with a delta when it can and sends a snapshot otherwise (a restarted
    server always does).  A client applying a snapshot reports to its user only what differs
    from what it held.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .types import (
    AUTHORIZATION,
    RESOURCE_TYPES,
    SERVICE,
    WORKLOAD,
    Service,
    Workload,
    decode_resource,
    encode_resource,
)

XDS_PATH = "/v1/xds"
TYPES = RESOURCE_TYPES

Resources = dict[str, dict[str, dict[str, Any]]]  # type -> key -> resource


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says what is wrong."""


# -- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Client to server: who is connecting and which version it holds (see module doc)."""

    node: str
    namespace: str | None = None
    resource_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "node": self.node,
            "namespace": self.namespace,
            "resource_versions": dict(self.resource_versions),
        }


@dataclass(frozen=True)
class Ack:
    """Client to server: the message of ``version`` was applied."""

    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ack", "version": self.version}


@dataclass(frozen=True)
class Nack:
    """Client to server: the message of ``version`` was rejected, and why."""

    version: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "nack", "version": self.version, "error": self.error}


@dataclass(frozen=True)
class Snapshot:
    """Server to client: the whole configuration at ``version``."""

    version: str
    resources: Resources

    def to_dict(self) -> dict[str, Any]:
        return {"type": "snapshot", "version": self.version, "resources": self.resources}


@dataclass(frozen=True)
class Delta:
    """Server to client: the changes from version ``base`` to ``version``."""

    version: str
    base: str
    upserts: Resources = field(default_factory=dict)
    removals: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "delta",
            "version": self.version,
            "base": self.base,
            "upserts": self.upserts,
            "removals": self.removals,
        }

    @property
    def empty(self) -> bool:
        """Whether it changes nothing (a resume delta for a client already current)."""
        return not any(self.upserts.values()) and not any(self.removals.values())


ClientMessage = Hello | Ack | Nack
ServerMessage = Snapshot | Delta
Message = ClientMessage | ServerMessage


def encode(message: Message) -> str:
    """The text frame of a message."""
    return json.dumps(message.to_dict(), separators=(",", ":"))


def decode(data: str | bytes | Mapping[str, Any]) -> Message:
    """Parse and validate one message (a text frame, or already parsed JSON).

    Raises ``ProtocolError`` naming the first problem found.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ProtocolError(f"message must be a JSON object, not {type(data).__name__}")
    kind = data.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {', '.join(_PARSERS)}")
    return parser(data)


def decode_client(data: str | bytes | Mapping[str, Any]) -> ClientMessage:
    """Parse a message a server receives: hello, ack or nack."""
    message = decode(data)
    if not isinstance(message, Hello | Ack | Nack):
        raise ProtocolError(f"a client does not send {message.to_dict()['type']!r}")
    return message


def decode_server(data: str | bytes | Mapping[str, Any]) -> ServerMessage:
    """Parse a message a client receives: snapshot or delta."""
    message = decode(data)
    if not isinstance(message, Snapshot | Delta):
        raise ProtocolError(f"a server does not send {message.to_dict()['type']!r}")
    return message


def _parse_hello(d: Mapping[str, Any]) -> Hello:
    node = _field_str(d, "hello", "node")
    if not node:
        raise ProtocolError("hello: 'node' must not be empty")
    namespace = d.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ProtocolError("hello: 'namespace' must be a string or null")
    versions = d.get("resource_versions", {})
    if not isinstance(versions, Mapping):
        raise ProtocolError("hello: 'resource_versions' must be an object {type: version}")
    for rtype, version in versions.items():
        _check_type("hello: resource_versions", rtype)
        if not isinstance(version, str):
            raise ProtocolError(f"hello: resource_versions[{rtype!r}] must be a string")
    return Hello(node=node, namespace=namespace, resource_versions=dict(versions))


def _parse_ack(d: Mapping[str, Any]) -> Ack:
    return Ack(version=_field_str(d, "ack", "version"))


def _parse_nack(d: Mapping[str, Any]) -> Nack:
    return Nack(version=_field_str(d, "nack", "version"), error=_field_str(d, "nack", "error"))


def _parse_snapshot(d: Mapping[str, Any]) -> Snapshot:
    version = _version(d, "snapshot", "version")
    return Snapshot(version=version, resources=_resources(d, "snapshot", "resources"))


def _parse_delta(d: Mapping[str, Any]) -> Delta:
    version = _version(d, "delta", "version")
    base = _version(d, "delta", "base")
    upserts = _resources(d, "delta", "upserts")
    removals_in = d.get("removals", {})
    if not isinstance(removals_in, Mapping):
        raise ProtocolError("delta: 'removals' must be an object {type: [key]}")
    removals: dict[str, list[str]] = {}
    for rtype, keys in removals_in.items():
        _check_type("delta: removals", rtype)
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ProtocolError(f"delta: removals[{rtype!r}] must be a list of keys")
        both = set(keys) & set(upserts.get(rtype, {}))
        if both:
            raise ProtocolError(f"delta: {rtype} {sorted(both)} both upserted and removed")
        removals[rtype] = list(keys)
    return Delta(version=version, base=base, upserts=upserts, removals=removals)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    "hello": _parse_hello,
    "ack": _parse_ack,
    "nack": _parse_nack,
    "snapshot": _parse_snapshot,
    "delta": _parse_delta,
}


def _field_str(d: Mapping[str, Any], what: str, name: str) -> str:
    value = d.get(name)
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: {name!r} must be a string, not {type(value).__name__}")
    return value


def _version(d: Mapping[str, Any], what: str, name: str) -> str:
    value = _field_str(d, what, name)
    if not value:
        raise ProtocolError(f"{what}: {name!r} must not be empty")
    return value


def _check_type(what: str, rtype: Any) -> None:
    if rtype not in TYPES:
        raise ProtocolError(f"{what}: unknown resource type {rtype!r}; known: {', '.join(TYPES)}")


def _resources(d: Mapping[str, Any], what: str, name: str) -> Resources:
    value = d.get(name, {})
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what}: {name!r} must be an object {{type: {{key: resource}}}}")
    result: Resources = {}
    for rtype, items in value.items():
        _check_type(f"{what}: {name}", rtype)
        if not isinstance(items, Mapping):
            raise ProtocolError(f"{what}: {name}[{rtype!r}] must be an object {{key: resource}}")
        for key, resource in items.items():
            if not key:
                raise ProtocolError(f"{what}: {name}[{rtype!r}] has an empty key")
            if not isinstance(resource, Mapping):
                raise ProtocolError(f"{what}: {name}[{rtype!r}][{key!r}] must be an object")
        result[rtype] = dict(items)
    return result


# -- server side ----------------------------------------------------------------------------


class ResourceStore:
    """The configuration the server publishes, with its version and recent history.

    ``set_all`` / ``replace`` take the complete new set of resources of a type (what
    ``compute.py`` returns) and work out the difference: a change yields one ``Delta`` and a
    new version, no change yields nothing (so an unrelated Kubernetes event costs ztunnels
    nothing).  Listeners (server sessions) receive each delta synchronously, in order, right
    after the store changed; the last ``history`` deltas serve clients that resume.

    Stored resources are JSON-normalised copies and are never mutated, so a ``Snapshot``
    handed out stays valid after later changes.
    """

    def __init__(self, history: int = 128, epoch: str | None = None) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self.serial = 0
        self._resources: Resources = {t: {} for t in TYPES}
        self._history: deque[Delta] = deque(maxlen=max(history, 0))
        self._listeners: list[Callable[[Delta], None]] = []

    @property
    def version(self) -> str:
        """The current version (``"<epoch>.<serial>"``)."""
        return f"{self.epoch}.{self.serial}"

    def get(self, rtype: str) -> dict[str, dict[str, Any]]:
        """The current resources of a type (a copy of the map; do not mutate the values)."""
        _check_type("get", rtype)
        return dict(self._resources[rtype])

    def snapshot(self) -> Snapshot:
        """Everything, at the current version."""
        return Snapshot(self.version, {t: dict(items) for t, items in self._resources.items()})

    def set_all(self, rtype: str, resources: Mapping[str, Any]) -> Delta | None:
        """Replace all resources of one type; the delta published, or None if nothing changed."""
        return self.replace({rtype: resources})

    def replace(self, resources: Mapping[str, Mapping[str, Any]]) -> Delta | None:
        """Replace all resources of each given type at once, as one version.

        Several types in one call give ztunnels one consistent step (a new Service and the
        workloads that name it arrive together).  Values are dataclasses with ``to_dict`` or
        JSON dicts.  Returns the delta published, or None if nothing changed.
        """
        upserts: Resources = {}
        removals: dict[str, list[str]] = {}
        fresh_by_type: Resources = {}
        for rtype, items in resources.items():
            _check_type("replace", rtype)
            old = self._resources[rtype]
            fresh = {str(k): _normalise(v) for k, v in sorted(items.items())}
            changed = {k: v for k, v in fresh.items() if old.get(k) != v}
            gone = sorted(k for k in old if k not in fresh)
            if changed:
                upserts[rtype] = changed
            if gone:
                removals[rtype] = gone
            fresh_by_type[rtype] = fresh
        if not upserts and not removals:
            return None
        base = self.version
        self.serial += 1
        self._resources.update(fresh_by_type)
        delta = Delta(version=self.version, base=base, upserts=upserts, removals=removals)
        self._history.append(delta)
        for listener in list(self._listeners):
            listener(delta)
        return delta

    def changes_since(self, version: str) -> Delta | None:
        """One delta from ``version`` to now, or None if that version is not in the history."""
        if version == self.version:
            return Delta(version=version, base=version)
        deltas = list(self._history)
        start = next((i for i, d in enumerate(deltas) if d.base == version), None)
        if start is None:
            return None
        merged = deltas[start]
        for delta in deltas[start + 1 :]:
            merged = merge_deltas(merged, delta)
        return merged

    def resume(self, resource_versions: Mapping[str, str]) -> ServerMessage:
        """What to send after a hello: a delta if the client's version allows, else a snapshot.

        Resuming needs every type at one version the history reaches; anything else (a first
        start, another server's version, a mixed state) gets a snapshot, which is always
        correct.
        """
        versions = {resource_versions.get(t) for t in TYPES}
        if len(versions) == 1:
            (version,) = versions
            if version:
                delta = self.changes_since(version)
                if delta is not None:
                    return delta
        return self.snapshot()

    def subscribe(self, listener: Callable[[Delta], None]) -> Callable[[], None]:
        """Call ``listener(delta)`` on each change; returns the function that unsubscribes.

        The listener runs inside ``replace``: it must not block (queue and return).
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


def merge_deltas(first: Delta, second: Delta) -> Delta:
    """One delta equivalent to applying ``first`` then ``second``."""
    if second.base != first.version:
        raise ValueError(f"cannot merge: {second.base} does not follow {first.version}")
    upserts: Resources = {t: dict(first.upserts.get(t, {})) for t in TYPES}
    removals: dict[str, set[str]] = {t: set(first.removals.get(t, ())) for t in TYPES}
    for rtype, items in second.upserts.items():
        upserts[rtype].update(items)
        removals[rtype].difference_update(items)
    for rtype, keys in second.removals.items():
        for key in keys:
            upserts[rtype].pop(key, None)
            removals[rtype].add(key)
    return Delta(
        version=second.version,
        base=first.base,
        upserts={t: dict(sorted(v.items())) for t, v in upserts.items() if v},
        removals={t: sorted(v) for t, v in removals.items() if v},
    )


def _normalise(resource: Any) -> dict[str, Any]:
    # A JSON round trip: tuples become lists and so on, so equal content compares equal and
    # nothing the caller still holds is shared with the store.
    return json.loads(json.dumps(encode_resource(resource)))


# -- client side ----------------------------------------------------------------------------


class Change(NamedTuple):
    """What one message changed in one type: resources added or replaced, keys removed."""

    upserts: dict[str, Any]
    removals: list[str]


@dataclass
class Reception:
    """The outcome of one server message at the client.

    ``replies`` are to be sent to the server in order; ``changes`` (per type, only types
    that changed, only resources that differ) are for the client's user; ``applied`` says
    whether the message was applied.
    """

    replies: list[ClientMessage]
    changes: dict[str, Change]
    applied: bool


class ClientState:
    """The configuration a client holds and the rules for changing it (see module doc).

    ``resources[type][key]`` holds typed resources: ``Workload``, ``Service`` and, for
    authorizations, dicts.  Nothing is changed by a message that is rejected.
    """

    def __init__(self, node: str = "", namespace: str | None = None) -> None:
        self.node = node
        self.namespace = namespace
        self.version: str | None = None
        self.resources: dict[str, dict[str, Any]] = {t: {} for t in TYPES}
        self.awaiting_snapshot = False
        self.last_error: str | None = None

    @property
    def workloads(self) -> dict[str, Workload]:
        return self.resources[WORKLOAD]

    @property
    def services(self) -> dict[str, Service]:
        return self.resources[SERVICE]

    @property
    def authorizations(self) -> dict[str, dict[str, Any]]:
        return self.resources[AUTHORIZATION]

    def hello(self) -> Hello:
        """The first message of a connection: says which version this client holds."""
        self.awaiting_snapshot = False
        versions = {t: self.version for t in TYPES} if self.version else {}
        return Hello(node=self.node, namespace=self.namespace, resource_versions=versions)

    def resync(self) -> Hello:
        """A hello asking for a snapshot; deltas are ignored until it arrives."""
        self.awaiting_snapshot = True
        return Hello(node=self.node, namespace=self.namespace, resource_versions={})

    def receive(self, data: str | bytes | Mapping[str, Any] | ServerMessage) -> Reception:
        """Apply one server message, all or nothing; says what to reply and what changed."""
        if isinstance(data, Snapshot | Delta):
            message: ServerMessage = data
        else:
            if isinstance(data, str | bytes):
                try:
                    data = json.loads(data)
                except ValueError as exc:
                    return self._reject("", f"message is not JSON: {exc}", resync=False)
            try:
                message = decode_server(data)
            except ProtocolError as exc:
                # Resync only for a broken delta: a broken snapshot would come back as it was.
                fields = data if isinstance(data, Mapping) else {}
                version = fields.get("version")
                return self._reject(
                    version if isinstance(version, str) else "",
                    str(exc),
                    resync=fields.get("type") == "delta",
                )
        if isinstance(message, Delta):
            if self.awaiting_snapshot:
                return Reception([], {}, applied=False)  # superseded by the snapshot asked for
            if message.base != self.version:
                return self._reject(
                    message.version,
                    f"delta from version {message.base} does not apply to version {self.version}",
                    resync=True,
                )
        try:
            typed = {
                rtype: {k: decode_resource(rtype, v) for k, v in items.items()}
                for rtype, items in (
                    message.resources if isinstance(message, Snapshot) else message.upserts
                ).items()
            }
        except (ValueError, TypeError, KeyError) as exc:
            return self._reject(
                message.version,
                f"invalid resource: {exc}",
                resync=isinstance(message, Delta),
            )
        if isinstance(message, Snapshot):
            changes = self._replace_all(typed)
        else:
            changes = self._apply_delta(typed, message.removals)
        self.version = message.version
        self.awaiting_snapshot = False
        self.last_error = None
        return Reception([Ack(message.version)], changes, applied=True)

    def _reject(self, version: str, error: str, *, resync: bool) -> Reception:
        self.last_error = error
        replies: list[ClientMessage] = [Nack(version, error)]
        if resync:
            replies.append(self.resync())
        return Reception(replies, {}, applied=False)

    def _replace_all(self, typed: dict[str, dict[str, Any]]) -> dict[str, Change]:
        changes: dict[str, Change] = {}
        for rtype in TYPES:
            old = self.resources[rtype]
            new = dict(sorted(typed.get(rtype, {}).items()))
            upserts = {k: v for k, v in new.items() if old.get(k) != v}
            removals = sorted(k for k in old if k not in new)
            if upserts or removals:
                changes[rtype] = Change(upserts, removals)
            self.resources[rtype] = new
        return changes

    def _apply_delta(
        self, typed: dict[str, dict[str, Any]], removals: Mapping[str, Iterable[str]]
    ) -> dict[str, Change]:
        changes: dict[str, Change] = {}
        for rtype in TYPES:
            current = self.resources[rtype]
            upserts = {k: v for k, v in typed.get(rtype, {}).items() if current.get(k) != v}
            removed = sorted(k for k in removals.get(rtype, ()) if k in current)
            if not upserts and not removed:
                continue
            # A new map rather than an update in place: a caller iterating the old one (in a
            # change callback, say) never sees it change under it.
            new = {**current, **upserts}
            for key in removed:
                del new[key]
            self.resources[rtype] = dict(sorted(new.items()))
            changes[rtype] = Change(upserts, removed)
        return changes
