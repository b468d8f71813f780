"""TLS records in captured TCP flows: what a wire test can tell without any key.

A TLS connection is a stream of records, each a 5-byte header (content type, protocol
version, length; RFC 8446 section 5.1) and its body.  Where records start depends on
the byte stream, not on TCP segments: a TLS 1.3 client sends its ChangeCipherSpec and
its encrypted Finished, and often its first application data, in one segment, so a
segment need not begin with an application-data header even when the flow carries
nothing else.  So the flow is put back in order by sequence number (retransmissions
dropped) and walked record by record from its first byte.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from clusters.provider import Segment

__all__ = ["APPLICATION_DATA", "CHANGE_CIPHER_SPEC", "HANDSHAKE", "flow_records"]

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
_TYPES = {CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA}
_VERSIONS = {b"\x03\x01", b"\x03\x02", b"\x03\x03"}  # legacy_record_version values


def _stream(segments: list[Segment]) -> bytes:
    """A flow's bytes in sequence order, each byte once, up to the first gap."""
    first = segments[0].seq
    data = bytearray()
    for seg in sorted(segments, key=lambda s: (s.seq - first) % 2**32):
        offset = (seg.seq - first) % 2**32
        if offset > len(data):
            break  # a segment the capture missed: nothing after it can be placed
        data += seg.payload[len(data) - offset:]
    return bytes(data)


MAX_RECORD = 2**14 + 256
"""The largest record a peer may send (RFC 8446 section 5.2), so the furthest a
record's start can be from the first captured byte of a flow caught mid-stream."""


def _chain(stream: bytes, at: int) -> list[int] | None:
    """Content types of the records from offset ``at`` to the end of ``stream`` (the
    last may be cut short), or None when a header there is not a TLS record's."""
    types: list[int] = []
    while at + 5 <= len(stream):
        kind, version = stream[at], stream[at + 1:at + 3]
        length = int.from_bytes(stream[at + 3:at + 5], "big")
        if kind not in _TYPES or version not in _VERSIONS or length > MAX_RECORD:
            return None
        types.append(kind)
        at += 5 + length
    return types or None


def _records(stream: bytes) -> list[int] | None:
    """Content types of the TLS records ``stream`` holds, or None when it is not TLS.

    From the first byte when the capture saw the connection open; for a connection
    caught mid-stream (a pooled HBONE connection, which ztunnel keeps and reuses), from
    the first offset where a chain of valid headers runs to the end of the stream, and
    holds two records at least so that chance bytes of ciphertext are not taken for one.
    """
    types = _chain(stream, 0)
    if types is not None:
        return types
    for at in range(1, min(len(stream), MAX_RECORD + 5)):
        if stream[at] in _TYPES:
            types = _chain(stream, at)
            if types is not None and len(types) >= 2:
                return types
    return None


def flow_records(segments: Iterable[Segment], dst: str,
                 dport: int) -> dict[tuple[str, int], list[int] | None]:
    """For each flow toward ``dst:dport`` (keyed by its source address and port), the
    content types of its TLS records in order, or None when the flow is not TLS."""
    flows: dict[tuple[str, int], list[Segment]] = defaultdict(list)
    for seg in segments:
        if seg.dst == dst and seg.dport == dport:
            flows[(seg.src, seg.sport)].append(seg)
    return {key: _records(_stream(segs)) for key, segs in flows.items()}
