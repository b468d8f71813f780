"""A container's environment and the downward API, as kubelet computes them.

Pure functions of the pod, the node's facts and the ConfigMaps/Secrets already
read from the API, so the rules (order, ``$(VAR)`` expansion, ``optional``,
resource rounding) are testable without a cluster.  Sources: Kubernetes'
pkg/kubelet/kubelet_pods.go (makeEnvironmentVariables), pkg/api/v1/resource/
helpers.go (ExtractContainerResourceValue), pkg/fieldpath/fieldpath.go and the
API reference for EnvVarSource / DownwardAPIVolumeFile.  ``read_objects`` reads
those ConfigMaps and Secrets (the one call to the API here), at each start of a
container, as kubelet does.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..kubeclient import KubeClient, KubeError

# The variables kubelet adds for the ``kubernetes`` Service (the API's VIP)
API_VIP = "198.19.0.1"
SERVICE_ENV = {"KUBERNETES_SERVICE_HOST": API_VIP, "KUBERNETES_SERVICE_PORT": "443",
               "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": f"tcp://{API_VIP}:443",
               "KUBERNETES_PORT_443_TCP": f"tcp://{API_VIP}:443",
               "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443",
               "KUBERNETES_PORT_443_TCP_ADDR": API_VIP}
# Objects read for a pod: ("configmaps"|"secrets", name) -> the object, or None
# if the API said it does not exist.
Objects = Mapping[tuple[str, str], dict[str, Any] | None]
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """kubelet's CreateContainerConfigError: a referenced object or key is missing."""


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can tell about a pod besides its own manifest."""

    node: str
    node_ip: str
    pod_ip: str
    allocatable: Mapping[str, str]  # the node's: defaults for unset limits


def references(containers: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets the containers' env and envFrom read."""
    refs: set[tuple[str, str]] = set()
    for c in containers:
        for src in c.get("envFrom") or ():
            for key, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if key in src:
                    refs.add((plural, src[key].get("name", "")))
        for item in c.get("env") or ():
            ref = item.get("valueFrom") or {}
            for key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                if key in ref:
                    refs.add((plural, ref[key].get("name", "")))
    return refs


async def read_objects(client: KubeClient, namespace: str,
                       containers: list[dict[str, Any]]) -> Objects:
    """The ConfigMaps and Secrets the containers reference, read now (None: not
    found); ConfigError if one cannot be read."""
    objects: dict[tuple[str, str], dict[str, Any] | None] = {}
    for plural, name in references(containers):
        try:
            objects[(plural, name)] = await client.get(
                f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeError as exc:
            if exc.status != 404:
                raise ConfigError(f"reading {plural} {name}: {exc.message}") from None
            objects[(plural, name)] = None
    return objects


def object_data(obj: dict[str, Any], plural: str, binary: bool = True) -> dict[str, bytes]:
    """A ConfigMap's data and (for volumes, not env: kubelet reads only ``data``
    there) binaryData, or a Secret's data, as bytes."""
    out: dict[str, bytes] = {}
    if plural == "configmaps":
        out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
        if binary:
            out.update({k: base64.b64decode(v)
                        for k, v in (obj.get("binaryData") or {}).items()})
    else:
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return out


def _kind_name(plural: str) -> tuple[str, str]:
    return ("configmap", "ConfigMap") if plural == "configmaps" else ("secret", "Secret")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown names stay as written)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def container_env(container: dict[str, Any], pod: dict[str, Any], facts: PodFacts,
                  objects: Objects, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (image and service variables), then envFrom, then env, in order,
    later names overriding earlier ones, values expanded against what came before."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for src in container.get("envFrom") or ():
        for key, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            if key not in src:
                continue
            name = src[key].get("name", "")
            obj = objects.get((plural, name))
            if obj is None:
                if src[key].get("optional"):
                    continue
                raise ConfigError(f'{_kind_name(plural)[0]} "{name}" not found')
            prefix = src.get("prefix") or ""
            for k, v in object_data(obj, plural, binary=False).items():
                if _ENV_NAME.match(prefix + k):  # kubelet skips (and reports) invalid names
                    env[prefix + k] = v.decode(errors="replace")
    for item in container.get("env") or ():
        name = item.get("name", "")
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        ref = item["valueFrom"]
        if "fieldRef" in ref:
            env[name] = field_value(ref["fieldRef"].get("fieldPath", ""), pod, facts)
        elif "resourceFieldRef" in ref:
            env[name] = resource_value(ref["resourceFieldRef"], container, facts)
        else:
            key, plural = (("configMapKeyRef", "configmaps") if "configMapKeyRef" in ref
                           else ("secretKeyRef", "secrets"))
            if key not in ref:
                continue
            sel = ref[key]
            obj = objects.get((plural, sel.get("name", "")))
            kind, title = _kind_name(plural)
            if obj is None:
                if sel.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{sel.get("name", "")}" not found')
            data = object_data(obj, plural, binary=False)
            if sel.get("key") not in data:
                if sel.get("optional"):
                    continue
                raise ConfigError(f"couldn't find key {sel.get('key')} in {title} "
                                  f"{ns}/{sel.get('name', '')}")
            env[name] = data[sel["key"]].decode(errors="replace")
    return env


def _quoted(items: Mapping[str, str]) -> str:
    """metadata.labels / metadata.annotations in a downwardAPI file: k="v" lines."""
    return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(items.items()))


def field_value(path: str, pod: dict[str, Any], facts: PodFacts, *,
                whole_maps: bool = False) -> str:
    """A ``fieldRef``: env allows single labels/annotations; downwardAPI volumes
    (``whole_maps``) also all of them."""
    meta = pod["metadata"]
    spec = pod.get("spec") or {}
    values = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": facts.node,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": facts.pod_ip, "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.node_ip, "status.hostIPs": facts.node_ip,
    }
    if path in values:
        return values[path]
    for prefix in ("metadata.labels", "metadata.annotations"):
        source = meta.get(prefix.split(".")[1]) or {}
        if whole_maps and path == prefix:
            return _quoted(source)
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(source.get(path[len(prefix) + 2:-2], ""))
    raise ConfigError(f"unsupported fieldPath: {path}")


_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
             "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
             "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
             "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
             "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def quantity(text: Any) -> Decimal:
    """A Kubernetes resource quantity (``250m``, ``1Gi``, ``1e3``) as a number.

    (The kubernetes client's parse_quantity comes only with the whole client,
    too heavy an import for every node agent.)"""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ConfigError(f"invalid resource quantity {text!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        raise ConfigError(f"invalid resource quantity {text!r}") from None


def resource_value(ref: Mapping[str, Any], container: dict[str, Any], facts: PodFacts) -> str:
    """A ``resourceFieldRef``: the container's limit (the node's allocatable when
    unset) or request, divided by ``divisor`` and rounded up."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory",
                                                          "ephemeral-storage"):
        raise ConfigError(f"unsupported resource: {resource}")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":  # the API defaults requests to limits
        value = (resources.get("limits") or {}).get(name)
    if value is None:
        value = facts.allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise ConfigError(f"invalid divisor {ref.get('divisor')!r} of {resource}")
    if name == "cpu":  # kubelet divides milli-values: a divisor below 1m counts as 1m
        milli = math.ceil(quantity(value) * 1000)
        return str(math.ceil(Decimal(milli) / max(math.ceil(divisor * 1000), 1)))
    return str(math.ceil(math.ceil(quantity(value)) / math.ceil(divisor)))
