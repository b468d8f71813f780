"""The cluster's root of trust: created once, kept in a Secret, published in ConfigMaps.

Every control-plane replica must sign with the same root, and the root must survive
control-plane restarts, or workloads holding certificates from an earlier root would
stop trusting each other.  As istiod does with its self-signed CA, the root and its
key live in the Secret ``istio-ca-secret`` (keys ``ca-cert.pem`` and ``ca-key.pem``) in
the control plane's namespace:

- if the Secret exists, its root is used as is (a root "taken from a Secret");
- otherwise a new root is created and stored.  Two replicas starting together may
  both try; the API server lets exactly one create succeed and answers the other 409,
  and the loser reads back and adopts the winner's root, discarding its own.

Workloads need the root certificate (never the key) to verify peers and the CA, so it
is published as the ConfigMap ``istio-ca-root-cert`` (key ``root-cert.pem``) in each
namespace that needs it, which is where Istio's sidecars and ztunnel read it from.

The Kubernetes calls sit behind the three-method ``KubeStore`` protocol, so tests use
an in-memory fake; ``KubeSecretStore``, on the distribution's ``kube.KubeClient``, is
the production implementation.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Protocol

from ..kube import AlreadyExists, KubeClient, KubeError, resource_path
from .authority import DEFAULT_TRUST_DOMAIN, CertificateAuthority

log = logging.getLogger(__name__)

CA_NAMESPACE = "istio-system"
CA_SECRET = "istio-ca-secret"
CA_CERT_KEY = "ca-cert.pem"
CA_KEY_KEY = "ca-key.pem"
ROOT_CONFIGMAP = "istio-ca-root-cert"
ROOT_CERT_KEY = "root-cert.pem"
CA_SECRET_TYPE = "istio.io/ca-root"  # the type istiod gives its self-signed CA's Secret
FIELD_MANAGER = "ambient-ref-ca"

__all__ = [
    "CA_SECRET",
    "ROOT_CONFIGMAP",
    "AlreadyExists",
    "KubeSecretStore",
    "KubeStore",
    "RootOfTrustError",
    "load_or_create_root",
    "publish_root",
]


class KubeStore(Protocol):
    """The Kubernetes calls the bootstrap makes."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The Secret's decoded data, or None if there is no such Secret."""
        ...

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        """Create the Secret; raise ``AlreadyExists`` if it exists (HTTP 409)."""
        ...

    async def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or set these keys in the existing one."""
        ...


class KubeSecretStore:
    """``KubeStore`` on the Kubernetes API: Secrets and ConfigMaps through a ``KubeClient``."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            secret = await self.kube.get(resource_path("v1", "secrets", namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": CA_SECRET_TYPE,
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
        }
        await self.kube.create(resource_path("v1", "secrets", namespace), body)

    async def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or merge ``data`` into the existing one.

        Create-then-merge-patch rather than server-side apply, which not every API
        server (the harness's local cluster included) implements.
        """
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
        try:
            await self.kube.create(resource_path("v1", "configmaps", namespace), body)
        except AlreadyExists:
            await self.kube.patch(
                resource_path("v1", "configmaps", namespace, name),
                {"data": data},
                fieldManager=FIELD_MANAGER,
            )


class RootOfTrustError(Exception):
    """The stored root cannot be used, and overwriting it would split the mesh's trust."""


async def load_or_create_root(
    kube: KubeStore,
    namespace: str = CA_NAMESPACE,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    publish_namespaces: Iterable[str] | None = None,
    days: int = 3650,
) -> CertificateAuthority:
    """The cluster's CA: the root in ``namespace``'s Secret, created there if absent.

    The root certificate is then published to ``publish_namespaces`` (by default just
    ``namespace``); ``publish_root`` publishes it to namespaces that appear later.
    A Secret that exists but does not hold a usable root raises ``RootOfTrustError``
    instead of being replaced: some workloads may already trust it.
    """
    authority = await _load(kube, namespace, trust_domain)
    if authority is None:
        created = CertificateAuthority.create(trust_domain, days)
        data = {CA_CERT_KEY: created.cert_pem, CA_KEY_KEY: created.key_pem}
        try:
            await kube.create_secret(namespace, CA_SECRET, data)
            log.info("created a new root of trust in secret %s/%s", namespace, CA_SECRET)
            authority = created
        except AlreadyExists:
            # Another replica created it between our read and our create: use theirs.
            log.info("secret %s/%s was created concurrently; adopting it", namespace, CA_SECRET)
            authority = await _load(kube, namespace, trust_domain)
            if authority is None:
                raise RootOfTrustError(
                    f"creating {namespace}/{CA_SECRET} conflicted, yet it cannot be read back"
                ) from None
    else:
        log.info("using the root of trust from secret %s/%s", namespace, CA_SECRET)
    await publish_root(
        kube, authority, [namespace] if publish_namespaces is None else publish_namespaces
    )
    return authority


async def publish_root(
    kube: KubeStore, authority: CertificateAuthority, namespaces: Iterable[str]
) -> None:
    """Write the root certificate as ConfigMap ``istio-ca-root-cert`` in each namespace."""
    root = authority.root_pem.decode("ascii")
    for ns in dict.fromkeys(namespaces):  # each once, in order
        await kube.apply_configmap(ns, ROOT_CONFIGMAP, {ROOT_CERT_KEY: root})


async def _load(kube: KubeStore, namespace: str, trust_domain: str) -> CertificateAuthority | None:
    data = await kube.get_secret(namespace, CA_SECRET)
    if data is None:
        return None
    cert, key = data.get(CA_CERT_KEY), data.get(CA_KEY_KEY)
    if not cert or not key:
        raise RootOfTrustError(
            f"secret {namespace}/{CA_SECRET} lacks {CA_CERT_KEY} or {CA_KEY_KEY}"
        )
    try:
        return CertificateAuthority.from_pem(cert, key, trust_domain=trust_domain)
    except (ValueError, TypeError) as exc:
        raise RootOfTrustError(f"secret {namespace}/{CA_SECRET} holds no usable CA: {exc}") from exc
