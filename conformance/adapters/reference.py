"""The adapter for the project's own reference implementation (reference-impl/).

It treats the reference implementation exactly as a third party's: it applies the
shipped manifests (located on disk relative to this repository, never by importing
``ambient_ref``) and creates waypoints by Gateway, the way a user would.  So a pass
against the reference implementation says something about the suite too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from clusters.provider import ClusterError, ClusterProvider
from profiles.features import ALL_FEATURES

from ..rollout import wait_rolled_out
from .base import (
    ALL_FLAVOURS,
    FLAVOUR_TODAY,
    AdapterConfigError,
    AdapterError,
    CertificateAuthority,
    Flavour,
    MeshAdapter,
    MeshComponents,
    WaypointInfo,
    gateway_condition,
    waypoint_deployment,
    waypoint_gateway,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_ROOT = REPO_ROOT / "reference-impl"
MANIFEST_DIR = REFERENCE_ROOT / "ambient_ref" / "manifests"
SYSTEM_NAMESPACE = "istio-system"
# The one image of the reference implementation (reference-impl/Dockerfile): its
# arguments pick the component.  The tag is the distribution's version.
IMAGE_NAME = "ambient-reference/ambient"
BUILD_HINT = "docker build -t {image} reference-impl  (from the repository's root)"
# The components whose image ``images:`` may replace, by the workload running them;
# waypoints are deployed by the control plane, told through its WAYPOINT_IMAGE.
WORKLOAD_COMPONENT = {"istiod": "pilot", "ztunnel": "ztunnel",
                      "istio-ingressgateway": "ingress"}
COMPONENT_IMAGES = (*WORKLOAD_COMPONENT.values(), "waypoint")
OPTIONS = ("image", "images", "load_images", "manifest_dir")


class ReferenceAdapter(MeshAdapter):
    """Installs reference-impl/ by its manifests; claims every feature and both flavours."""

    name = "reference"

    def __init__(
        self,
        manifest_dir: Path | None = None,
        *,
        install_timeout: float = 120,
        waypoint_timeout: float = 60,
    ) -> None:
        self.manifest_dir = Path(manifest_dir) if manifest_dir else MANIFEST_DIR
        self.install_timeout = install_timeout
        self.waypoint_timeout = waypoint_timeout
        self.image: str | None = None
        self.images: dict[str, str] = {}
        self.load_images = True

    def configure(self, options: Mapping[str, Any]) -> None:
        """``image: <name>`` runs every component from that image (the project's image
        pushed to a registry the cluster pulls from); ``images: {pilot|ztunnel|waypoint|
        ingress: <image>}`` replaces single components (a build under test; the suite's
        self-test runs broken variants this way); ``load_images: false`` keeps a kind
        cluster pulling them instead of loading them from the local Docker engine;
        ``manifest_dir`` another copy of the manifests."""
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise AdapterConfigError(f"reference adapter: unknown option(s) "
                                     f"{', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}")
        images = options.get("images") or {}
        if not isinstance(images, Mapping) or set(images) - set(COMPONENT_IMAGES):
            raise AdapterConfigError("reference adapter: images must map some of "
                                     f"{', '.join(COMPONENT_IMAGES)} to image names")
        image = options.get("image")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise AdapterConfigError("reference adapter: image must be an image name, e.g. "
                                     f"registry.example/{IMAGE_NAME}:{self.version()}")
        load = options.get("load_images", True)
        if not isinstance(load, bool):
            raise AdapterConfigError("reference adapter: load_images must be true or false")
        self.image = image.strip() if image else None
        self.images = {str(k): str(v) for k, v in images.items()}
        self.load_images = load
        if options.get("manifest_dir"):
            self.manifest_dir = Path(str(options["manifest_dir"]))

    def default_image(self) -> str:
        """The image the manifests name unless configured: the distribution's version."""
        return f"{IMAGE_NAME}:{self.version()}"

    def component_image(self, component: str) -> str:
        return self.images.get(component) or self.image or self.default_image()

    # -- claims ----------------------------------------------------------------------

    @property
    def manifests(self) -> list[Path]:
        """The manifests in apply order: CRDs first, so the install's objects have types."""
        return [self.manifest_dir / "crds.yaml", self.manifest_dir / "install.yaml"]

    def version(self) -> str:
        """The distribution's version, read from its pyproject (not by importing it)."""
        pyproject = self.manifest_dir.parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"

    def features(self) -> frozenset[str]:
        return ALL_FEATURES

    def components(self) -> MeshComponents:
        # Its ztunnel captures pods itself: there is no CNI node agent.
        return MeshComponents(cni_agent=None)

    def certificate_authority(self) -> CertificateAuthority:
        # istiod's port serves the CA as JSON over HTTPS (ambient_ref/ca/server.py)
        return CertificateAuthority("https://istiod.istio-system.svc:15012/v1/certificate")

    def api_flavours(self) -> frozenset[str]:
        return ALL_FLAVOURS

    def check_available(self, cluster: ClusterProvider) -> str | None:
        missing = self._missing_manifests()
        if missing:
            return missing
        from clusters.local.provider import LocalCluster

        if isinstance(cluster, LocalCluster) or (cluster.can_load_images and self.load_images):
            return None
        if self.image or set(self.images) >= set(COMPONENT_IMAGES):
            return None
        return (f"the reference implementation's image is not published: on {cluster.name}, "
                f"build it ({BUILD_HINT.format(image=self.default_image())}), push it to a "
                "registry the cluster pulls from, and name it with the adapter config's "
                "'image' option")

    # -- life cycle --------------------------------------------------------------------

    def install(self, cluster: ClusterProvider) -> None:
        """Apply CRDs then the install manifest, and wait until every component is ready:
        each Deployment and DaemonSet rolled out and every pod Ready, as ``kubectl
        rollout status`` and ``kubectl wait`` judge them (conformance/rollout.py), in
        one loop rather than a kubectl process per workload."""
        missing = self._missing_manifests()
        if missing:
            raise AdapterError(missing)
        docs = self._install_docs()
        self._load_images(cluster, docs)
        cluster.apply(self.manifests[0])
        cluster.apply(docs)
        wait_rolled_out(cluster, SYSTEM_NAMESPACE, self.install_timeout)

    def _load_images(self, cluster: ClusterProvider, docs: list[dict[str, Any]]) -> None:
        """On a cluster that loads images from the local engine (kind), put every image
        the install and its waypoints run on the nodes first: they are built here, not
        pulled.  (The local cluster cannot load images: it runs them from its catalog.)"""
        if not (cluster.can_load_images and self.load_images):
            return
        wanted = {c["image"] for d in docs if d.get("kind") in ("Deployment", "DaemonSet")
                  for c in d["spec"]["template"]["spec"]["containers"]}
        wanted.add(self.component_image("waypoint"))
        for image in sorted(wanted):
            try:
                cluster.load_image(image)
            except ClusterError as exc:
                raise AdapterError(
                    f"could not load {image} into {cluster.name}: {exc}. Build it first: "
                    f"{BUILD_HINT.format(image=image)}; or set load_images: false in the "
                    "adapter config if the cluster pulls it from a registry") from None

    def uninstall(self, cluster: ClusterProvider) -> None:
        """Delete in reverse order: workloads before the types their objects use."""
        for manifest in reversed(self.manifests):
            if manifest.is_file():
                cluster.delete(manifest)

    def _missing_manifests(self) -> str | None:
        missing = [str(p) for p in self.manifests if not p.is_file()]
        return (f"reference implementation manifests not found: {', '.join(missing)}"
                if missing else None)

    def _install_docs(self) -> list[dict[str, Any]]:
        """The install manifest, with the configured images in place (the control plane
        is told the waypoints' image through WAYPOINT_IMAGE, as istiod is told its
        proxy image)."""
        docs = [d for d in yaml.safe_load_all(self.manifests[1].read_text()) if d]
        configured = bool(self.image or self.images)
        for doc in docs:
            if doc.get("kind") not in ("Deployment", "DaemonSet"):
                continue
            component = WORKLOAD_COMPONENT.get(doc["metadata"]["name"])
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if component is not None and configured:
                    c["image"] = self.component_image(component)
                if component == "pilot" and configured:
                    c.setdefault("env", []).append(
                        {"name": "WAYPOINT_IMAGE", "value": self.component_image("waypoint")})
        return docs

    # -- waypoints -----------------------------------------------------------------------

    def add_waypoint(
        self,
        cluster: ClusterProvider,
        namespace: str,
        name: str,
        *,
        flavour: Flavour = FLAVOUR_TODAY,
        for_: str = "service",
        service_account: str | None = None,
    ) -> WaypointInfo:
        """Apply the flavour's Gateway and wait for its ``Programmed`` condition.

        The reference control plane sets ``Programmed`` only once the waypoint's
        Deployment serves and its Service has an address, so returning here means
        traffic can flow through it.
        """
        gateway = waypoint_gateway(
            flavour, name, namespace, for_=for_, service_account=service_account
        )
        cluster.apply([gateway])
        try:
            cluster.wait(
                gateway["apiVersion"],
                "Gateway",
                name,
                gateway_condition("Programmed"),
                namespace=namespace,
                timeout=self.waypoint_timeout,
                description="condition Programmed=True (waypoint deployed and ready)",
            )
        except ClusterError as exc:
            raise AdapterError(f"waypoint {namespace}/{name} ({flavour}) not ready: {exc}") from exc
        return WaypointInfo(
            name, namespace, waypoint_deployment(flavour, name, service_account), flavour
        )
