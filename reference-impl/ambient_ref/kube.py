"""A small asyncio client of the Kubernetes API, for this distribution's own processes.

The control plane watches namespaces, pods, services and policies from inside an asyncio
program, and the official ``kubernetes`` client is synchronous (and large); this client does
the few things needed (get, list, create, patch, delete, watch) over aiohttp, and
``Informer`` keeps a local copy of one collection current with list + watch.  It is this
distribution's own: the reference implementation depends on nothing of the harness that
tests it (which has an informer of its own for its agents).  The official client's
``SharedInformer`` watches from a thread with blocking requests, where the control
plane needs its events on its event loop.

Credentials: in a pod, ``KubeClient.in_cluster()`` uses the mounted service account.  Its
token is re-read from the file (at most a minute old) because the kubelet rotates it; a
token read once at start-up expires after an hour.  A token may also be given as a
callable, asked for every request, to share another client's or a caller's credential.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yaml

from .background import BackgroundTask

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_MAX_AGE = 60.0  # seconds a token read from a file is used before reading it again

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


#: A bearer token, or a callable returning the current one (tokens rotate).
TokenSource = str | Callable[[], str | None]


class KubeError(Exception):
    """An error status from the API server (``status`` is the HTTP code, e.g. 404, 409, 410)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class AlreadyExists(KubeError):
    """A create found the object already there (HTTP 409 to a POST).

    Its own class because callers racing to create the same object (replicas starting
    together) handle exactly this case, and a 409 to an update means something else
    (a stale ``resourceVersion``).
    """


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path of a collection or object.

    ``resource_path("v1", "pods", "default")`` is ``/api/v1/namespaces/default/pods``;
    ``resource_path("security.istio.io/v1", "authorizationpolicies")`` lists them in every
    namespace.
    """
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    return path


class KubeClient:
    """An API server connection: a base URL, a bearer token and the CA that signed the server.

    ``token`` is used as given (a callable is called for every request); ``token_file`` is
    re-read when older than ``TOKEN_MAX_AGE``.
    """

    def __init__(
        self,
        server: str,
        token: TokenSource | None = None,
        ca_pem: bytes | str | None = None,
        *,
        token_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._token_source = token if callable(token) else None
        self._token = None if callable(token) else token
        self._token_file = Path(token_file) if token_file else None
        self._token_read_at = 0.0
        if ssl_context is None and ca_pem:
            cadata = ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem
            ssl_context = ssl.create_default_context(cadata=cadata)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def in_cluster(cls, sa_dir: str | Path = SA_DIR) -> KubeClient:
        """The API server of the cluster this pod runs in, as its service account."""
        sa_dir = Path(sa_dir)
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return cls(
            f"https://{host}:{port}",
            ca_pem=(sa_dir / "ca.crt").read_bytes(),
            token_file=sa_dir / "token",
        )

    @classmethod
    def from_kubeconfig(cls, path: str | Path, context: str | None = None) -> KubeClient:
        """From a kubeconfig with a token user (for running a component outside a cluster)."""
        config = yaml.safe_load(Path(path).read_text())
        name = context or config["current-context"]
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca = Path(cluster["certificate-authority"]).read_bytes()
        return cls(cluster["server"], user.get("token"), ca, token_file=user.get("tokenFile"))

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ------------------------------------------------------------------------

    def token(self) -> str | None:
        """The bearer token to send now (asked of its source, or re-read from its file when due)."""
        if self._token_source is not None:
            return self._token_source()
        if self._token_file is not None and (
            self._token is None or time.monotonic() - self._token_read_at > TOKEN_MAX_AGE
        ):
            self._token = self._token_file.read_text().strip()
            self._token_read_at = time.monotonic()
        return self._token

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Accept": "application/json"},
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=None, connect=10),
            )
        return self._session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call; the decoded JSON response.  An error status raises ``KubeError``."""
        url = self.server + path + ("?" + urlencode(_query(params)) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        async with self._http().request(
            method,
            url,
            data=data,
            headers=self._headers(content_type if data is not None else None),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                error = AlreadyExists if method == "POST" and resp.status == 409 else KubeError
                raise _error(resp.status, text, error)
            return json.loads(text) if text else {}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        """The object at ``path``."""
        return await self.request("GET", path, params=params)

    async def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        **params: Any,
    ) -> dict[str, Any]:
        """The whole collection at ``path`` as one list (pages followed), with its version."""
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": page_size,
            **params,
        }
        doc = await self.request("GET", path, params=query)
        items = list(doc.get("items") or ())
        while (doc.get("metadata") or {}).get("continue"):
            doc = await self.request(
                "GET", path, params={**query, "continue": doc["metadata"]["continue"]}
            )
            items += doc.get("items") or ()
        doc["items"] = items
        return doc

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body`` in the collection at ``path``; ``AlreadyExists`` if it is there."""
        return await self.request("POST", path, body)

    async def patch(
        self, path: str, body: Any, patch_type: str = "merge", **params: Any
    ) -> dict[str, Any]:
        """Patch the object (or its ``/status``) at ``path``.

        ``patch_type`` is ``merge`` (the default: what a controller writing its own fields
        wants), ``json``, ``strategic``, or a full content type; ``params`` are query
        parameters such as ``fieldManager``.
        """
        content_type = PATCH_TYPES.get(patch_type, patch_type)
        return await self.request("PATCH", path, body, params=params, content_type=content_type)

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete the object at ``path`` (``body``: DeleteOptions, if any)."""
        return await self.request("DELETE", path, body)

    async def watch(
        self,
        path: str,
        resource_version: str = "",
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        **params: Any,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(event type, object)`` for each change after ``resource_version``.

        Ends when the server ends the stream (after about ``timeout_seconds``).  An ERROR
        event raises ``KubeError`` with its code: 410 means the version is too old and the
        caller must list again.  Bookmarks are passed on (their object carries only a
        ``resourceVersion``).
        """
        query = _query(
            {
                "watch": "true",
                "resourceVersion": resource_version or None,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout_seconds,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                **params,
            }
        )
        url = f"{self.server}{path}?{urlencode(query)}"
        # A silent connection is fine (no changes), but not past the server's own timeout:
        # then the peer is gone without a word.
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout_seconds + 30)
        async with self._http().get(url, headers=self._headers(), timeout=timeout) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            # Split lines by hand: an object can be longer than aiohttp's line limit.
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(line)
            if buffer.strip():
                yield _event(buffer)


def _event(line: bytes) -> tuple[str, dict[str, Any]]:
    event = json.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise KubeError(
            int(status.get("code") or 500), status.get("reason", ""), status.get("message", "")
        )
    return event["type"], event["object"]


def _query(params: dict[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items() if v is not None}


def _error(status: int, text: str, error: type[KubeError] = KubeError) -> KubeError:
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return error(status, doc.get("reason", ""), doc.get("message", text.strip()))


def file_token(path: str | Path) -> Callable[[], str]:
    """A token source that re-reads ``path`` on every call, because kubelets rotate it.

    For tokens sent rarely (a certificate request every few hours), where reading the
    file each time is cheaper than reasoning about how stale a cached copy may be.
    """

    def read() -> str:
        return Path(path).read_text(encoding="utf-8").strip()

    return read


#: ``handler(event type, object, previous object or None)``; may be async.
Handler = Callable[[str, dict[str, Any], dict[str, Any] | None], Awaitable[None] | None]


def object_key(obj: dict[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of an object; namespace is ``""`` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name", "")


class Informer:
    """A live copy of one collection: ``items`` keyed by ``(namespace, name)``.

    Lists, then watches from the list's version.  ``handler(type, obj, old)`` runs after
    ``items`` changed, for each ``ADDED``, ``MODIFIED`` or ``DELETED``; a relist (at start,
    after a 410, or after an error) reports only the differences from what was held.
    ``synced`` is set after the first list.  Errors are retried forever with bounded,
    jittered backoff; the copy stays as it was meanwhile.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        handler: Handler | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
    ) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._background = BackgroundTask(self.run, f"informer {self.path}")

    def start(self) -> asyncio.Task[None]:
        """Run in the background; returns the task."""
        return self._background.start()

    async def stop(self) -> None:
        """Stop watching (``items`` keeps the last state)."""
        await self._background.stop()

    async def run(self) -> None:
        """List and watch forever."""
        backoff = self.backoff_initial
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                started, events = time.monotonic(), 0
                async for kind, obj in self.client.watch(
                    self.path,
                    self.resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=self.watch_timeout,
                ):
                    events += 1
                    self.resource_version = (obj.get("metadata") or {}).get(
                        "resourceVersion", self.resource_version
                    )
                    if kind != "BOOKMARK":
                        await self._apply(kind, obj)
                if events or time.monotonic() - started > 1.0:
                    backoff = self.backoff_initial
                    continue  # the server ended a healthy watch: resume at once
                log.info("watch %s ended at once; retrying after a pause", self.path)
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.status == 410:
                    log.info("watch %s: %s; listing again", self.path, exc.message)
                    need_list = True
                    continue
                log.warning("watch %s: %s", self.path, exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.warning("watch %s: %s", self.path, exc or type(exc).__name__)
            delay = backoff * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.backoff_max)

    async def _relist(self) -> None:
        doc = await self.client.list(
            self.path, label_selector=self.label_selector, field_selector=self.field_selector
        )
        fresh = {object_key(obj): obj for obj in doc.get("items") or ()}
        old_items, self.items = self.items, fresh
        self.resource_version = (doc.get("metadata") or {}).get("resourceVersion", "")
        for key, obj in fresh.items():
            prev = old_items.get(key)
            if prev is None:
                await self._emit("ADDED", obj, None)
            elif _rv(prev) != _rv(obj):
                await self._emit("MODIFIED", obj, prev)
        for key, prev in old_items.items():
            if key not in fresh:
                await self._emit("DELETED", prev, prev)
        self.synced.set()

    async def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        old = self.items.get(key)
        if kind == "DELETED":
            self.items.pop(key, None)
        else:
            self.items[key] = obj
        await self._emit(kind, obj, old)

    async def _emit(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.handler is None:
            return
        try:
            result = self.handler(kind, obj, old)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The copy is right whatever a handler makes of it; a bug there must not stop
            # the informer.
            log.exception("informer %s: handler failed on %s %s", self.path, kind, object_key(obj))


def _rv(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")
