"""Discovery documents: how clients learn which groups, versions and resources exist.

kubectl asks for the aggregated (apidiscovery v2) form first and falls back to
these legacy documents when the server answers plain JSON, so serving the legacy
form is enough for every client.
"""

from __future__ import annotations

from typing import Any

from .resources import Registry, ResourceType

# The Kubernetes version the API answers as: the one whose client-go real components of
# today build on (istio/istio go.mod: k8s.io/client-go v0.36.1), inside the version skew
# of the pinned kubectl and newer than Istio's minimum (1.32, istioctl precheck).
GIT_VERSION = "v1.36.0-ambient-harness"
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": GIT_VERSION,
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.26",
    "compiler": "python",
    "platform": "linux/amd64",
}

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
    "exec": ["create", "get"],
    "portforward": ["create", "get"],
    "attach": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "token": ["create"],
    "finalize": ["update"],
}


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in sorted(registry.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for sub in sorted(rt.subresources):
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
        }
        if sub == "scale":
            entry.update(group="autoscaling", version="v1", kind="Scale")
        elif sub == "token":
            entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest")
        elif sub in ("log", "exec", "portforward", "attach"):
            entry["kind"] = {"exec": "PodExecOptions", "portforward": "PodPortForwardOptions",
                             "attach": "PodAttachOptions"}.get(sub, "Pod")
        elif sub == "proxy":
            entry["kind"] = "PodProxyOptions" if rt.kind == "Pod" else "ServiceProxyOptions"
        elif sub == "binding":
            entry["kind"] = "Binding"
        elif sub == "eviction":  # kubectl drain takes the group version from here
            entry.update(group="policy", version="v1", kind="Eviction")
        out.append(entry)
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    rts = registry.in_group_version(group, version)
    if not rts:
        return None
    resources = []
    for rt in sorted(rts, key=lambda r: r.plural):
        resources.extend(_resource_entries(rt))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
