"""A small asyncio client of the Kubernetes API, for the local cluster's own agents.

Node agents, the service proxy and cluster DNS are asyncio programs that must not
block their loop, and the official client is synchronous; this client does the
few things they need (get, list, watch, create, patch, delete) over aiohttp, and
``Informer`` keeps a local copy of a collection current with list + watch, relisting
when the server says the watch resumed from a version it no longer has (410).

The official client's own ``kubernetes.informer.SharedInformer`` (client 37) does not
fit: it watches from a thread with blocking requests and hands objects over to
threads, where these programs need events on their own event loop.  The reference
implementation keeps its own informer for the same reason, and because it is a
separate distribution that never imports the harness.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

from clusters.background import BackgroundTask

log = logging.getLogger("kubeclient")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeClient:
    def __init__(self, server: str, token: str, ca_pem: bytes) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self._ssl = ssl.create_default_context(cadata=ca_pem.decode())
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path, server: str | None = None) -> KubeClient:
        config = yaml.safe_load(Path(path).read_text())
        context = next(c["context"] for c in config["contexts"]
                       if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        return cls(server or cluster["server"], user["token"],
                   base64.b64decode(cluster["certificate-authority-data"]))

    @classmethod
    def in_cluster(cls) -> KubeClient:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return cls(f"https://{host}:{port}", (SA_DIR / "token").read_text().strip(),
                   (SA_DIR / "ca.crt").read_bytes())

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}",
                         "Accept": "application/json"},
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> Any:
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._client().request(method, url, data=data, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            doc = json.loads(text) if text else {}
            if resp.status >= 400:
                raise KubeError(resp.status, doc.get("reason", ""), doc.get("message", text))
            return doc

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def list(self, path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", path, params={k: v for k, v in _params(params).items()})

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any,
                    patch_type: str = "application/merge-patch+json") -> dict[str, Any]:
        return await self.request("PATCH", path, body, content_type=patch_type)

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, resource_version: str,
                    **params: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version``; ends when the server closes the stream.
        A 410 (as an ERROR event or a status) raises KubeError(410)."""
        query = {"watch": "true", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", **_params(params)}
        url = f"{self.server}{path}?{urlencode(query)}"
        async with self._client().get(url) as resp:
            if resp.status >= 400:
                doc = json.loads(await resp.text() or "{}")
                raise KubeError(resp.status, doc.get("reason", ""), doc.get("message", ""))
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise KubeError(status.get("code", 500), status.get("reason", ""),
                                    status.get("message", ""))
                yield event["type"], event["object"]


def _params(params: dict[str, str]) -> dict[str, str]:
    names = {"label_selector": "labelSelector", "field_selector": "fieldSelector",
             "timeout_seconds": "timeoutSeconds"}
    return {names.get(k, k): str(v) for k, v in params.items() if v is not None}


Handler = Callable[[str, dict[str, Any], dict[str, Any] | None], Awaitable[None] | None]


class Informer:
    """A live copy of one collection: ``items`` keyed by (namespace, name).

    ``handler(event_type, obj, old)`` runs for each change, after ``items`` was
    updated; a relist after a 410 reports the differences as ADDED/MODIFIED/DELETED.
    """

    def __init__(self, client: KubeClient, path: str, handler: Handler | None = None,
                 **params: str) -> None:
        self.client = client
        self.path = path
        self.params = params
        self.handler = handler
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self._background = BackgroundTask(self._run, f"inf:{self.path}")

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        # an informer that died has nothing more to say at shutdown
        with contextlib.suppress(Exception):
            await self._background.stop()

    async def _emit(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.handler is not None:
            result = self.handler(kind, obj, old)
            if result is not None:
                await result

    async def _relist(self) -> str:
        doc = await self.client.list(self.path, **self.params)
        fresh = {_key(o): o for o in doc.get("items") or ()}
        old_items = self.items
        self.items = fresh
        for key, obj in fresh.items():
            prev = old_items.get(key)
            if prev is None:
                await self._emit("ADDED", obj, None)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get(
                    "resourceVersion"):
                await self._emit("MODIFIED", obj, prev)
        for key, prev in old_items.items():
            if key not in fresh:
                await self._emit("DELETED", prev, prev)
        self.synced.set()
        return doc["metadata"]["resourceVersion"]

    async def _run(self) -> None:
        rv = ""
        backoff = 0.1
        while True:
            try:
                if not rv:
                    rv = await self._relist()
                async for kind, obj in self.client.watch(self.path, rv, timeout_seconds="300",
                                                         **self.params):
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    key = _key(obj)
                    old = self.items.get(key)
                    if kind == "DELETED":
                        self.items.pop(key, None)
                    else:
                        self.items[key] = obj
                    await self._emit(kind, obj, old)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.status == 410:
                    rv = ""  # resume point gone: list again
                    continue
                log.warning("watch %s: %s; retrying in %.1fs", self.path, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.warning("watch %s: %s; retrying in %.1fs", self.path, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
