"""Tests of the three PATCH content types (``clusters/local/apiserver/patch.py``).

Strategic merge patch expectations follow apimachinery's own test cases where
they exist (``pkg/util/strategicpatch/patch_test.go``), so list order here is
what a real API server produces, not what looks natural.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.local.apiserver.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from clusters.local.apiserver.patchmeta import FreeForm, PatchMeta

MERGE = frozenset({"merge"})


class FakeSchema:
    """A hand-written PatchSchema: only the fields a test needs."""

    def __init__(self, fields: dict[str, PatchMeta] | None = None) -> None:
        self.fields = fields or {}

    def meta(self, field: str) -> PatchMeta:
        return self.fields.get(field, PatchMeta())


CONTAINER = FakeSchema(
    {
        "ports": PatchMeta(MERGE, "containerPort", FakeSchema()),
        "env": PatchMeta(MERGE, "name", FakeSchema()),
    }
)
POD_SPEC = FakeSchema(
    {
        "containers": PatchMeta(MERGE, "name", CONTAINER),
        "volumes": PatchMeta(frozenset({"merge", "retainKeys"}), "name", FakeSchema()),
        # Not a real PodSpec field: stands for any field tagged patchStrategy=replace.
        "replacedMap": PatchMeta(frozenset({"replace"})),
    }
)
OBJECT_META = FakeSchema({"finalizers": PatchMeta(MERGE)})
POD = FakeSchema({"metadata": PatchMeta(child=OBJECT_META), "spec": PatchMeta(child=POD_SPEC)})
DEPLOYMENT_SPEC = FakeSchema(
    {
        "strategy": PatchMeta(frozenset({"retainKeys"})),
        "template": PatchMeta(child=POD),
    }
)
DEPLOYMENT = FakeSchema(
    {"metadata": PatchMeta(child=OBJECT_META), "spec": PatchMeta(child=DEPLOYMENT_SPEC)}
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
        "spec": spec,
    }


def smp(doc: dict[str, Any], patch: dict[str, Any], schema: Any = POD) -> dict[str, Any]:
    """Apply and check the inputs were left alone, which every caller relies on."""
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    result = apply_strategic_merge_patch(doc, patch, schema)
    assert doc == doc_before
    assert patch == patch_before
    return result


def names(items: list[dict[str, Any]]) -> list[Any]:
    return [item["name"] for item in items]


def directive_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [k for k in value if k.startswith("$")]
        for v in value.values():
            found += directive_keys(v)
        return found
    if isinstance(value, list):
        return [k for item in value for k in directive_keys(item)]
    return []


# --------------------------------------------------------------------------------------
# JSON patch (RFC 6902)
# --------------------------------------------------------------------------------------


def test_json_patch_add_replace_remove() -> None:
    doc = pod(containers=[{"name": "app", "image": "app:1"}])
    ops = [
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"},
        {"op": "remove", "path": "/metadata/labels/app"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "log"}},
    ]
    before, ops_before = copy.deepcopy(doc), copy.deepcopy(ops)
    result = apply_json_patch(doc, ops)
    assert result["metadata"]["labels"] == {"tier": "front"}
    assert result["spec"]["containers"] == [{"name": "app", "image": "app:2"}, {"name": "log"}]
    assert doc == before
    result["spec"]["containers"][1]["image"] = "x"  # the result shares nothing with ops
    assert ops == ops_before


def test_json_patch_failed_test_names_index_and_path() -> None:
    ops = [
        {"op": "test", "path": "/metadata/name", "value": "p"},
        {"op": "test", "path": "/metadata/name", "value": "other"},
    ]
    with pytest.raises(PatchError, match=r"operation 1 .*/metadata/name.*test failed"):
        apply_json_patch(pod(), ops)


def test_json_patch_missing_path_names_index_and_path() -> None:
    with pytest.raises(PatchError, match=r"operation 0 .*'remove'.*/metadata/annotations/x"):
        apply_json_patch(pod(), [{"op": "remove", "path": "/metadata/annotations/x"}])
    with pytest.raises(PatchError, match=r"operation 0 .*/spec/nope"):
        apply_json_patch(pod(), [{"op": "replace", "path": "/spec/nope", "value": 1}])


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a"}],
        [{"op": "add", "path": "/a"}],
        [{"op": "add", "path": "no-slash", "value": 1}],
        ["not an object"],
        {"op": "add", "path": "/a", "value": 1},
    ],
)
def test_json_patch_malformed(ops: Any) -> None:
    with pytest.raises(PatchError):
        apply_json_patch(pod(), ops)


def test_json_patch_result_must_be_an_object() -> None:
    with pytest.raises(PatchError, match="must be an object"):
        apply_json_patch(pod(), [{"op": "replace", "path": "", "value": [1]}])


# --------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [  # From RFC 7386, appendix A, restricted to object documents and patches.
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc_examples(doc: Any, patch: Any, expected: Any) -> None:
    before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == before
    assert patch == patch_before


def test_merge_patch_replaces_lists_and_deletes_labels() -> None:
    doc = pod(containers=[{"name": "app"}, {"name": "log"}])
    result = apply_merge_patch(
        doc, {"metadata": {"labels": {"app": None, "a": "b"}}, "spec": {"containers": []}}
    )
    assert result["metadata"]["labels"] == {"a": "b"}
    assert result["spec"]["containers"] == []


def test_merge_patch_must_be_an_object() -> None:
    with pytest.raises(PatchError):
        apply_merge_patch(pod(), [{"op": "add"}])  # a JSON patch sent with the wrong type


# --------------------------------------------------------------------------------------
# Strategic merge patch: maps
# --------------------------------------------------------------------------------------


def test_label_added_like_kubectl_label() -> None:
    result = smp(pod(), {"metadata": {"labels": {"a": "b"}}})
    assert result["metadata"]["labels"] == {"app": "web", "a": "b"}
    assert result["metadata"]["name"] == "p"


def test_label_removed_with_null() -> None:
    doc = smp(pod(), {"metadata": {"labels": {"a": "b"}}})
    result = smp(doc, {"metadata": {"labels": {"a": None}}})
    assert result["metadata"]["labels"] == {"app": "web"}


def test_annotation_added_to_object_without_annotations() -> None:
    result = smp(pod(), {"metadata": {"annotations": {"note": "x", "gone": None}}})
    assert result["metadata"]["annotations"] == {"note": "x"}


def test_null_for_absent_key_is_ignored() -> None:
    result = smp(pod(), {"spec": {"nodeName": None}})
    assert "nodeName" not in result["spec"]


def test_maps_merge_recursively_and_scalars_replace() -> None:
    doc = pod(securityContext={"runAsUser": 1, "fsGroup": 2}, restartPolicy="Always")
    result = smp(doc, {"spec": {"securityContext": {"runAsUser": 3}, "restartPolicy": "Never"}})
    assert result["spec"] == {
        "securityContext": {"runAsUser": 3, "fsGroup": 2},
        "restartPolicy": "Never",
    }


def test_value_of_another_kind_replaces() -> None:
    result = smp(pod(thing="text"), {"spec": {"thing": {"a": 1}}})
    assert result["spec"]["thing"] == {"a": 1}
    result = smp(pod(thing={"a": 1}), {"spec": {"thing": [1]}})
    assert result["spec"]["thing"] == [1]


def test_map_with_replace_strategy_is_replaced() -> None:
    result = smp(pod(replacedMap={"a": 1, "b": 2}), {"spec": {"replacedMap": {"c": 3}}})
    assert result["spec"]["replacedMap"] == {"c": 3}


def test_patch_replace_directive_on_map() -> None:
    result = smp(pod(), {"metadata": {"labels": {"$patch": "replace", "only": "1"}}})
    assert result["metadata"]["labels"] == {"only": "1"}


def test_patch_delete_directive_on_map() -> None:
    doc = pod(securityContext={"runAsUser": 1})
    # apimachinery leaves an empty map behind ("delete map from nested map").
    result = smp(doc, {"spec": {"securityContext": {"$patch": "delete"}}})
    assert result["spec"]["securityContext"] == {}
    # A map that did not exist is not created.
    result = smp(pod(), {"spec": {"securityContext": {"$patch": "delete"}}})
    assert "securityContext" not in result["spec"]


def test_retain_keys_drops_unlisted_keys() -> None:
    doc = {
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        }
    }
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    result = smp(doc, patch, DEPLOYMENT)
    assert result["spec"] == {"replicas": 2, "strategy": {"type": "Recreate"}}


def test_retain_keys_rejects_patch_keys_it_does_not_list() -> None:
    doc = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}
    with pytest.raises(PatchError, match=r"rollingUpdate.*spec\.strategy.*\$retainKeys"):
        apply_strategic_merge_patch(doc, patch, DEPLOYMENT)


def test_retain_keys_on_merged_list_items() -> None:
    doc = pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}])
    patch = {
        "spec": {
            "volumes": [
                {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}}
            ]
        }
    }
    result = smp(doc, patch)
    assert result["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "c"}},
        {"name": "tmp", "emptyDir": {}},
    ]


# --------------------------------------------------------------------------------------
# Strategic merge patch: lists
# --------------------------------------------------------------------------------------


def two_containers() -> dict[str, Any]:
    return pod(
        containers=[
            {
                "name": "app",
                "image": "app:1",
                "args": ["--a", "--b"],
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "A", "value": "1"}],
            },
            {"name": "sidecar", "image": "proxy:1"},
        ]
    )


def test_list_without_merge_strategy_is_replaced() -> None:
    patch = {"spec": {"containers": [{"name": "app", "args": ["--c"]}]}}
    result = smp(two_containers(), patch)
    assert result["spec"]["containers"][0]["args"] == ["--c"]


def test_containers_merge_by_name() -> None:
    result = smp(two_containers(), {"spec": {"containers": [{"name": "app", "image": "app:2"}]}})
    app, sidecar = result["spec"]["containers"]
    assert app["image"] == "app:2"
    assert app["ports"] == [{"containerPort": 80, "name": "http"}]
    assert sidecar == {"name": "sidecar", "image": "proxy:1"}


def test_nested_merge_lists_use_their_own_keys() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "2"}],
                }
            ]
        }
    }
    app = smp(two_containers(), patch)["spec"]["containers"][0]
    assert app["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert app["env"] == [{"name": "A", "value": "2"}]


def test_new_item_without_set_element_order_goes_first() -> None:
    # apimachinery slots server-only items back in only before patch items that
    # followed them in the live list; a brand-new item follows nothing, so it
    # leads.  (kubectl's docs show the same for `kubectl patch` adding a container.)
    patch = {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}
    result = smp(two_containers(), patch)
    assert names(result["spec"]["containers"]) == ["debug", "app", "sidecar"]


def test_patch_order_wins_over_live_order() -> None:
    # apimachinery: "preserve the order from the patch in a merging list 2".
    doc = pod(containers=[{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}])
    patch = {"spec": {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}}
    result = smp(doc, patch)
    assert result["spec"]["containers"] == [
        {"name": "2", "value": "b"},
        {"name": "3", "value": "c"},
        {"name": "1", "value": "a"},
    ]


def test_delete_directive_removes_matching_item() -> None:
    patch = {
        "spec": {
            "containers": [
                {"name": "sidecar", "$patch": "delete"},
                {"name": "never-existed", "$patch": "delete"},
            ]
        }
    }
    result = smp(two_containers(), patch)
    assert names(result["spec"]["containers"]) == ["app"]


def test_replace_directive_in_list_replaces_whole_list() -> None:
    patch = {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}
    result = smp(two_containers(), patch)
    assert result["spec"]["containers"] == [{"name": "only", "image": "x"}]
    result = smp(two_containers(), {"spec": {"containers": [{"$patch": "replace"}]}})
    assert result["spec"]["containers"] == []


def test_primitive_merge_list_is_a_union() -> None:
    doc = pod()
    doc["metadata"]["finalizers"] = ["a", "b"]
    result = smp(doc, {"metadata": {"finalizers": ["b", "c"]}})
    assert result["metadata"]["finalizers"] == ["a", "b", "c"]


def test_primitive_merge_list_new_value_goes_first() -> None:
    doc = pod()
    doc["metadata"]["finalizers"] = ["a"]
    result = smp(doc, {"metadata": {"finalizers": ["b"]}})
    assert result["metadata"]["finalizers"] == ["b", "a"]


def test_delete_from_primitive_list() -> None:
    doc = pod()
    doc["metadata"]["finalizers"] = ["a", "b", "c", "b"]
    result = smp(doc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}})
    assert result["metadata"]["finalizers"] == ["a", "c"]
    # Deleting from a list that is not there does not create it.
    result = smp(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}})
    assert "finalizers" not in result["metadata"]


def test_set_element_order_and_deletion_on_primitive_list() -> None:
    # apimachinery: "delete items in lists of scalars", three-way result.
    doc = {"metadata": {"finalizers": [1, 2, 3, 4]}}
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": [1, 2],
            "$deleteFromPrimitiveList/finalizers": [3],
        }
    }
    assert smp(doc, patch)["metadata"]["finalizers"] == [1, 2, 4]
    patch = {"metadata": {"$setElementOrder/finalizers": [2, 1]}}
    assert smp({"metadata": {"finalizers": [1, 2]}}, patch)["metadata"]["finalizers"] == [2, 1]


def test_kubectl_apply_three_way_patch() -> None:
    # What `kubectl apply` sends after the user changed the image, added a `log`
    # container after `app`, reordered env and switched the rollout strategy; the
    # live object also has an injected `istio-proxy` the user never wrote.
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "istio-proxy", "image": "proxyv2"},
                    ]
                },
            },
        },
    }
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}\n"}
        },
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "log"}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:2",
                            "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                            "env": [{"name": "B", "value": "2"}],
                        },
                        {"name": "log", "image": "busybox"},
                    ],
                }
            },
        },
    }
    result = smp(live, patch, DEPLOYMENT)
    assert result["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "1",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}\n",
    }
    assert result["spec"]["replicas"] == 3
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    containers = result["spec"]["template"]["spec"]["containers"]
    assert names(containers) == ["app", "log", "istio-proxy"]
    assert containers[0] == {
        "name": "app",
        "image": "app:2",
        "ports": [{"containerPort": 8080}],
        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
    }
    assert directive_keys(result) == []


def test_set_element_order_keeps_server_only_items_in_place() -> None:
    # `x` is only on the server, between `a` and `b`; the patch inserts `c`
    # between them.  Patch items take the directive's order and `x` stays before
    # `b`, which it preceded in the live list.
    doc = pod(containers=[{"name": "a"}, {"name": "x"}, {"name": "b"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}, {"name": "b"}],
            "containers": [{"name": "c"}],
        }
    }
    assert names(smp(doc, patch)["spec"]["containers"]) == ["a", "c", "x", "b"]


def test_set_element_order_ignores_items_that_do_not_exist() -> None:
    # apimachinery: "$setElementOrder contains item that is not present".
    doc = pod(containers=[{"name": "1"}, {"name": "3"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
            "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}],
        }
    }
    assert smp(doc, patch)["spec"]["containers"] == [
        {"name": "3", "value": "3"},
        {"name": "1", "value": "1"},
    ]


def test_set_element_order_for_a_list_the_server_lacks() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a"}, {"name": "b"}, {"name": "z", "$patch": "delete"}],
        }
    }
    with pytest.raises(PatchError, match="does not match"):
        apply_strategic_merge_patch(pod(), patch, POD)
    patch["spec"]["containers"] = [{"name": "b"}, {"name": "a"}, {"name": "z", "$patch": "delete"}]
    assert smp(pod(), patch)["spec"]["containers"] == [{"name": "b"}, {"name": "a"}]


def test_set_element_order_must_agree_with_the_patch_list() -> None:
    # apimachinery: "should check if order in $setElementOrder and patch list match".
    doc = pod(containers=[{"name": "1"}, {"name": "3"}, {"name": "2"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}],
        }
    }
    with pytest.raises(PatchError, match=r"spec\.containers.*does not match"):
        apply_strategic_merge_patch(doc, patch, POD)


def test_directives_never_remain_in_new_values() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "new",
                    "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "1"}],
                    "resources": {"$patch": "replace", "limits": {"cpu": "1"}, "gone": None},
                    "securityContext": {"$patch": "delete"},
                    "$setElementOrder/env": [{"name": "Y"}],
                }
            ],
            "newMap": {"$retainKeys": ["a"], "a": 1},
        }
    }
    result = smp(two_containers(), patch)
    assert directive_keys(result) == []
    new = result["spec"]["containers"][0]
    assert new == {
        "name": "new",
        "env": [{"name": "Y", "value": "1"}],
        "resources": {"limits": {"cpu": "1"}},
    }
    assert result["spec"]["newMap"] == {"a": 1}


def test_free_form_schema_merges_maps_and_replaces_lists() -> None:
    doc = {"a": {"b": 1, "l": [1, 2]}, "k": "v"}
    result = apply_strategic_merge_patch(doc, {"a": {"c": 2, "l": [3]}}, FreeForm())
    assert result == {"a": {"b": 1, "c": 2, "l": [3]}, "k": "v"}


# --------------------------------------------------------------------------------------
# Strategic merge patch: errors
# --------------------------------------------------------------------------------------


def test_unknown_directive_key_is_rejected() -> None:
    with pytest.raises(PatchError, match=r"\$foo.*metadata"):
        apply_strategic_merge_patch(pod(), {"metadata": {"$foo": 1}}, POD)


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"$patch": "explode"}},
        {"spec": {"newMap": {"$patch": "explode"}}},
        {"spec": {"containers": [{"name": "app", "$patch": "explode"}]}},
        {"spec": {"containers": [{"name": "app", "$patch": "merge"}]}},
    ],
)
def test_unknown_patch_directive_value_is_rejected(patch: dict[str, Any]) -> None:
    with pytest.raises(PatchError, match=r"\$patch"):
        apply_strategic_merge_patch(two_containers(), patch, POD)


def test_errors_name_the_path_in_the_document() -> None:
    live = {"spec": {"template": {"spec": {"containers": [{"name": "app", "ports": []}]}}}}
    missing_key = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "ports": [{"x": 1}]}]}}}
    }
    with pytest.raises(
        PatchError, match=r"spec\.template\.spec\.containers\[name=app\]\.ports.*containerPort"
    ):
        apply_strategic_merge_patch(live, missing_key, DEPLOYMENT)
    bad_directive = {"spec": {"template": {"spec": {"containers": [{"name": "app", "$x": 1}]}}}}
    with pytest.raises(PatchError, match=r"spec\.template\.spec\.containers\[name=app\]"):
        apply_strategic_merge_patch(live, bad_directive, DEPLOYMENT)


def test_merge_list_item_without_merge_key_is_rejected() -> None:
    with pytest.raises(PatchError, match=r"spec\.containers.*merge key 'name'"):
        apply_strategic_merge_patch(
            two_containers(), {"spec": {"containers": [{"image": "x"}]}}, POD
        )


def test_merge_list_with_mixed_items_is_rejected() -> None:
    doc = pod()
    doc["metadata"]["finalizers"] = ["a"]
    with pytest.raises(PatchError, match="different kinds"):
        apply_strategic_merge_patch(doc, {"metadata": {"finalizers": [1]}}, POD)


def test_strategic_patch_must_be_an_object() -> None:
    with pytest.raises(PatchError):
        apply_strategic_merge_patch(pod(), [], POD)  # type: ignore[arg-type]
