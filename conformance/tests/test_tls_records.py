"""TLS records read from captured segments, whatever the segment boundaries."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from clusters.provider import Segment
from conformance.tls_records import (
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    flow_records,
)

BODY = random.Random(7).randbytes  # ciphertext stand-in, the same every run
SERVER, CLIENT = ("198.18.1.5", 15008), ("198.18.0.7", 40000)


def record(kind: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes([kind]) + version + len(body).to_bytes(2, "big") + body


# A TLS 1.3 client: ClientHello, then CCS and Finished (as application data) and the
# tunnelled request, which a client often writes in one go.
STREAM = (record(HANDSHAKE, BODY(300), b"\x03\x01")
          + record(CHANGE_CIPHER_SPEC, b"\x01") + record(APPLICATION_DATA, BODY(53))
          + record(APPLICATION_DATA, BODY(700)) + record(APPLICATION_DATA, BODY(90)))
TYPES = [HANDSHAKE, CHANGE_CIPHER_SPEC, APPLICATION_DATA, APPLICATION_DATA, APPLICATION_DATA]


def segments(stream: bytes, cuts: list[int], isn: int = 1000) -> list[Segment]:
    bounds = [0, *sorted(set(cuts)), len(stream)]
    return [Segment(*CLIENT, *SERVER, stream[a:b], (isn + a) % 2**32)
            for a, b in itertools.pairwise(bounds) if b > a]


@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=12), st.randoms())
def test_records_whatever_the_boundaries_order_and_retransmissions(cuts, rnd):
    segs = segments(STREAM, cuts)
    segs += rnd.sample(segs, k=len(segs) // 3)  # retransmitted
    rnd.shuffle(segs[1:])  # the first captured stays first; the rest in any order
    assert flow_records(segs, *SERVER) == {CLIENT: TYPES}


def test_a_segment_that_starts_with_no_application_data_header_still_counts():
    # The failure this module exists for: the only segment toward the server begins
    # with ChangeCipherSpec, and the application data follows inside it.
    tail = STREAM[STREAM.index(bytes([CHANGE_CIPHER_SPEC, 3, 3])):]
    segs = segments(STREAM, [len(STREAM) - len(tail)])
    assert segs[1].payload[0] == CHANGE_CIPHER_SPEC
    assert flow_records(segs, *SERVER)[CLIENT] == TYPES


def test_sequence_numbers_wrap():
    assert flow_records(segments(STREAM, [100, 400], isn=2**32 - 150), *SERVER) == {
        CLIENT: TYPES}


def test_a_connection_caught_mid_stream_is_read_from_a_record_boundary():
    start = len(record(HANDSHAKE, b"x" * 300)) + 40  # inside the CCS/Finished region
    assert flow_records(segments(STREAM[start:], [17]), *SERVER)[CLIENT] == [
        APPLICATION_DATA, APPLICATION_DATA]


def test_plaintext_is_not_tls():
    http = b"GET /health HTTP/1.1\r\nHost: x\r\nx-marker: 1\r\n\r\n"
    assert flow_records(segments(http, [10]), *SERVER) == {CLIENT: None}


def test_a_missed_segment_ends_what_can_be_read():
    segs = segments(STREAM, [305, 320, 400])
    del segs[2]  # bytes 320..400 never captured
    assert flow_records(segs, *SERVER)[CLIENT] == [HANDSHAKE, CHANGE_CIPHER_SPEC,
                                                   APPLICATION_DATA]


def test_only_flows_toward_the_destination():
    back = Segment(*SERVER, *CLIENT, record(APPLICATION_DATA, b"r"), 5)
    other = Segment(*CLIENT, "198.18.1.9", 15008, STREAM, 9)
    assert flow_records([back, other], *SERVER) == {}
