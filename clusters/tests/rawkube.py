"""Raw HTTPS requests to the local API, with the exact headers and query strings a Go
client sends: what the official Python client cannot reproduce (protobuf-first Accept
headers, the metadata client's media-type parameters, watch-list queries)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

# istiod's REST config (istio/istio pkg/kube/util.go SetRestDefaults)
PROTOBUF_FIRST = "application/vnd.kubernetes.protobuf,application/json"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


class RawKube:
    def __init__(self, kubeconfig: str) -> None:
        with open(kubeconfig) as f:
            config = yaml.safe_load(f)
        ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        self.token = config["users"][0]["user"]["token"]
        url = urlsplit(config["clusters"][0]["cluster"]["server"])
        self.host, self.port = url.hostname or "", url.port or 443
        with tempfile.NamedTemporaryFile(suffix=".crt") as f:
            f.write(ca)
            f.flush()
            self.ctx = ssl.create_default_context(cafile=f.name)

    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *,
                accept: str | None = PROTOBUF_FIRST, content_type: str = "application/json",
                token: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if accept is not None:
            headers["Accept"] = accept
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn = self._conn(30)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def watch(self, path: str, *, accept: str | None = PROTOBUF_FIRST,
              read_timeout: float = 10) -> Watch:
        """Open a watch; events are read one line at a time from the chunked stream."""
        conn = self._conn(read_timeout)
        headers = {"Authorization": f"Bearer {self.token}"}
        if accept is not None:
            headers["Accept"] = accept
        conn.request("GET", path, headers=headers)
        return Watch(conn, conn.getresponse())


class Watch:
    def __init__(self, conn: http.client.HTTPSConnection,
                 resp: http.client.HTTPResponse) -> None:
        self.conn = conn
        self.resp = resp

    @property
    def status(self) -> int:
        return self.resp.status

    @property
    def content_type(self) -> str:
        return self.resp.headers.get("Content-Type", "")

    def next(self) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream.  A read that
        times out fails the test (socket.timeout), never passes it."""
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line)

    def events(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            ev = self.next()
            assert ev is not None, f"the stream ended after {out}"
            out.append(ev)
        return out

    def until(self, predicate: Any) -> list[dict[str, Any]]:
        """Events up to and including the first one ``predicate`` accepts."""
        out = []
        while True:
            ev = self.next()
            assert ev is not None, f"the stream ended after {out}"
            out.append(ev)
            if predicate(ev):
                return out

    def rest(self) -> list[dict[str, Any]]:
        """Every event until the server ends the stream (a short timeoutSeconds)."""
        out = []
        while (ev := self.next()) is not None:
            out.append(ev)
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def events_of(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, name) pairs; a bookmark has no name."""
    return [(e["type"], e["object"].get("metadata", {}).get("name", "")) for e in events]


def iter_names(items: list[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield item["metadata"]["name"]
