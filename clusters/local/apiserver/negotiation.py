"""Accept-header negotiation: which representation a response takes.

Real clients rarely ask for plain JSON.  client-go asks for protobuf first
(``application/vnd.kubernetes.protobuf,application/json``; istiod's
``pkg/kube/util.go`` ``SetRestDefaults``), its metadata client for
``...;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`` (client-go
``metadata/metadata.go``), kubectl for ``as=Table``.  This mirrors the real server's
choice (k8s.io/apiserver ``pkg/endpoints/handlers/negotiation/negotiate.go``, with the
Accept parser of ``github.com/munnerz/goautoneg``): clauses in order of q-value, and
the first one this server can produce wins.  This server writes JSON and YAML only;
a protobuf clause is passed over, as a real server passes it over for a custom
resource, so a protobuf-first client gets JSON and decodes it by the response's
Content-Type as client-go does.  Sans-IO: strings in, a decision or an error out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import errors

JSON = "application/json"
YAML = "application/yaml"
META_GROUP = "meta.k8s.io"
META_VERSIONS = ("v1", "v1beta1")
TRANSFORMS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")

# What this server writes, in its order of preference (a real server lists JSON first
# too); only JSON has a watch ("stream") form, as on the real server.
_WRITES = ((JSON, True), (YAML, False))


@dataclass(frozen=True)
class MediaRange:
    """One clause of an Accept header."""

    type: str
    subtype: str
    q: float = 1.0
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """The negotiated representation: a media type and, optionally, the object it is
    transformed into (``as=Table`` and the ``PartialObjectMetadata`` forms)."""

    media_type: str = JSON
    transform: str | None = None
    transform_version: str = "v1"

    @property
    def transform_api_version(self) -> str:
        return f"{META_GROUP}/{self.transform_version}"


def parse_accept(header: str) -> list[MediaRange]:
    """Clauses of an Accept header, best first, as goautoneg's ``ParseAccept`` reads
    them: malformed clauses are dropped, ``q`` orders (it does not exclude: a q=0
    clause is still a candidate, last), a concrete type sorts before a wildcard."""
    out: list[MediaRange] = []
    for raw in header.split(","):
        part = raw.strip(" ")
        if not part:
            continue
        media, _, rest = part.partition(";")
        main, slash, sub = media.partition("/")
        main = main.strip(" ")
        if not slash:
            if main != "*":
                continue
            sub = "*"
        elif "/" in sub:
            continue
        q = 1.0
        params: dict[str, str] = {}
        for p in rest.split(";") if rest else ():
            key, eq, value = p.partition("=")
            if not eq or "=" in value:
                continue
            key = key.strip(" ")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params[key] = value.strip(" ")
        out.append(MediaRange(main, sub.strip(" "), q, params))
    out.sort(key=lambda m: (-m.q, m.type == "*", m.subtype == "*"))
    return out


def _rules_out(key: str, value: str, streams: bool) -> bool:
    """A parameter that makes a clause unanswerable: a stream form this media type lacks,
    a server version other than v1.  pretty, export, profile and unknown parameters do
    not rule a clause out."""
    if key == "stream":
        return bool(value) and (not streams or value != "watch")
    return key == "sv" and bool(value) and value != "v1"


def _acceptable(clause: MediaRange, media_type: str, streams: bool) -> Output | None:
    """The output this clause asks of ``media_type``, or None when it cannot be given
    (``acceptMediaTypeOptions`` and ``RequestScope.AllowsMediaTypeTransform``)."""
    target: dict[str, str] = {}
    for key, value in clause.params.items():
        if key in ("as", "g", "v"):
            target[key] = value
        elif _rules_out(key, value, streams):
            return None
    if not target:
        return Output(media_type)
    if target.get("g") != META_GROUP or target.get("v") not in META_VERSIONS or \
            target.get("as") not in TRANSFORMS:
        return None
    return Output(media_type, target["as"], target["v"])


def _first_acceptable(header: str) -> tuple[Output, bool] | None:
    """The first clause this server can answer, and whether that form can stream."""
    for clause in parse_accept(header):
        for media_type, streams in _WRITES:
            main, sub = media_type.split("/")
            if clause.type == "*" and clause.subtype != "*":
                continue
            if clause.type not in (main, "*") or clause.subtype not in (sub, "*"):
                continue
            out = _acceptable(clause, media_type, streams)
            if out is not None:
                return out, streams
    return None


def negotiate(header: str | None, *, stream: bool = False) -> Output:
    """The output for a request's Accept header; ``stream`` for a watch.

    Raises 406 NotAcceptable, naming what this server writes, when no clause can be
    answered; for a watch also when the first clause that can be answered has no
    stream form (YAML), as the real server's ``NegotiateOutputMediaTypeStream`` does."""
    if not header:
        return Output()
    found = _first_acceptable(header)
    if found is not None and (found[1] or not stream):
        return found[0]
    written = [f"{JSON};stream=watch"] if stream else [m for m, _ in _WRITES]
    raise errors.ApiError(
        406, "NotAcceptable",
        f"only the following media types are accepted: {', '.join(written)} (the local "
        "cluster writes no protobuf; add application/json to the Accept header)")
