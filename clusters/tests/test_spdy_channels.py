"""exec and attach over a plain SPDY upgrade (clusters/local/apiserver/spdyupgrade.py):
the client's streams mapped to v4.channel.k8s.io's channels, without a network.

Frames are written as spdystream writes them (test_spdy.Client); kubectl itself runs
in test_kubectl_workloads.py."""

from __future__ import annotations

import asyncio
import json

from clusters.local.apiserver import spdyupgrade as su

from .test_spdy import Client


def test_streams_become_channels_and_the_end_closes_every_server_stream():
    async def session() -> tuple[list, list]:
        client, sent = Client(), []

        async def send(data: bytes) -> None:
            sent.append(data)

        raw = su.RawBytes()
        streams = su.ChannelStreams(raw, send)
        # the client opens error, stdin, stdout and resize (a terminal), as client-go
        # v4 does; the server waits for all four
        for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")):
            raw.feed_data(client.syn_stream(sid, {"streamType": kind}))
        await streams.start({su.ERROR, su.STDIN, su.STDOUT, su.RESIZE})
        size = json.dumps({"Width": 80, "Height": 24}).encode() + b"\n"
        raw.feed_data(client.data(3, b"typed") + client.data(7, size[:5]))
        raw.feed_data(client.data(7, size[5:] + size) + client.data(3, b"", fin=True))
        got = []
        async for channel, data in streams.received():
            got.append((channel, data))
            if channel == su.CLOSE:
                break
        await streams.send(su.STDOUT, b"out")
        await streams.send(su.STDERR, b"nobody asked for stderr")  # no stream: dropped
        await streams.send(su.ERROR, b'{"status":"Success"}')
        await streams.close()
        return got, client.frames(b"".join(sent))

    got, frames = asyncio.run(session())
    size = json.dumps({"Width": 80, "Height": 24}).encode()
    # the resize stream's JSON lines arrive whole however the frames cut them
    assert got == [(su.STDIN, b"typed"), (su.RESIZE, size), (su.RESIZE, size),
                   (su.CLOSE, b"")]
    assert [f[1] for f in frames if f[0] == "reply"] == [1, 3, 5, 7]
    data = [f[1:] for f in frames if f[0] == "data"]
    assert (5, b"out", False) in data and (1, b'{"status":"Success"}', False) in data
    assert {(sid, fin) for sid, payload, fin in data if not payload} == {(5, True), (1, True)}
    assert frames[-1][0] == "goaway"


def test_a_stream_of_an_unknown_type_is_refused():
    async def session() -> list:
        client, sent = Client(), []

        async def send(data: bytes) -> None:
            sent.append(data)

        raw = su.RawBytes()
        streams = su.ChannelStreams(raw, send)
        raw.feed_data(client.syn_stream(1, {"streamType": "error"}))
        raw.feed_data(client.syn_stream(3, {"streamType": "video"}))
        await streams.start({su.ERROR})
        raw.feed_eof()
        assert [item async for item in streams.received()] == []
        await streams.close()
        return client.frames(b"".join(sent))

    frames = asyncio.run(session())
    assert ("rst", 3, 1) in frames  # PROTOCOL_ERROR


def test_a_client_that_leaves_before_opening_its_streams_is_named():
    async def session() -> str:
        client = Client()

        async def send(data: bytes) -> None:
            pass

        raw = su.RawBytes()
        streams = su.ChannelStreams(raw, send)
        raw.feed_data(client.syn_stream(1, {"streamType": "error"}))
        raw.feed_eof()  # gone before its stdout stream
        try:
            await streams.start({su.ERROR, su.STDOUT})
        except su.StreamsMissing as exc:
            return str(exc)
        return "started"

    assert asyncio.run(session()) == "the client did not open its streams: stdout"
