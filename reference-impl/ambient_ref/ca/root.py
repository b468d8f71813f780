"""Getting the mesh root certificate the control plane publishes (ConfigMap
``istio-ca-root-cert``), waiting for it by watching if it is not there yet."""

from __future__ import annotations

from ..kube import KubeClient

ROOT_CONFIGMAP = "istio-ca-root-cert"


async def fetch_root(kube: KubeClient, namespace: str = "istio-system") -> bytes:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    selector = f"metadata.name={ROOT_CONFIGMAP}"
    while True:
        listing = await kube.list(path, field_selector=selector)
        for cm in listing.get("items") or ():
            if "root-cert.pem" in (cm.get("data") or {}):
                return cm["data"]["root-cert.pem"].encode()
        async for kind, cm in kube.watch(path, listing["metadata"]["resourceVersion"],
                                         field_selector=selector, timeout_seconds=60):
            if kind in ("ADDED", "MODIFIED") and "root-cert.pem" in (cm.get("data") or {}):
                return cm["data"]["root-cert.pem"].encode()
