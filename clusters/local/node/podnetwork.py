"""A pod's network sandbox as a container runtime makes it: the namespace and routed
veth (``sandbox.py``), its bind in the node's ``/var/run/netns`` (``hostpaths.py``,
so the ``CNI_NETNS`` path resolves in the node's view where plugins run), then the
CNI chain of the node's network (``cni.py``), whose primary result is that veth;
torn down in the opposite order (DEL, the node's bind, the namespace).

One object per try: containerd makes a new sandbox (and sandbox id) for each
RunPodSandbox, so a failed try is torn down whole and the next starts afresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..network import netns
from . import cni, rootfs
from . import sandbox as sandboxes
from .hostpaths import NodeRoot


class SandboxFailed(Exception):
    """The sandbox could not be made; ``str()`` is the message kubelet puts after
    "Failed to create pod sandbox: "."""


class PodNetwork:
    def __init__(self, runtime: cni.Runtime, node: NodeRoot, ipam: sandboxes.IPAM,
                 pod: dict[str, Any], dns_ip: str | None, cache_dir: Path, cgroup: str | None,
                 record: Callable[[str], None]) -> None:
        self.runtime = runtime
        self.node = node
        self.ipam = ipam
        self.pod = pod
        self.dns_ip = dns_ip
        self.cache_dir = cache_dir
        self.cgroup = cgroup
        self.record = record
        self.id = secrets.token_hex(32)  # CNI_CONTAINERID, K8S_POD_INFRA_CONTAINER_ID
        self.sandbox: sandboxes.Sandbox | None = None
        self.bound = False  # the namespace shows in the node's /var/run/netns
        self.network: cni.NetworkConfigList | None = None
        self.attachment: cni.Attachment | None = None
        self.ready = False  # the ADD chain succeeded: the pod has its address

    @property
    def ip(self) -> str | None:
        return self.sandbox.ip if self.sandbox and self.ready else None

    @property
    def dns(self) -> dict[str, list[str]] | None:
        meta = self.pod["metadata"]
        return sandboxes.dns_config(meta["namespace"], self.dns_ip) if self.dns_ip else None

    async def setup(self) -> None:
        """SandboxFailed if the namespace or a plugin failed; the caller then runs
        ``teardown`` (the spec wants a DEL after a failed ADD too)."""
        meta = self.pod["metadata"]
        try:
            self.sandbox = await sandboxes.create(meta["uid"], self.ipam, self.record)
        except netns.NetworkError as exc:
            raise SandboxFailed(f"failed to create the pod's network namespace: {exc}") from None
        try:  # before the ADD: CNI_NETNS names the node's path
            self.bound = True
            self.node.add_pod_netns(self.sandbox.netns, self.sandbox.path)
        except (OSError, rootfs.RootError) as exc:
            raise SandboxFailed("failed to show the pod's network namespace in the node's "
                                f"{cni.NETNS_DIR}: {exc}") from None
        self.network = self.runtime.load()
        path = f"{cni.NETNS_DIR}/{self.sandbox.netns}"
        self.attachment = cni.Attachment(
            self.id, path, cni.k8s_args(meta["namespace"], meta["name"], self.id, meta["uid"]),
            cni.capability_args(self.pod, self.dns, self.cgroup))
        if self.network is not None:
            primary = cni.PrimaryNetwork(
                host_link=self.sandbox.link, host_mac=self.sandbox.host_mac,
                mac=self.sandbox.mac, sandbox=path, ip=self.sandbox.ip,
                gateway=self.ipam.gateway, dns=self.dns)
            try:
                await self.runtime.add(self.network, self.attachment, primary, self.cache_dir)
            except cni.CniError as exc:
                raise SandboxFailed(
                    f'failed to setup network for sandbox "{self.id}": {exc}') from None
        self.ready = True

    async def teardown(self) -> None:
        """The chain's DEL (before the namespace goes: plugins get CNI_NETNS), then the
        node's bind of the namespace (a bind left there would keep it alive), then the
        namespace and its links; the last two go even if a plugin's DEL fails
        (CniError)."""
        sandbox, self.sandbox = self.sandbox, None
        attachment, self.attachment = self.attachment, None  # one DEL per ADD
        bound, self.bound = self.bound, False
        self.ready = False
        try:
            if attachment is not None:
                await self.runtime.delete(attachment, self.cache_dir, self.network)
        finally:
            if sandbox is not None:
                if bound:
                    self.node.remove_pod_netns(sandbox.netns)
                await sandboxes.destroy(sandbox, self.ipam)
