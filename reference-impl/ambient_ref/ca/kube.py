"""The few Kubernetes API calls the CA makes, over plain aiohttp.

The CA needs four things from the API server: review a service-account token, list
the pods on a node, and read or write the Secret and ConfigMap that hold the root of
trust.  A general Kubernetes client would hide these small, well-specified REST calls
behind much more machinery than a reader of a reference implementation wants to follow,
so here they are spelled out.

The bearer token may be a callable, re-invoked for every request: in-cluster tokens are
projected files that the kubelet rotates, and a token read once at start expires.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from .tls import client_context

IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
FIELD_MANAGER = "ambient-ref-ca"
CA_SECRET_TYPE = "istio.io/ca-root"

TokenSource = str | Callable[[], str]


class KubeError(Exception):
    """The API server answered with an error (or not at all); ``status`` is 0 for no answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}")
        self.status = status
        self.message = message


class AlreadyExists(KubeError):
    """A create found the object already there (HTTP 409): someone else won the race."""


class KubeApi:
    """A minimal async Kubernetes API client bound to one server, token and CA bundle."""

    def __init__(
        self,
        server_url: str,
        token: TokenSource,
        ca_pem: bytes | None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._base = server_url.rstrip("/")
        self._token = token
        self._ssl = client_context(ca_pem) if ca_pem else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def in_cluster(cls, directory: str = IN_CLUSTER_DIR) -> KubeApi:
        """The API server as seen from a pod: service env vars and the mounted token."""
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        with open(os.path.join(directory, "ca.crt"), "rb") as f:
            ca_pem = f.read()
        return cls(f"https://{host}:{port}", file_token(os.path.join(directory, "token")), ca_pem)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One API call; returns the HTTP status and the decoded JSON body (or None)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        token = self._token() if callable(self._token) else self._token
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            async with self._session.request(
                method,
                self._base + path,
                params=params,
                data=data,
                headers=headers,
                ssl=self._ssl if self._ssl is not None else True,
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc!r}") from exc
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = None
        return status, doc

    @staticmethod
    def _raise(status: int, doc: Any, what: str) -> None:
        message = doc.get("message") if isinstance(doc, dict) else None
        cls = AlreadyExists if status == 409 else KubeError
        raise cls(status, f"{what}: {message or 'no message'}")

    # -- authentication ----------------------------------------------------------------

    async def review_token(self, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
        """``TokenReview``: the ``status`` the API server gives for ``token``."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status, doc = await self.request(
            "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body
        )
        if status not in (200, 201) or not isinstance(doc, dict):
            self._raise(status, doc, "TokenReview")
        return doc.get("status") or {}

    # -- pods --------------------------------------------------------------------------

    async def list_pods(self, field_selector: str, page_size: int = 500) -> list[dict[str, Any]]:
        """All pods (every namespace) matching ``field_selector``, following pagination."""
        items: list[dict[str, Any]] = []
        params = {"fieldSelector": field_selector, "limit": str(page_size)}
        while True:
            status, doc = await self.request("GET", "/api/v1/pods", params=params)
            if status != 200 or not isinstance(doc, dict):
                self._raise(status, doc, "list pods")
            items.extend(doc.get("items") or [])
            cont = (doc.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {**params, "continue": cont}

    # -- root of trust storage (bootstrap.KubeStore) -------------------------------------

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        status, doc = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if status == 404:
            return None
        if status != 200 or not isinstance(doc, dict):
            self._raise(status, doc, f"get secret {namespace}/{name}")
        return {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": CA_SECRET_TYPE,
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
        }
        status, doc = await self.request(
            "POST", f"/api/v1/namespaces/{namespace}/secrets", body=body
        )
        if status not in (200, 201):
            self._raise(status, doc, f"create secret {namespace}/{name}")

    async def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or merge ``data`` into the existing one.

        Create-then-merge-patch rather than server-side apply, which not every API
        server (the harness's local cluster included) implements.
        """
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
        status, doc = await self.request("POST", base, body=body)
        if status in (200, 201):
            return
        if status != 409:
            self._raise(status, doc, f"create configmap {namespace}/{name}")
        status, doc = await self.request(
            "PATCH",
            f"{base}/{name}",
            params={"fieldManager": FIELD_MANAGER},
            body={"data": data},
            content_type="application/merge-patch+json",
        )
        if status != 200:
            self._raise(status, doc, f"patch configmap {namespace}/{name}")


def file_token(path: str) -> Callable[[], str]:
    """A token source that re-reads ``path`` on every call, because kubelets rotate it."""

    def read() -> str:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()

    return read
