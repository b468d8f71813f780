"""A pod's volumes, made ready in its folder as kubelet makes them.

emptyDir is a folder of the pod; configMap, secret, downwardAPI and projected
volumes are folders of files written from the API (read-only in containers, as
kubelet mounts them); a projected ``serviceAccountToken`` is minted through the
API's TokenRequest with its audience and lifetime, bound to the pod; hostPath
is read in the node's own root (``hostpaths.py``).  A volume that cannot be made
yet (a missing ConfigMap that is not ``optional``, a hostPath type mismatch, a
service account not created yet) raises :class:`VolumeError`; the pod waits and
tries again (``prepare_until``), as kubelet does.  What kubelet does later (refreshing tokens at 80%
of their lifetime, updating ConfigMap and Secret files when the objects change)
is not done: the files are those of the pod's start.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kubeclient import KubeClient, KubeError
from . import rootfs
from .clock import RESYNC_MAX, RESYNC_START, pause
from .hostpaths import HostPathError, NodeRoot
from .podenv import ConfigError, PodFacts, field_value, object_data, resource_value

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_VOLUME = "kube-api-access"  # the name kube-apiserver's admission gives it (plus a suffix)
DEFAULT_MODE = 0o644
# Lifetime of the automounted token: kubelet asks for 3607 s and refreshes it; this
# agent does not refresh, so it asks for a day, longer than any run.
SA_TOKEN_SECONDS = 86400
AUTOMOUNT = "ambient-harness/automount"  # marks the automounted token's volume
SUPPORTED = ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected")


class VolumeError(Exception):
    """The volume cannot be made now (kubelet's FailedMount); the pod retries."""


@dataclass(frozen=True)
class Volume:
    path: str                     # its folder (or file) on this machine
    readonly: bool = False        # the kind's: configMap, secret, downwardAPI, projected
    writable_kind: bool = False   # emptyDir, hostPath: a missing subPath is created
    beneath: tuple[tuple[str, str, bool], ...] = ()  # hostPath: kernel views inside

    def binds(self, mount: dict[str, Any], sub_path: str = "") -> list[rootfs.Bind]:
        """Bind mounts for one ``volumeMount`` (``sub_path`` already expanded)."""
        target = mount["mountPath"]
        readonly = bool(mount.get("readOnly")) or self.readonly
        source = self.path
        beneath = self.beneath
        if sub_path:
            rel = posixpath.normpath(sub_path)
            if rel.startswith("/") or rel == ".." or rel.startswith("../"):
                raise VolumeError(f"subPath {sub_path!r} of volume {mount['name']} must be a "
                                  "relative path inside the volume")
            source = os.path.join(self.path, rel)
            if not os.path.lexists(source):
                if not self.writable_kind:
                    raise VolumeError(f"subPath {sub_path!r} does not exist in volume "
                                      f"{mount['name']}")
                os.makedirs(source, 0o755, exist_ok=True)
            beneath = tuple((os.path.relpath(r, rel), src, ro) for r, src, ro in beneath
                            if r.startswith(rel + "/"))
        return [rootfs.Bind(source, target, readonly)] + [
            rootfs.Bind(src, os.path.join(target, r), readonly or ro) for r, src, ro in beneath]


def _safe_relative(path: str, where: str) -> str:
    rel = posixpath.normpath(path)
    if not path or rel.startswith("/") or rel == ".." or rel.startswith("../"):
        raise VolumeError(f"{where}: path {path!r} must be relative and stay inside the volume")
    return rel


def _write(folder: Path, files: dict[str, tuple[bytes, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        tmp.replace(path)


class PodVolumes:
    """Makes the volumes of one pod (``prepare``), each once."""

    def __init__(self, client: KubeClient, pod: dict[str, Any], folder: Path,
                 node_root: NodeRoot, facts: PodFacts, ca_pem: bytes) -> None:
        self.client = client
        self.pod = pod
        self.folder = folder
        self.node_root = node_root
        self.facts = facts
        self.ca_pem = ca_pem
        self.namespace: str = pod["metadata"]["namespace"]
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.ready: dict[str, Volume] = {}

    def volumes(self) -> list[dict[str, Any]]:
        """The pod's volumes, plus the automounted service-account token's."""
        vols = list(self.spec.get("volumes") or ())
        if self.spec.get("automountServiceAccountToken", True) is not False:
            vols.append({"name": SA_VOLUME, AUTOMOUNT: True})
        return vols

    async def prepare(self) -> dict[str, Volume]:
        for vol in self.volumes():
            name = vol.get("name", "")
            if name not in self.ready:
                self.ready[name] = await self._make(name, vol)
        return self.ready

    async def prepare_until(self, deleted: asyncio.Event,
                            failed: Callable[[VolumeError], None]) -> dict[str, Volume] | None:
        """Every volume made, trying again after kubelet's resync back-off until they
        are, or None once ``deleted`` is set; ``failed`` hears of each distinct cause
        once (kubelet's FailedMount event)."""
        delay, reported = RESYNC_START, None
        while not deleted.is_set():
            try:
                return await self.prepare()
            except VolumeError as exc:
                if str(exc) != reported:
                    reported = str(exc)
                    failed(exc)
            await pause(deleted, delay)
            delay = min(delay * 2, RESYNC_MAX)
        return None

    async def _make(self, name: str, vol: dict[str, Any]) -> Volume:
        folder = self.folder / "volumes" / name
        if "emptyDir" in vol:
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o777)  # as kubelet makes it
            return Volume(str(folder), writable_kind=True)
        if vol.get(AUTOMOUNT):
            _write(folder, {
                "token": ((await self._token(None, SA_TOKEN_SECONDS)).encode(), DEFAULT_MODE),
                "ca.crt": (self.ca_pem, DEFAULT_MODE),
                "namespace": (self.namespace.encode(), DEFAULT_MODE)})
            return Volume(str(folder), readonly=True)
        if "hostPath" in vol:
            hp = vol["hostPath"]
            try:
                src = self.node_root.source(hp.get("path", ""), hp.get("type") or "")
            except HostPathError as exc:
                raise VolumeError(str(exc)) from None
            return Volume(src.path, src.readonly, True, src.beneath)
        kind = next((k for k in SUPPORTED if k in vol), None)
        if kind is None:
            other = next((k for k in vol if k != "name"), "?")
            raise VolumeError(f"volume {name}: {other} volumes are not supported by the local "
                              f"cluster (supported: {', '.join(SUPPORTED)})")
        body = vol[kind] or {}
        mode = int(body.get("defaultMode", DEFAULT_MODE))
        if kind == "configMap":
            files = await self._object_files("configmaps", body, mode, name)
        elif kind == "secret":
            files = await self._object_files("secrets", {**body, "name": body.get("secretName")},
                                             mode, name)
        elif kind == "downwardAPI":
            files = self._downward_files(body, mode, name)
        else:
            files = {}
            for source in body.get("sources") or ():
                files.update(await self._projected(source, mode, name))
        _write(folder, files)
        return Volume(str(folder), readonly=True)

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise VolumeError(f"reading {plural} {name}: {exc.message}") from None

    async def _object_files(self, plural: str, body: dict[str, Any], mode: int,
                            volume: str) -> dict[str, tuple[bytes, int]]:
        name = body.get("name") or ""
        obj = await self._get(plural, name)
        kind = "configmap" if plural == "configmaps" else "secret"
        if obj is None:
            if body.get("optional"):
                return {}
            raise VolumeError(f'{kind} "{name}" not found')
        data = object_data(obj, plural)
        items = body.get("items")
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        out = {}
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if body.get("optional"):
                    continue
                raise VolumeError(f"{kind} {name} references non-existent config key: {key}")
            rel = _safe_relative(item.get("path", ""), f"volume {volume}")
            out[rel] = (data[key], int(item.get("mode", mode)))
        return out

    def _downward_files(self, body: dict[str, Any], mode: int,
                        volume: str) -> dict[str, tuple[bytes, int]]:
        containers = {c.get("name"): c for c in (self.spec.get("containers") or ())}
        out = {}
        for item in body.get("items") or ():
            rel = _safe_relative(item.get("path", ""), f"volume {volume}")
            try:
                if "fieldRef" in item:
                    value = field_value(item["fieldRef"].get("fieldPath", ""), self.pod,
                                        self.facts, whole_maps=True)
                elif "resourceFieldRef" in item:
                    ref = item["resourceFieldRef"]
                    container = containers.get(ref.get("containerName"))
                    if container is None:
                        raise VolumeError(f"volume {volume}: resourceFieldRef names no "
                                          f"container of the pod ({ref.get('containerName')})")
                    value = resource_value(ref, container, self.facts)
                else:
                    continue
            except ConfigError as exc:
                raise VolumeError(f"volume {volume}: {exc}") from None
            out[rel] = (value.encode(), int(item.get("mode", mode)))
        return out

    async def _projected(self, source: dict[str, Any], mode: int,
                         volume: str) -> dict[str, tuple[bytes, int]]:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            rel = _safe_relative(sat.get("path", ""), f"volume {volume}")
            token = await self._token(sat.get("audience"),
                                      int(sat.get("expirationSeconds") or 3600))
            return {rel: (token.encode(), mode)}
        if "configMap" in source:
            return await self._object_files("configmaps", source["configMap"], mode, volume)
        if "secret" in source:
            return await self._object_files("secrets", source["secret"], mode, volume)
        if "downwardAPI" in source:
            return self._downward_files(source["downwardAPI"], mode, volume)
        other = next(iter(source), "?")
        raise VolumeError(f"volume {volume}: projected source {other} is not supported by the "
                          "local cluster")

    async def _token(self, audience: str | None, seconds: int) -> str:
        """A token of the pod's service account, bound to the pod (TokenRequest)."""
        sa = self.spec.get("serviceAccountName", "default")
        meta = self.pod["metadata"]
        spec: dict[str, Any] = {"expirationSeconds": seconds, "boundObjectRef": {
            "kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]
        try:
            tr = await self.client.create(
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                 "spec": spec})
        except KubeError as exc:
            raise VolumeError(f"service account token for {sa}: {exc.message}") from None
        return str(tr["status"]["token"])
