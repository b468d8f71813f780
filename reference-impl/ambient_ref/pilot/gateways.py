"""The control plane's Gateway API controller: GatewayClasses, ingress Gateways of class
``istio`` (their Deployment, Service and status) and HTTPRoute statuses.

What is decided lives in ``xds/gateways.py`` (pure); this module reads the informers'
copies and writes to the API, only what changed.
"""

from __future__ import annotations

import logging

from ..kube import Informer, KubeClient, KubeError
from ..xds.gateways import (
    CONTROLLER,
    INGRESS_CLASS,
    MANAGED_LABEL,
    MANAGED_VALUE,
    WAYPOINT_CLASS,
    find_ingress_gateways,
    gateway_classes,
    gateway_status,
    ingress_manifests,
    route_parents,
    status_time,
)
from .owned import create_owned

log = logging.getLogger("pilot.gateways")

GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"
ROUTES_PATH = f"{GATEWAY_API}/httproutes"
INGRESS_DEPLOYMENTS_SELECTOR = f"{MANAGED_LABEL}={MANAGED_VALUE}"


class GatewayController:
    def __init__(self, kube: KubeClient, gateways: Informer, services: Informer,
                 routes: Informer, deployments: Informer, image: str) -> None:
        self.kube = kube
        self.gateways = gateways
        self.services = services
        self.routes = routes
        self.deployments = deployments
        self.image = image
        self._classes_made = False

    async def sync(self) -> None:
        await self._ensure_classes()
        await self._deploy_ingresses()
        await self._route_status()

    async def _ensure_classes(self) -> None:
        if self._classes_made:
            return
        for cls in gateway_classes():
            try:
                await self.kube.create(f"{GATEWAY_API}/gatewayclasses", cls)
            except KubeError as exc:
                if exc.status != 409:
                    log.warning("GatewayClass %s: %s", cls["metadata"]["name"], exc)
                    return
            try:
                await self.kube.patch(
                    f"{GATEWAY_API}/gatewayclasses/{cls['metadata']['name']}/status",
                    {"status": {"conditions": [{
                        "type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "Handled by Istio controller",
                        "lastTransitionTime": status_time(), "observedGeneration": 1}]}})
            except KubeError as exc:
                log.warning("status of GatewayClass %s: %s", cls["metadata"]["name"], exc)
        self._classes_made = True

    async def _deploy_ingresses(self) -> None:
        routes = list(self.routes.items.values())
        for (ns, name), gw in find_ingress_gateways(self.gateways.items.values()).items():
            gateway = self.gateways.items.get((ns, name))
            if gateway is None:
                continue
            await create_owned(self.kube, gateway, ingress_manifests(gw, self.image))
            dep = self.deployments.items.get((ns, gw.deployment)) or {}
            ready = (dep.get("status") or {}).get("readyReplicas", 0) >= 1
            status = gateway_status(gateway, gw, routes, ready, status_time())
            if gateway.get("status") == status:
                continue
            try:
                await self.kube.patch(f"{GATEWAY_API}/namespaces/{ns}/gateways/{name}/status",
                                      {"status": status})
            except KubeError as exc:
                log.warning("status of Gateway %s/%s: %s", ns, name, exc)

    async def _route_status(self) -> None:
        controlled = {key: (gw.get("spec") or {}).get("gatewayClassName", "")
                      for key, gw in self.gateways.items.items()
                      if (gw.get("spec") or {}).get("gatewayClassName") in (INGRESS_CLASS,
                                                                            WAYPOINT_CLASS)}
        services = dict(self.services.items)
        for (ns, name), route in list(self.routes.items.items()):
            parents = route_parents(route, controlled, services, status_time())
            ours = [p for p in (route.get("status") or {}).get("parents") or ()
                    if p.get("controllerName") == CONTROLLER]
            if ours == parents:
                continue
            others = [p for p in (route.get("status") or {}).get("parents") or ()
                      if p not in ours]
            try:
                await self.kube.patch(f"{GATEWAY_API}/namespaces/{ns}/httproutes/{name}/status",
                                      {"status": {"parents": others + parents}})
            except KubeError as exc:
                if exc.status != 404:
                    log.warning("status of HTTPRoute %s/%s: %s", ns, name, exc)
