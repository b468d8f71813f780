"""OpenAPI v3 documents as kubectl reads them (``openapi.py``).

The checks re-implement, in a few lines each, what kubectl 1.37 does with the
documents (k8s.io/cli-runtime ``queryParamVerifierV3``, kubectl's apply
``Patcher``, apimachinery's ``PatchMetaFromOpenAPIV3``); the last test runs the
real kubectl against a stub server that serves them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from clusters.local.apiserver import openapi
from clusters.local.apiserver.openapi import (
    ResourceInfo,
    crd_component_name,
    document_hash,
    encode_document,
    group_version_path,
    openapi_v3_document,
    openapi_v3_root,
)
from clusters.local.apiserver.resources import ResourceType
from clusters.local.apiserver.schema import kind_schema

CORE = [
    ResourceInfo("Pod", "pods", True, True),
    ResourceInfo("Service", "services", True, True),
    ResourceInfo("Namespace", "namespaces", False, True),
    ResourceInfo("ConfigMap", "configmaps", True),
    ResourceInfo("Secret", "secrets", True),
    ResourceInfo("ServiceAccount", "serviceaccounts", True),
    ResourceInfo("Endpoints", "endpoints", True),
    ResourceInfo("Event", "events", True),
    ResourceInfo("Node", "nodes", False, True),
]
BUILTIN: dict[tuple[str, str], list[ResourceInfo]] = {
    ("", "v1"): CORE,
    ("apps", "v1"): [
        ResourceInfo("Deployment", "deployments", True, True),
        ResourceInfo("ReplicaSet", "replicasets", True, True),
        ResourceInfo("DaemonSet", "daemonsets", True, True),
    ],
    ("discovery.k8s.io", "v1"): [ResourceInfo("EndpointSlice", "endpointslices", True)],
    ("apiextensions.k8s.io", "v1"): [
        ResourceInfo("CustomResourceDefinition", "customresourcedefinitions", False, True)
    ],
    ("authentication.k8s.io", "v1"): [
        ResourceInfo("TokenReview", "tokenreviews", False, verbs=("create",))
    ],
    ("coordination.k8s.io", "v1"): [ResourceInfo("Lease", "leases", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ResourceInfo("ClusterRole", "clusterroles", False),
        ResourceInfo("RoleBinding", "rolebindings", True),
    ],
}
POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "Policy spec.",
            "properties": {"action": {"type": "string", "enum": ["ALLOW", "DENY"]}},
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}
ISTIO = [ResourceInfo("AuthorizationPolicy", "authorizationpolicies", True, True, POLICY_SCHEMA)]


@pytest.fixture(scope="module")
def core_doc() -> dict[str, Any]:
    return openapi_v3_document("", "v1", CORE)


# -- what kubectl does with a document, in Python ----------------------------------


def supports_query_param(doc: dict[str, Any], gvk: dict[str, str], param: str) -> bool:
    """cli-runtime ``supportsQueryParamV3``: the GVK's PATCH lists ``param``."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is None or op.get("x-kubernetes-group-version-kind") != gvk:
            continue
        return any(p["name"] == param for p in op.get("parameters", []))
    return False


def supports_strategic_merge(doc: dict[str, Any], gvk: dict[str, str]) -> bool:
    """kubectl ``gvkSupportsPatchOpenAPIV3``."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is not None and op.get("x-kubernetes-group-version-kind") == gvk:
            return "application/strategic-merge-patch+json" in op["requestBody"]["content"]
    return False


def kind_component(doc: dict[str, Any], gvk: dict[str, str]) -> dict[str, Any]:
    """kubectl ``buildStrategicMergePatchFromOpenAPIV3``: the component listing the GVK."""
    found = [
        c
        for c in doc["components"]["schemas"].values()
        if gvk in (c.get("x-kubernetes-group-version-kind") or [])
    ]
    assert len(found) == 1, gvk
    return found[0]


def resolve(doc: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """``PatchMetaFromOpenAPIV3`` ``resolve``: allOf[0], then $ref."""
    if s.get("allOf"):
        s = s["allOf"][0]
    ref = s.get("$ref")
    if ref:
        s = doc["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return s


def patch_meta(
    doc: dict[str, Any], gvk: dict[str, str], path: str
) -> tuple[str | None, str | None]:
    """(merge key, strategy) of dotted ``path``, walking as ``PatchMetaFromOpenAPIV3``."""
    s = kind_component(doc, gvk)
    meta: tuple[str | None, str | None] = (None, None)
    for key in path.split("."):
        prop = s["properties"][key]  # "unable to find api field" if missing
        meta = (prop.get("x-kubernetes-patch-merge-key"), prop.get("x-kubernetes-patch-strategy"))
        if "items" in prop:
            prop = prop["items"]
        s = resolve(doc, prop)
    return meta


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):  # not JSONSchemaProps' "$ref" property
                yield v
            else:
                yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


# -- the root ---------------------------------------------------------------------------


def test_root_lists_each_group_version_with_a_hashed_url(core_doc):
    apps = openapi_v3_document("apps", "v1", BUILTIN[("apps", "v1")])
    docs = {("", "v1"): core_doc, ("apps", "v1"): apps}
    root = openapi_v3_root(["apis/apps/v1", "api/v1"], lambda g, v: docs[(g, v)])
    assert list(root) == ["paths"]
    assert root["paths"] == {
        "api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={document_hash(core_doc)}"},
        "apis/apps/v1": {
            "serverRelativeURL": f"/openapi/v3/apis/apps/v1?hash={document_hash(apps)}"
        },
    }
    precomputed = {"api/v1": document_hash(core_doc), "apis/apps/v1": document_hash(apps)}
    assert openapi_v3_root(precomputed, precomputed) == root
    assert len(document_hash(core_doc)) == 128  # hex SHA-512, like kube-openapi


def test_hashes_are_stable_and_follow_content(core_doc):
    again = openapi_v3_document("", "v1", CORE)
    assert document_hash(again) == document_hash(core_doc)
    fewer = openapi_v3_document("", "v1", CORE[:2])
    assert document_hash(fewer) != document_hash(core_doc)
    data, digest = encode_document(core_doc)
    assert json.loads(data) == core_doc and digest == document_hash(core_doc)


def test_group_version_paths():
    assert group_version_path("", "v1") == "api/v1"
    assert group_version_path("apps", "v1") == "apis/apps/v1"
    assert openapi.parse_group_version_path("apis/security.istio.io/v1") == (
        "security.istio.io",
        "v1",
    )
    with pytest.raises(ValueError):
        openapi.parse_group_version_path("apis/apps")


# -- a built-in document -------------------------------------------------------------------

POD = {"group": "", "version": "v1", "kind": "Pod"}


def test_pod_patch_offers_field_validation_and_strategic_merge(core_doc):
    item = core_doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == POD
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["operationId"] == "patchCoreV1NamespacedPod"
    params = {p["name"]: p for p in patch["parameters"]}
    assert params["fieldValidation"]["in"] == "query"
    assert {"dryRun", "fieldManager", "force"} <= params.keys()
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert supports_query_param(core_doc, POD, "fieldValidation")
    assert supports_strategic_merge(core_doc, POD)
    for gvk in ({"group": "", "version": "v1", "kind": "Namespace"}, POD):
        assert supports_query_param(core_doc, gvk, "fieldValidation")


def test_every_resource_has_its_paths_and_actions(core_doc):
    paths = core_doc["paths"]
    assert set(paths["/api/v1/namespaces/{namespace}/pods"]) == {
        "get",
        "post",
        "delete",
        "parameters",
    }
    assert paths["/api/v1/namespaces/{namespace}/pods"]["delete"]["x-kubernetes-action"] == (
        "deletecollection"
    )
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert set(paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]) == {
        "get",
        "put",
        "patch",
        "parameters",
    }
    assert "/api/v1/namespaces/{name}" in paths  # cluster-scoped
    assert "/api/v1/namespaces/{namespace}/configmaps/{name}/status" not in paths
    for item in paths.values():
        for method, op in item.items():
            if method != "parameters":
                assert op["x-kubernetes-group-version-kind"]["version"] == "v1"


def test_components_are_named_like_the_real_ones_and_carry_gvks(core_doc):
    schemas = core_doc["components"]["schemas"]
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [POD]
    assert schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "PodList"}
    ]
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert "io.k8s.api.core.v1.Container" in schemas
    assert "x-kubernetes-group-version-kind" not in schemas["io.k8s.api.core.v1.Container"]
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"] == "date-time"
    assert "io.k8s.apimachinery.pkg.api.resource.Quantity" in schemas
    container = schemas["io.k8s.api.core.v1.Container"]
    assert "name" in container["required"]
    assert container["properties"]["image"]["type"] == "string"
    for ref in all_refs(core_doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_every_builtin_document_is_self_contained():
    for (group, version), resources in BUILTIN.items():
        doc = openapi_v3_document(group, version, resources)
        schemas = doc["components"]["schemas"]
        for ref in all_refs(doc):
            assert ref.removeprefix("#/components/schemas/") in schemas, (group, ref)
        for res in resources:
            gvk = {"group": group, "version": version, "kind": res.kind}
            kind_component(doc, gvk)
            if "patch" in res.verbs:
                assert supports_query_param(doc, gvk, "fieldValidation")
                assert supports_strategic_merge(doc, gvk)


def test_patch_extensions_walk_like_kubectl(core_doc):
    assert patch_meta(core_doc, POD, "spec.containers") == ("name", "merge")
    assert patch_meta(core_doc, POD, "spec.containers.ports") == ("containerPort", "merge")
    assert patch_meta(core_doc, POD, "spec.containers.env") == ("name", "merge")
    assert patch_meta(core_doc, POD, "spec.volumes") == ("name", "merge,retainKeys")
    assert patch_meta(core_doc, POD, "metadata.finalizers") == (None, "merge")
    assert patch_meta(core_doc, POD, "spec.tolerations") == (None, None)
    apps = openapi_v3_document("apps", "v1", BUILTIN[("apps", "v1")])
    deployment = {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert patch_meta(apps, deployment, "spec.strategy") == (None, "retainKeys")
    assert patch_meta(apps, deployment, "spec.template.spec.containers") == ("name", "merge")
    schemas = apps["components"]["schemas"]
    assert "io.k8s.api.apps.v1.DeploymentSpec" in schemas
    assert "io.k8s.api.core.v1.PodTemplateSpec" in schemas  # shared types stay in core


def test_builtin_schema_from_kind_schema_or_lookup_is_the_same():
    explicit = [
        ResourceInfo(
            "Lease", "leases", True, schema=kind_schema("coordination.k8s.io", "v1", "Lease")
        )
    ]
    looked_up = [ResourceInfo("Lease", "leases", True)]
    assert openapi_v3_document("coordination.k8s.io", "v1", explicit) == openapi_v3_document(
        "coordination.k8s.io", "v1", looked_up
    )


def test_verbs_limit_the_operations():
    doc = openapi_v3_document(
        "authentication.k8s.io", "v1", BUILTIN[("authentication.k8s.io", "v1")]
    )
    assert list(doc["paths"]) == ["/apis/authentication.k8s.io/v1/tokenreviews"]
    item = doc["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]
    assert set(item) == {"post", "parameters"}
    assert "io.k8s.api.authentication.v1.TokenReview" in doc["components"]["schemas"]


# -- a custom resource document -----------------------------------------------------------

POLICY = {"group": "security.istio.io", "version": "v1", "kind": "AuthorizationPolicy"}


def test_custom_kinds_get_field_validation_but_no_strategic_merge():
    doc = openapi_v3_document("security.istio.io", "v1", ISTIO)
    item = doc["paths"][
        "/apis/security.istio.io/v1/namespaces/{namespace}/authorizationpolicies/{name}"
    ]
    assert item["patch"]["x-kubernetes-group-version-kind"] == POLICY
    assert supports_query_param(doc, POLICY, "fieldValidation")
    assert not supports_strategic_merge(doc, POLICY)
    assert set(item["patch"]["requestBody"]["content"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    }


def test_custom_kind_component_wraps_the_crd_schema():
    doc = openapi_v3_document("security.istio.io", "v1", ISTIO)
    schemas = doc["components"]["schemas"]
    name = crd_component_name("security.istio.io", "v1", "AuthorizationPolicy")
    assert name == "io.istio.security.v1.AuthorizationPolicy"
    component = schemas[name]
    assert component["x-kubernetes-group-version-kind"] == [POLICY]
    assert component["properties"]["spec"]["properties"]["action"]["enum"] == ["ALLOW", "DENY"]
    assert component["properties"]["metadata"]["allOf"][0]["$ref"].endswith(".ObjectMeta")
    assert {"apiVersion", "kind"} <= component["properties"].keys()
    assert "apiVersion" not in POLICY_SCHEMA["properties"]  # the input is not modified
    listing = schemas["io.istio.security.v1.AuthorizationPolicyList"]
    assert listing["properties"]["items"]["items"]["$ref"] == f"#/components/schemas/{name}"
    for ref in all_refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_custom_kind_without_schema_is_free_form():
    doc = openapi_v3_document(
        "example.com", "v1", [ResourceInfo("Widget", "widgets", True, schema={})]
    )
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-preserve-unknown-fields"] is True


def test_resource_info_of_a_server_resource_type():
    pods = ResourceInfo.of(ResourceType("", ("v1",), "Pod", "pods", "pod", True,
                                        subresources=frozenset({"status"})), "v1")
    assert pods == ResourceInfo("Pod", "pods", True, True, kind_schema("", "v1", "Pod"))
    crd = ResourceType(
        "security.istio.io", ("v1",), "AuthorizationPolicy", "authorizationpolicies",
        "authorizationpolicy", True,
        crd_versions={"v1": {"schema": {"openAPIV3Schema": POLICY_SCHEMA}}},
    )
    assert ResourceInfo.of(crd, "v1").schema is POLICY_SCHEMA
    assert ResourceInfo.of(crd, "v2").schema == {}


def test_openapi_v2_is_an_empty_swagger_document_in_json_and_protobuf():
    assert openapi.openapi_v2_document() == {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": {},
        "definitions": {},
    }
    # gnostic Document: swagger (1), info (2: title 1, version 2), paths (8), definitions (9)
    assert openapi.openapi_v2_protobuf() == (
        b"\n\x032.0" + b"\x12\x15\n\nKubernetes\x12\x07v1.37.0" + b"B\x00" + b"J\x00"
    )


# -- cost -------------------------------------------------------------------------------


def test_documents_are_plain_json_and_a_rebuild_converts_no_model_again():
    """Documents are rebuilt whenever a CRD changes, so the costly part, converting the
    client's models to schemas, must happen once per model: a rebuild of every document
    (and the root) only hits the cache.  How long a build takes is a benchmark's
    figure (``python -m clusters.benchmarks --only openapi``), never a test's."""
    docs = {gv: openapi_v3_document(*gv, res) for gv, res in BUILTIN.items()}
    docs[("security.istio.io", "v1")] = openapi_v3_document("security.istio.io", "v1", ISTIO)
    for doc in docs.values():
        assert json.loads(json.dumps(doc)) == doc  # plain JSON types only
    converted = openapi.model_component.cache_info()
    rebuilt = {gv: openapi_v3_document(*gv, BUILTIN.get(gv, ISTIO)) for gv in docs}
    hashes = {group_version_path(*gv): document_hash(doc) for gv, doc in rebuilt.items()}
    openapi_v3_root(hashes, hashes)
    again = openapi.model_component.cache_info()
    assert again.misses == converted.misses, (converted, again)
    assert again.hits > converted.hits
    assert rebuilt == docs


# -- the real kubectl against the real local API ----------------------------------------


def _requests(log: str, verb: str) -> list[str]:
    """kubectl's own record (``-v=7``) of its ``verb`` requests: URL and headers each."""
    return [chunk for chunk in log.split('"Request" ')[1:] if f'verb="{verb}"' in chunk]


@pytest.mark.kubectl
def test_real_kubectl_validates_server_side_and_patches_with_our_metadata(cluster, tmp_path):
    """kubectl reads our discovery and OpenAPI documents and acts on them: it asks the
    server to validate (fieldValidation on the PATCH operation), computes strategic
    merge patches from our merge keys for built-in kinds and merge patches for custom
    ones, explains fields from our schemas, and knows an unknown kind is unknown."""
    suffix = uuid.uuid4().hex[:8]
    ns, group = f"openapi-{suffix}", f"openapi-{suffix}.test.local"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"policies.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Policy", "plural": "policies", "singular": "policy",
                              "listKind": "PolicyList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": POLICY_SCHEMA}}]}}
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, crd])
    cluster.kubectl("wait", "--for=condition=Established", f"crd/policies.{group}")

    def run(*args: str, stdin: str = "", check: bool = True) -> Any:
        return cluster.kubectl("-n", ns, "-v=7", *args, input=stdin, check=check)

    def manifest(image: str, port: int, env: str) -> str:
        return json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [
                             {"name": "web", "image": image, "ports": [{"containerPort": port}],
                              "env": [{"name": env, "value": "1"}]},
                             {"name": "side", "image": "busybox"},
                         ]}}}})

    try:
        first = run("apply", "-f", "-", stdin=manifest("nginx:1", 80, "A"))
        second = run("apply", "-f", "-", stdin=manifest("nginx:2", 8080, "B"))
        policy = {"apiVersion": f"{group}/v1", "kind": "Policy",
                  "metadata": {"name": "p"}, "spec": {"action": "ALLOW"}}
        run("apply", "-f", "-", stdin=json.dumps(policy))
        policy["spec"]["action"] = "DENY"
        third = run("apply", "-f", "-", stdin=json.dumps(policy))
        explained = run("explain", "deployment.spec.template.spec.containers.ports").stdout
        items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]
        listed = run("apply", "-f", "-",
                     stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        gadget = {"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}}
        unknown = run("apply", "-f", "-", stdin=json.dumps(gadget), check=False)
        stored = json.loads(run("get", "deployment", "web", "-o", "json").stdout)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "crd", f"policies.{group}", check=False)

    for applied in (first, second, third):
        assert "Warning" not in applied.stderr, applied.stderr
    (create,) = _requests(first.stderr, "POST")
    (patch,) = _requests(second.stderr, "PATCH")
    (cr_patch,) = _requests(third.stderr, "PATCH")
    # kubectl found fieldValidation on the PATCH of our document: validation is ours.
    assert "fieldValidation=Strict" in create and "fieldValidation=Strict" in patch
    # ... and computed a strategic merge patch from our merge keys,
    assert "Content-Type: application/strategic-merge-patch+json" in patch
    assert "Content-Type: application/merge-patch+json" in cr_patch  # custom: no strategic
    # ... which removed the old port and variable by key and kept the sidecar.
    web, side = stored["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in web["ports"]] == [8080]
    assert [e["name"] for e in web["env"]] == ["B"] and side["name"] == "side"
    assert "KIND:       Deployment" in explained
    assert "containerPort\t<integer> -required-" in explained
    assert "configmap/c created" in listed.stdout
    assert unknown.returncode != 0
    assert 'no matches for kind "Gadget" in version "v1"' in unknown.stderr
