"""Objects the control plane makes for a Gateway (a waypoint's or an ingress's
ServiceAccount, Service and Deployment): created once, owned by the Gateway so they
go with it, left alone when they exist already."""

from __future__ import annotations

import logging
from typing import Any

from ..kube import KubeClient, KubeError

log = logging.getLogger("pilot")

_PATHS = {"ServiceAccount": ("api/v1", "serviceaccounts"), "Service": ("api/v1", "services"),
          "Deployment": ("apis/apps/v1", "deployments")}


async def create_owned(kube: KubeClient, gateway: dict[str, Any],
                       manifests: list[dict[str, Any]]) -> None:
    """Create ``manifests`` in the Gateway's namespace with the Gateway as their owner."""
    meta = gateway["metadata"]
    ns = meta["namespace"]
    owner = {"apiVersion": gateway["apiVersion"], "kind": "Gateway", "name": meta["name"],
             "uid": meta["uid"], "controller": True}
    for manifest in manifests:
        manifest["metadata"]["ownerReferences"] = [owner]
        group, plural = _PATHS[manifest["kind"]]
        try:
            await kube.create(f"/{group}/namespaces/{ns}/{plural}", manifest)
        except KubeError as exc:
            if exc.status != 409:
                log.warning("%s %s/%s for Gateway %s: %s", manifest["kind"], ns,
                            manifest["metadata"]["name"], meta["name"], exc)
