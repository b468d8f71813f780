"""Types of API objects: validation, pruning and patch metadata (``schema.py``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.local.apiserver import schema
from clusters.local.apiserver.patchmeta import PatchMeta
from clusters.local.apiserver.schema import (
    FIELD_VALUE_INVALID,
    FIELD_VALUE_NOT_SUPPORTED,
    FIELD_VALUE_REQUIRED,
    FIELD_VALUE_TYPE_INVALID,
    FieldIssue,
    is_unknown_field,
    kind_schema,
    model_schema,
    prune_crd,
    prune_unknown,
    validate,
    validate_crd_schema,
)


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": None},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}],
                            "resources": {"limits": {"cpu": 1, "memory": "128Mi"}},
                            "readinessProbe": {"httpGet": {"port": "http", "path": "/"}},
                        }
                    ],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


DEPLOYMENT = kind_schema("apps", "v1", "Deployment")


def by_field(issues: list[FieldIssue]) -> dict[str, FieldIssue]:
    return {i.field: i for i in issues}


# -- kinds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "version", "kind", "model"),
    [
        ("", "v1", "Pod", "V1Pod"),
        ("", "v1", "PodList", "V1PodList"),
        ("", "v1", "Event", "CoreV1Event"),
        ("events.k8s.io", "v1", "Event", "EventsV1Event"),
        ("apps", "v1", "Deployment", "V1Deployment"),
        ("discovery.k8s.io", "v1", "EndpointSlice", "V1EndpointSlice"),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "V1CustomResourceDefinition"),
        ("authentication.k8s.io", "v1", "TokenReview", "V1TokenReview"),
        ("authentication.k8s.io", "v1", "TokenRequest", "AuthenticationV1TokenRequest"),
        ("coordination.k8s.io", "v1", "Lease", "V1Lease"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole", "V1ClusterRole"),
        ("autoscaling", "v2", "HorizontalPodAutoscaler", "V2HorizontalPodAutoscaler"),
        ("resource.k8s.io", "v1", "ResourceClaim", "ResourceV1ResourceClaim"),
    ],
)
def test_kind_schema_maps_group_version_kind_to_the_client_model(group, version, kind, model):
    found = kind_schema(group, version, kind)
    assert found is not None
    assert found.name == model
    assert found is model_schema(model)  # cached: one instance per model


@pytest.mark.parametrize(
    ("group", "version", "kind"),
    [
        ("apps", "v1", "Pod"),  # V1Pod exists, but in the core group
        ("", "v1", "Deployment"),
        ("security.istio.io", "v1", "AuthorizationPolicy"),
        ("apps", "v9", "Deployment"),
    ],
)
def test_kind_schema_is_none_for_kinds_the_client_does_not_have(group, version, kind):
    assert kind_schema(group, version, kind) is None


def test_model_schema_exposes_fields_types_required_and_descriptions():
    spec = model_schema("V1DeploymentSpec")
    assert spec.field("replicas").type == schema.FieldType("integer")
    assert spec.field("template").type == schema.FieldType("model", model="V1PodTemplateSpec")
    assert "selector" in spec.required
    assert "Number of desired pods" in spec.field("replicas").description
    assert spec.description.startswith("DeploymentSpec is the specification")
    assert spec.version == "v1" and spec.type_name == "DeploymentSpec"
    containers = model_schema("V1PodSpec").field("containers").type
    assert containers.kind == "list" and containers.item.model == "V1Container"
    assert model_schema("V1ServicePort").field("targetPort").type.kind == "int-or-string"
    limits = model_schema("V1ResourceRequirements").field("limits").type
    assert limits == schema.FieldType("map", item=schema.FieldType("quantity"))
    with pytest.raises(KeyError):
        model_schema("V1NoSuchThing")


# -- validation of built-in kinds --------------------------------------------------------


def test_a_valid_deployment_has_no_issues():
    assert validate(deployment(), DEPLOYMENT, strict=True) == []


def test_string_replicas_is_a_type_error_on_spec_replicas():
    obj = deployment()
    obj["spec"]["replicas"] = "three"
    issues = validate(obj, DEPLOYMENT, strict=False)
    assert issues == [
        FieldIssue(
            "spec.replicas",
            FIELD_VALUE_TYPE_INVALID,
            'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
        )
    ]
    assert not is_unknown_field(issues[0])


def test_type_errors_deep_in_containers_carry_the_kubernetes_path():
    obj = deployment()
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "80"
    container["env"][0]["value"] = 1  # env values are strings, even in YAML
    container["resources"]["limits"]["memory"] = "lots"
    issues = by_field(validate(obj, DEPLOYMENT, strict=True))
    base = "spec.template.spec.containers[0]"
    assert issues[f"{base}.ports[0].containerPort"].reason == FIELD_VALUE_TYPE_INVALID
    assert "must be of type integer" in issues[f"{base}.ports[0].containerPort"].message
    assert issues[f"{base}.env[0].value"].reason == FIELD_VALUE_TYPE_INVALID
    assert issues[f"{base}.resources.limits[memory]"].reason == FIELD_VALUE_INVALID
    assert "quantities must match" in issues[f"{base}.resources.limits[memory]"].message
    assert len(issues) == 3


def test_a_list_where_an_object_belongs_is_a_type_error():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"] = {"name": "web"}
    issues = validate(obj, DEPLOYMENT, strict=True)
    assert [(i.field, i.reason) for i in issues] == [
        ("spec.template.spec.containers", FIELD_VALUE_TYPE_INVALID)
    ]
    assert "must be of type array" in issues[0].message


def test_unknown_fields_are_issues_only_in_strict_mode():
    obj = deployment()
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    issues = validate(obj, DEPLOYMENT, strict=True)
    assert sorted((i.field, i.reason, i.message) for i in issues) == [
        ("spec.foo", FIELD_VALUE_INVALID, 'unknown field "spec.foo"'),
        (
            "spec.template.spec.containers[0].imagePullPolicyy",
            FIELD_VALUE_INVALID,
            'unknown field "spec.template.spec.containers[0].imagePullPolicyy"',
        ),
    ]
    assert all(is_unknown_field(i) for i in issues)
    assert validate(obj, DEPLOYMENT, strict=False) == []


def test_null_means_unset_and_free_form_fields_accept_anything():
    obj = deployment()
    obj["spec"]["replicas"] = None
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = None
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r"},
        "revision": 1,
        "data": {"anything": [1, {"goes": True}]},
    }
    assert validate(obj, DEPLOYMENT, strict=True) == []
    assert validate(revision, kind_schema("apps", "v1", "ControllerRevision"), strict=True) == []


def test_quantities_accept_numbers_and_int_or_string_accepts_both():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}},
                    "livenessProbe": {"tcpSocket": {"port": 8080}},
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
            "overhead": {"cpu": "100m"},
        },
    }
    assert validate(pod, kind_schema("", "v1", "Pod"), strict=True) == []
    pod["spec"]["containers"][0]["livenessProbe"]["tcpSocket"]["port"] = True
    issues = validate(pod, kind_schema("", "v1", "Pod"), strict=True)
    assert [i.field for i in issues] == ["spec.containers[0].livenessProbe.tcpSocket.port"]


def test_secret_data_must_be_base64():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    secret["data"] = {"ok": "aGVsbG8=", "bad": "not base64!"}
    issues = validate(secret, kind_schema("", "v1", "Secret"), strict=True)
    assert [(i.field, i.reason) for i in issues] == [("data[bad]", FIELD_VALUE_INVALID)]


def test_the_small_set_of_required_fields_is_enforced():
    obj = deployment()
    del obj["spec"]["selector"]
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"targetPort": 80}]},
    }
    issues = validate(obj, DEPLOYMENT, strict=True)
    assert {(i.field, i.reason, i.message) for i in issues} == {
        ("spec.selector", FIELD_VALUE_REQUIRED, "Required value"),
        ("spec.template.spec.containers[0].name", FIELD_VALUE_REQUIRED, "Required value"),
    }
    issues = validate(service, kind_schema("", "v1", "Service"), strict=True)
    assert [(i.field, i.reason) for i in issues] == [("spec.ports[0].port", FIELD_VALUE_REQUIRED)]


def test_a_non_object_body_is_a_type_error():
    assert [i.reason for i in validate([], DEPLOYMENT, strict=True)] == [FIELD_VALUE_TYPE_INVALID]  # type: ignore[arg-type]


# -- pruning of built-in kinds ---------------------------------------------------------


def test_prune_unknown_drops_unknown_fields_reports_paths_and_copies():
    obj = deployment()
    obj["spec"]["foo"] = {"bar": 1}
    obj["spec"]["template"]["spec"]["containers"][0]["bogus"] = 1
    obj["metadata"]["labels"]["keep"] = "me"
    before = copy.deepcopy(obj)
    pruned, unknown = prune_unknown(obj, DEPLOYMENT)
    assert sorted(unknown) == ["spec.foo", "spec.template.spec.containers[0].bogus"]
    assert "foo" not in pruned["spec"]
    assert "bogus" not in pruned["spec"]["template"]["spec"]["containers"][0]
    expected = copy.deepcopy(before)
    del expected["spec"]["foo"]
    del expected["spec"]["template"]["spec"]["containers"][0]["bogus"]
    assert pruned == expected
    assert obj == before  # the input is untouched
    pruned["spec"]["selector"]["matchLabels"]["x"] = "y"
    assert "x" not in obj["spec"]["selector"]["matchLabels"]


def test_prune_unknown_of_a_clean_object_is_an_equal_copy():
    pruned, unknown = prune_unknown(deployment(), DEPLOYMENT)
    assert unknown == []
    assert pruned == deployment()


# -- patch metadata ----------------------------------------------------------------------


def test_patch_meta_of_pod_spec_lists():
    pod_spec = model_schema("V1PodSpec")
    containers = pod_spec.meta("containers")
    assert containers.strategies == frozenset({"merge"})
    assert containers.merge_key == "name"
    assert containers.child is model_schema("V1Container")
    volumes = pod_spec.meta("volumes")
    assert volumes.strategies == frozenset({"merge", "retainKeys"})
    assert volumes.merge_key == "name"
    assert pod_spec.meta("tolerations") == PatchMeta(child=model_schema("V1Toleration"))
    assert pod_spec.meta("nodeSelector") == PatchMeta()  # map of strings: defaults
    assert pod_spec.meta("noSuchField") == PatchMeta()


def test_patch_meta_of_container_ports_and_env():
    container = model_schema("V1Container")
    assert (container.meta("ports").merge_key, container.meta("env").merge_key) == (
        "containerPort",
        "name",
    )
    assert container.meta("volumeMounts").merge_key == "mountPath"
    assert container.meta("ports").child is model_schema("V1ContainerPort")
    assert container.meta("args") == PatchMeta()  # atomic list of strings


def test_patch_meta_other_tags():
    assert model_schema("V1ServiceSpec").meta("ports").merge_key == "port"
    finalizers = model_schema("V1ObjectMeta").meta("finalizers")
    assert finalizers == PatchMeta(strategies=frozenset({"merge"}))
    assert model_schema("V1ObjectMeta").meta("ownerReferences").merge_key == "uid"
    strategy = model_schema("V1DeploymentSpec").meta("strategy")
    assert strategy.strategies == frozenset({"retainKeys"})
    assert strategy.child is model_schema("V1DeploymentStrategy")
    conditions = model_schema("V1DeploymentStatus").meta("conditions")
    assert (conditions.strategies, conditions.merge_key) == (frozenset({"merge"}), "type")
    assert model_schema("V1NodeStatus").meta("addresses").merge_key == "type"
    assert model_schema("V1EndpointSubset").meta("addresses").merge_key is None


def test_patch_meta_walks_down_a_whole_object():
    meta = DEPLOYMENT.meta("spec").child.meta("template").child.meta("spec")
    assert meta.child.meta("containers").merge_key == "name"


def test_patch_meta_of_a_map_of_objects_describes_every_value():
    properties = model_schema("V1JSONSchemaProps").meta("properties")
    assert properties.child.meta("anyKey").child is model_schema("V1JSONSchemaProps")


# -- CustomResourceDefinition schemas ---------------------------------------------------

POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["action"],
            "properties": {
                "action": {"type": "string", "enum": ["ALLOW", "DENY"]},
                "port": {"x-kubernetes-int-or-string": True},
                "weight": {"type": "integer", "minimum": 0, "maximum": 100},
                "note": {"type": "string", "nullable": True},
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "rules": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
                "template": {"type": "object", "x-kubernetes-embedded-resource": True},
                "match": {
                    "type": "object",
                    "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
                    "oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}],
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "default", "labels": {"a": "b"}},
        "spec": {"action": "ALLOW", **spec},
    }


def test_a_valid_custom_resource_has_no_issues():
    obj = policy(
        port="http",
        weight=100,
        note=None,
        selector={"matchLabels": {"app": "web"}},
        rules=[{"from": [{"source": {"principals": ["*"]}}]}],
        template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}},
        match={"exact": "/"},
    )
    obj["status"] = {"anything": {"at": ["all"]}}
    assert validate_crd_schema(obj, POLICY_SCHEMA, strict=True) == []


def test_custom_resource_type_enum_required_and_bounds():
    obj = policy(weight="heavy", selector={"matchLabels": {"app": 1}}, port=1.5)
    obj["spec"]["action"] = "MAYBE"
    issues = by_field(validate_crd_schema(obj, POLICY_SCHEMA, strict=False))
    assert issues["spec.weight"] == FieldIssue(
        "spec.weight",
        FIELD_VALUE_TYPE_INVALID,
        'Invalid value: "string": spec.weight in body must be of type integer: "string"',
    )
    assert issues["spec.selector.matchLabels.app"].reason == FIELD_VALUE_TYPE_INVALID
    assert issues["spec.port"].reason == FIELD_VALUE_TYPE_INVALID
    assert issues["spec.action"] == FieldIssue(
        "spec.action",
        FIELD_VALUE_NOT_SUPPORTED,
        'Unsupported value: "MAYBE": supported values: "ALLOW", "DENY"',
    )
    assert len(issues) == 4

    missing = policy(weight=101)
    del missing["spec"]["action"]
    issues = by_field(validate_crd_schema(missing, POLICY_SCHEMA, strict=False))
    assert issues["spec.action"] == FieldIssue(
        "spec.action", FIELD_VALUE_REQUIRED, "Required value"
    )
    assert issues["spec.weight"].message == (
        "Invalid value: 101: spec.weight in body should be less than or equal to 100"
    )


def test_custom_resource_one_of():
    issues = validate_crd_schema(policy(match={}), POLICY_SCHEMA, strict=False)
    assert [(i.field, i.reason) for i in issues] == [("spec.match", FIELD_VALUE_INVALID)]
    assert "oneOf" in issues[0].message
    both = policy(match={"exact": "/", "prefix": "/"})
    assert len(validate_crd_schema(both, POLICY_SCHEMA, strict=False)) == 1


def test_custom_resource_unknown_fields_respect_preserve_unknown_fields():
    obj = policy(extra=1, rules=[{"unknown": "kept"}])
    obj["spec"]["selector"] = {"matchLabels": {}, "matchExpressions": []}
    obj["metadata"]["bogus"] = True
    obj["status"] = {"free": "form"}
    issues = validate_crd_schema(obj, POLICY_SCHEMA, strict=True)
    assert sorted(i.field for i in issues) == [
        "metadata.bogus",
        "spec.extra",
        "spec.selector.matchExpressions",
    ]
    assert all(is_unknown_field(i) for i in issues)
    assert validate_crd_schema(obj, POLICY_SCHEMA, strict=False) == []


def test_custom_resource_metadata_is_checked_as_object_meta():
    obj = policy()
    obj["metadata"]["labels"] = {"n": 1}
    issues = validate_crd_schema(obj, POLICY_SCHEMA, strict=False)
    assert [(i.field, i.reason) for i in issues] == [
        ("metadata.labels[n]", FIELD_VALUE_TYPE_INVALID)
    ]


def test_prune_crd_drops_unknown_and_keeps_preserved_fields():
    obj = policy(extra=1, rules=[{"unknown": "kept"}], note=None, weight=None)
    obj["spec"]["template"] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "z": 1}
    obj["metadata"]["bogus"] = True
    obj["status"] = {"free": {"form": 1}}
    before = copy.deepcopy(obj)
    pruned, unknown = prune_crd(obj, POLICY_SCHEMA)
    assert sorted(unknown) == ["metadata.bogus", "spec.extra", "spec.template.z"]
    assert pruned["spec"]["rules"] == [{"unknown": "kept"}]
    assert pruned["status"] == {"free": {"form": 1}}
    assert pruned["spec"]["template"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
    }
    assert "note" in pruned["spec"]  # nullable: the null is kept
    assert "weight" not in pruned["spec"]  # not nullable: the apiserver drops the null
    assert pruned["apiVersion"] == obj["apiVersion"] and "bogus" not in pruned["metadata"]
    assert obj == before


def test_a_missing_crd_schema_accepts_anything():
    obj = policy(anything={"goes": [1]})
    assert validate_crd_schema(obj, None, strict=True) == []
    assert prune_crd(obj, None) == (obj, [])


def test_patch_tags_come_from_the_client_release_openapi_definitions():
    """The strategic-merge keys are the release's own (nothing hand-copied): the ones
    kubectl uses for pods, and ones a hand-kept table had missed."""
    from clusters.local.apiserver.schema import patch_tags_table

    table = patch_tags_table()
    assert table["V1PodSpec", "containers"] == (frozenset({"merge"}), "name")
    assert table["V1PodSpec", "volumes"] == (frozenset({"merge", "retainKeys"}), "name")
    assert table["V1DeploymentSpec", "strategy"] == (frozenset({"retainKeys"}), None)
    assert table["V1ObjectMeta", "ownerReferences"] == (frozenset({"merge"}), "uid")
    assert ("V1JSONSchemaProps", "x-kubernetes-validations") in table


DEFAULTED = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {
        "mode": {"type": "string", "default": "Strict"},
        "kept": {"type": "string", "nullable": True, "default": "x"},
        "refs": {"type": "array", "items": {"type": "object", "properties": {
            "kind": {"type": "string", "default": "Service"},
            "weight": {"type": "integer", "default": 1}}}},
        "match": {"type": "object", "default": {},
                  "properties": {"type": {"type": "string", "default": "PathPrefix"}}},
        "byName": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"on": {"type": "boolean", "default": True}}}},
    }}},
}


def test_crd_defaults_fill_missing_and_non_nullable_null_fields_at_every_depth():
    obj = {"spec": {"mode": None, "kept": None, "refs": [{"weight": 5}, {}],
                    "byName": {"a": {}, "b": {"on": False}}}}
    schema.default_crd(obj, DEFAULTED)
    assert obj == {"spec": {
        "mode": "Strict",  # null and not nullable: defaulted
        "kept": None,      # nullable: a null is a value
        "refs": [{"kind": "Service", "weight": 5}, {"kind": "Service", "weight": 1}],
        "match": {"type": "PathPrefix"},  # a defaulted object is defaulted in turn
        "byName": {"a": {"on": True}, "b": {"on": False}}}}
    # the default is copied, never shared between objects
    other: dict[str, Any] = {"spec": {}}
    schema.default_crd(other, DEFAULTED)
    other["spec"]["match"]["type"] = "Exact"
    assert DEFAULTED["properties"]["spec"]["properties"]["match"]["default"] == {}


REQUIRED = {"type": "object", "properties": {"spec": {
    "type": "object", "required": ["listeners"],
    "properties": {"listeners": {"type": "array", "items": {"type": "string"}},
                   "name": {"type": "string", "maxLength": 3}}}}}


def test_ratcheting_drops_errors_at_values_an_update_leaves_unchanged():
    old = {"spec": {"name": "long"}}
    new = {"spec": {"name": "long"}, "status": {"ok": True}}
    issues = schema.validate_crd_schema(new, REQUIRED, strict=False)
    assert {i.field for i in issues} == {"spec.listeners", "spec.name"}
    assert schema.ratchet(issues, new, old) == []
    changed = {"spec": {"name": "longer"}}
    issues = schema.validate_crd_schema(changed, REQUIRED, strict=False)
    assert [i.field for i in schema.ratchet(issues, changed, old)] == ["spec.name"]
    # created without the old object, nothing is ratcheted
    assert len(schema.validate_crd_schema(new, REQUIRED, strict=False)) == 2


@pytest.mark.parametrize("path, found", [
    ("spec.rules[1].name", "b"), ("spec.rules[2].name", None), ("spec.other", None),
    ("spec.rules[0]", {"name": "a"}),
])
def test_value_at_reads_issue_paths(path, found):
    obj = {"spec": {"rules": [{"name": "a"}, {"name": "b"}]}}
    value = schema.value_at(obj, path)
    assert value == found if found is not None else value is schema._MISSING
