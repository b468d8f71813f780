"""The CA bootstrap's storage (``ca.bootstrap.KubeStore``) on the Kubernetes API."""

from __future__ import annotations

import base64

from ..ca.bootstrap import AlreadyExists
from ..kube import KubeClient, KubeError


class KubeSecretStore:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            secret = await self.kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
        try:
            await self.kube.create(f"/api/v1/namespaces/{namespace}/secrets", body)
        except KubeError as exc:
            if exc.status == 409:
                raise AlreadyExists(exc.status, exc.reason, exc.message) from None
            raise

    async def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace}, "data": data}
        try:
            await self.kube.create(f"/api/v1/namespaces/{namespace}/configmaps", body)
        except KubeError as exc:
            if exc.status != 409:
                raise
            await self.kube.patch(f"/api/v1/namespaces/{namespace}/configmaps/{name}",
                                  {"data": data})
