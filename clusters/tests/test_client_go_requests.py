"""The requests real components (istiod, istio-cni: client-go v0.36.1) send, byte for
byte where it matters, and the answers a real API server gives them.

Request shapes come from the client-go sources: ``tools/cache/reflector.go``
(``watchList``: the first request of every informer; ``watch``: the resume),
``metadata/metadata.go`` (the metadata client's Accept headers), and istio/istio
``pkg/kube/util.go`` (``SetRestDefaults``: protobuf first, JSON bodies).
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from .rawkube import RawKube, events_of
from .waiting import until

pytestmark = pytest.mark.slow

METADATA_LIST = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;"
                 "g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;"
                 "g=meta.k8s.io;v=v1,application/json")
METADATA_WATCH = METADATA_LIST.replace("PartialObjectMetadataList", "PartialObjectMetadata")
# reflector.go watchList: the options of an informer's first request
WATCH_LIST = "allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true"
END = "k8s.io/initial-events-end"


@pytest.fixture(scope="module")
def kube(cluster) -> RawKube:
    return RawKube(str(cluster.kubeconfig))


@pytest.fixture(scope="module")
def widgets(kube):
    """A CRD of its own (unique group), with a status subresource and two versions."""
    group = f"w{uuid.uuid4().hex[:6]}.example.com"
    schema = {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets"},
                    "versions": [
                        {"name": "v1", "served": True, "storage": True, "schema": schema,
                         "subresources": {"status": {}}},
                        {"name": "v1beta1", "served": True, "storage": False,
                         "schema": schema}]}}
    r = kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert r.status == 201, r.body
    yield group
    kube.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                 f"widgets.{group}")


def _cm(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def _rv(kube: RawKube, path: str) -> int:
    r = kube.request("GET", path, accept="application/json")
    return int(r.json()["metadata"]["resourceVersion"])


# -- content negotiation ----------------------------------------------------------------


def test_protobuf_first_clients_get_json_for_every_verb(kube, namespace, widgets):
    """istiod asks for protobuf first; the answer is JSON, labelled as JSON, on every verb
    and for custom resources too (a real server answers CRs in JSON as well)."""
    for base, body in (
        (f"/api/v1/namespaces/{namespace}/configmaps", _cm("a")),
        (f"/apis/{widgets}/v1/namespaces/{namespace}/widgets",
         {"apiVersion": f"{widgets}/v1", "kind": "Widget", "metadata": {"name": "a"},
          "spec": {"size": 1}}),
    ):
        replies = {
            "create": kube.request("POST", base, body),
            "get": kube.request("GET", f"{base}/a"),
            "list": kube.request("GET", base),
            "patch": kube.request("PATCH", f"{base}/a", {"metadata": {"labels": {"x": "y"}}},
                                  content_type="application/merge-patch+json"),
        }
        with kube.watch(f"{base}?watch=true&timeoutSeconds=5") as w:
            replies["watch"] = w
            first = w.next()
        replies["delete"] = kube.request("DELETE", f"{base}/a")
        for verb, reply in replies.items():
            assert reply.status in (200, 201), (verb, base)
            assert reply.content_type == "application/json", (verb, base)
        assert replies["list"].json()["items"][0]["metadata"]["name"] == "a"
        assert replies["patch"].json()["metadata"]["labels"] == {"x": "y"}
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")


def test_nothing_acceptable_is_406_and_does_nothing(kube, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    r = kube.request("POST", base, _cm("never"), accept="application/vnd.kubernetes.protobuf")
    assert r.status == 406
    status = r.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotAcceptable", 406)
    assert "application/json" in status["message"]
    assert kube.request("GET", f"{base}/never").status == 404
    assert kube.request("GET", base, accept="text/html").status == 406
    w = kube.watch(f"{base}?watch=true", accept="application/yaml")
    assert w.status == 406
    w.close()


def test_yaml_when_preferred(kube, namespace):
    r = kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps",
                     accept="application/json;q=0.5, application/yaml")
    assert r.status == 200 and r.content_type == "application/yaml"
    assert b"kind: ConfigMapList" in r.body


def test_transforms_answer_in_the_version_asked(kube, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.request("POST", base, _cm("t"))
    table = kube.request("GET", base, accept="application/json;as=Table;v=v1beta1;"
                         "g=meta.k8s.io").json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1beta1")
    partial = kube.request("GET", f"{base}/t", accept="application/json;"
                           "as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io").json()
    assert (partial["kind"], partial["apiVersion"]) == ("PartialObjectMetadata",
                                                        "meta.k8s.io/v1beta1")


def test_metadata_client_list_and_watch_list_of_crds(kube, widgets):
    """istiod's CRD watcher is a metadata informer (pkg/kube/kclient/crdwatcher.go): its
    list and every watch event, the closing bookmark included, must be
    PartialObjectMetadata, or client-go's metadata decoder fails."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    listed = kube.request("GET", path, accept=METADATA_LIST)
    assert listed.status == 200 and listed.content_type == "application/json"
    doc = listed.json()
    assert (doc["kind"], doc["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert f"widgets.{widgets}" in [i["metadata"]["name"] for i in doc["items"]]
    assert all(set(i) == {"kind", "apiVersion", "metadata"} and
               i["kind"] == "PartialObjectMetadata" for i in doc["items"])
    with kube.watch(f"{path}?{WATCH_LIST}&timeoutSeconds=30&watch=true",
                    accept=METADATA_WATCH) as w:
        events = w.until(lambda e: e["type"] == "BOOKMARK")
    assert all(e["object"]["kind"] == "PartialObjectMetadata" and
               e["object"]["apiVersion"] == "meta.k8s.io/v1" and "spec" not in e["object"]
               for e in events)
    assert events[-1]["object"]["metadata"]["annotations"] == {END: "true"}
    assert f"widgets.{widgets}" in [e["object"]["metadata"]["name"] for e in events[:-1]]
    # asking PartialObjectMetadata of a list (or the list form of one object) is 406
    assert kube.request("GET", path, accept="application/json;as=PartialObjectMetadata;"
                        "g=meta.k8s.io;v=v1").status == 406


# -- watch-list (client-go's reflector) ----------------------------------------------------


@pytest.mark.parametrize("rv", [None, "", "0", "current"])
def test_watch_list_sends_state_then_the_bookmark_then_changes(kube, namespace, rv):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for name in ("one", "two"):
        assert kube.request("POST", base, _cm(name)).status == 201
    listed = _rv(kube, base)
    version = "" if rv is None else f"&resourceVersion={listed if rv == 'current' else rv}"
    with kube.watch(f"{base}?{WATCH_LIST}{version}&timeoutSeconds=30&watch=true") as w:
        initial = w.events(3)
        assert events_of(initial) == [("ADDED", "one"), ("ADDED", "two"), ("BOOKMARK", "")]
        bookmark = initial[-1]["object"]
        assert (bookmark["kind"], bookmark["apiVersion"]) == ("ConfigMap", "v1")
        assert bookmark["metadata"]["annotations"] == {END: "true"}
        assert int(bookmark["metadata"]["resourceVersion"]) >= listed
        # the same stream goes on with changes (the reflector keeps it: reflector.go l.1080)
        created = kube.request("POST", base, _cm("three")).json()
        after = w.next()
    assert (after["type"], after["object"]["metadata"]["name"]) == ("ADDED", "three")
    assert after["object"]["metadata"]["resourceVersion"] == created["metadata"][
        "resourceVersion"]


def test_reflector_request_sequence_loses_nothing(kube, namespace):
    """watchList until the bookmark, keep the stream; when it ends, watch again from the
    last version seen with allowWatchBookmarks (reflector.go ``watch``): every write
    arrives exactly once."""
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.request("POST", base, _cm("before"))
    seen: dict[str, str] = {}
    last = ""
    with kube.watch(f"{base}?{WATCH_LIST}&timeoutSeconds=2&watch=true") as w:
        for ev in w.until(lambda e: e["type"] == "BOOKMARK"):
            last = ev["object"]["metadata"]["resourceVersion"]
            if ev["type"] == "ADDED":
                seen[ev["object"]["metadata"]["name"]] = ev["type"]
        kube.request("POST", base, _cm("during"))
        for ev in w.rest():  # until the server's timeoutSeconds ends the stream
            seen[ev["object"]["metadata"]["name"]] = ev["type"]
            last = ev["object"]["metadata"]["resourceVersion"]
    kube.request("POST", base, _cm("between"))
    kube.request("DELETE", f"{base}/before")
    with kube.watch(f"{base}?allowWatchBookmarks=true&resourceVersion={last}"
                    "&timeoutSeconds=1&watch=true") as w:
        resumed = w.rest()
    assert seen == {"before": "ADDED", "during": "ADDED"}
    assert events_of(resumed) == [("ADDED", "between"), ("DELETED", "before")]


def test_initial_events_without_bookmarks_and_no_initial_events(kube, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.request("POST", base, _cm("old"))
    # sendInitialEvents without allowWatchBookmarks: the state, and no closing bookmark
    with kube.watch(f"{base}?sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                    "&timeoutSeconds=1&watch=true") as w:
        assert events_of(w.rest()) == [("ADDED", "old")]
    # sendInitialEvents=false from "": only what happens next
    with kube.watch(f"{base}?sendInitialEvents=false&resourceVersionMatch=NotOlderThan"
                    "&allowWatchBookmarks=true&timeoutSeconds=30&watch=true") as w:
        kube.request("POST", base, _cm("new"))
        assert events_of([w.next()]) == [("ADDED", "new")]


def test_watch_list_from_a_version_the_server_has_not_reached(kube, namespace):
    """The ERROR a real server sends after waiting 3 s; client-go recognises its cause
    (isTooLargeResourceVersionError) and starts again from the latest state."""
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    future = _rv(kube, base) + 100_000
    with kube.watch(f"{base}?{WATCH_LIST}&resourceVersion={future}&timeoutSeconds=30"
                    "&watch=true") as w:
        events = w.rest()
    assert [e["type"] for e in events] == ["ERROR"]
    status = events[0]["object"]
    assert (status["code"], status["reason"]) == (504, "Timeout")
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert "Too large resource version" in status["message"]


@pytest.mark.parametrize(("query", "field"), [
    ("watch=true&sendInitialEvents=true", "resourceVersionMatch"),
    ("watch=true&resourceVersionMatch=NotOlderThan", "resourceVersionMatch"),
    ("sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=1",
     "sendInitialEvents"),
])
def test_invalid_list_options_are_422(kube, namespace, query, field):
    r = kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps?{query}")
    assert r.status == 422
    status = r.json()
    assert (status["reason"], status["details"]["kind"]) == ("Invalid", "ListOptions")
    assert status["details"]["causes"][0]["field"] == field


# -- field selectors ---------------------------------------------------------------------


def test_pod_field_selectors_on_list_and_watch(kube, core, namespace):
    pods = f"/api/v1/namespaces/{namespace}/pods"
    for name in ("p1", "p2"):
        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))
    bound = until(core.list_namespaced_pod, lambda items: len(items) == 2 and all(
        p.spec.node_name for p in items), namespace=namespace)
    node = bound[0].spec.node_name
    on_node = sorted(p.metadata.name for p in bound if p.spec.node_name == node)
    r = kube.request("GET", f"{pods}?fieldSelector=spec.nodeName%3D{node}")
    assert [p["metadata"]["name"] for p in r.json()["items"]] == on_node
    # istiod's pod informer: status.phase!=Failed (controller.go; node_auth.go)
    with kube.watch(f"{pods}?{WATCH_LIST}&fieldSelector=status.phase%21%3DFailed"
                    "&timeoutSeconds=30&watch=true") as w:
        assert events_of(w.events(3)) == [("ADDED", "p1"), ("ADDED", "p2"), ("BOOKMARK", "")]
        failed = kube.request("PATCH", f"{pods}/p1/status", {"status": {"phase": "Failed"}},
                              content_type="application/merge-patch+json").json()
        gone = w.next()
    # leaving the selection is DELETED, with the object as it last matched
    assert (gone["type"], gone["object"]["metadata"]["name"]) == ("DELETED", "p1")
    assert gone["object"]["status"]["phase"] == "Pending"
    assert gone["object"]["metadata"]["resourceVersion"] == failed["metadata"][
        "resourceVersion"]
    r = kube.request("GET", f"{pods}?fieldSelector=status.phase%21%3DFailed")
    assert [p["metadata"]["name"] for p in r.json()["items"]] == ["p2"]


def test_secret_and_configmap_field_selectors(kube, namespace):
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    for name, kind in (("opaque", "Opaque"), ("helm", "helm.sh/release.v1"),
                       ("sa", "kubernetes.io/service-account-token")):
        body = {"apiVersion": "v1", "kind": "Secret", "type": kind, "data": {},
                "metadata": {"name": name, "annotations": {
                    "kubernetes.io/service-account.name": "default"}}}
        assert kube.request("POST", secrets, body).status == 201
    # istiod pilot/pkg/credentials/kube/secrets.go
    selector = "type%21%3Dhelm.sh%2Frelease.v1%2Ctype%21%3Dkubernetes.io%2Fservice-account-token"
    r = kube.request("GET", f"{secrets}?fieldSelector={selector}")
    assert [s["metadata"]["name"] for s in r.json()["items"]] == ["opaque"]
    with kube.watch(f"{secrets}?{WATCH_LIST}&fieldSelector={selector}&timeoutSeconds=30"
                    "&watch=true") as w:
        assert events_of(w.events(2)) == [("ADDED", "opaque"), ("BOOKMARK", "")]
    # istiod's mesh-config watcher: metadata.name= on ConfigMaps (kubemesh/watcher.go)
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    with kube.watch(f"{cms}?{WATCH_LIST}&fieldSelector=metadata.name%3Distio"
                    "&timeoutSeconds=30&watch=true") as w:
        assert events_of(w.events(1)) == [("BOOKMARK", "")]
        kube.request("POST", cms, _cm("other"))
        kube.request("POST", cms, _cm("istio"))
        assert events_of([w.next()]) == [("ADDED", "istio")]


# -- metadata through pods/status (istio-cni) -------------------------------------------


@pytest.mark.parametrize("patch_type", ["application/merge-patch+json",
                                        "application/strategic-merge-patch+json"])
def test_pod_status_patch_changes_annotations_and_fires_the_watch(kube, namespace, patch_type):
    """istio-cni marks enrolled pods with a merge patch of pods/<name>/status
    (cni/pkg/util/podutil.go); the pod status strategy keeps such metadata changes but
    not ownerReferences or spec (kubernetes pkg/registry/core/pod/strategy.go)."""
    pods = f"/api/v1/namespaces/{namespace}/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = kube.request("POST", pods, pod).json()
    with kube.watch(f"{pods}?resourceVersion={created['metadata']['resourceVersion']}"
                    "&allowWatchBookmarks=true&timeoutSeconds=30&watch=true") as w:
        patch = {"metadata": {
            "annotations": {"ambient.istio.io/redirection": "enabled"},
            "labels": {"seen": "yes"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x",
                                 "uid": "00000000-0000-0000-0000-000000000001"}]},
            "spec": {"activeDeadlineSeconds": 5}}
        r = kube.request("PATCH", f"{pods}/app/status", patch, content_type=patch_type)
        assert r.status == 200, r.body
        ev = w.until(lambda e: e["type"] == "MODIFIED" and e["object"]["metadata"].get(
            "annotations"))[-1]
    for obj in (r.json(), ev["object"], kube.request("GET", f"{pods}/app").json()):
        assert obj["metadata"]["annotations"] == {"ambient.istio.io/redirection": "enabled"}
        assert obj["metadata"]["labels"] == {"seen": "yes"}
        assert "ownerReferences" not in obj["metadata"]
        assert "activeDeadlineSeconds" not in obj["spec"]


def test_custom_resource_status_keeps_metadata(kube, namespace, widgets):
    base = f"/apis/{widgets}/v1/namespaces/{namespace}/widgets"
    kube.request("POST", base, {"apiVersion": f"{widgets}/v1", "kind": "Widget",
                                "metadata": {"name": "w"}, "spec": {}})
    r = kube.request("PATCH", f"{base}/w/status", {"metadata": {"labels": {"a": "b"}},
                                                   "status": {"ok": True}},
                     content_type="application/merge-patch+json").json()
    assert r["status"] == {"ok": True} and "labels" not in r["metadata"]


# -- dry run -----------------------------------------------------------------------------


def test_dry_run_validates_defaults_and_stores_nothing(kube, namespace, widgets):
    """istiod's validation controller dry-run-creates an invalid Gateway
    (pkg/webhooks/validation/controller/controller.go): a dry run must leave no object,
    no watch event and no side effect."""
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    crs = f"/apis/{widgets}/v1/namespaces/{namespace}/widgets"
    kube.request("POST", cms, _cm("kept"))
    start = _rv(kube, cms)
    with kube.watch(f"/api/v1/namespaces/{namespace}/configmaps?resourceVersion={start}"
                    "&timeoutSeconds=30&watch=true") as w:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        created = kube.request("POST", f"{pods}?dryRun=All", pod)
        assert created.status == 201
        assert created.json()["spec"]["restartPolicy"] == "Always"  # defaulted
        assert created.json()["status"]["phase"] == "Pending"
        assert "resourceVersion" not in created.json()["metadata"]
        assert kube.request("GET", f"{pods}/dry").status == 404
        bad = dict(pod, spec={"containers": [{"name": "c"}]})
        assert kube.request("POST", f"{pods}?dryRun=All", bad).status == 422  # validated
        assert kube.request("POST", f"{crs}?dryRun=All", {
            "apiVersion": f"{widgets}/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {}}).status == 201
        assert kube.request("GET", f"{crs}/w").status == 404
        before = kube.request("GET", f"{cms}/kept").json()
        assert kube.request("PUT", f"{cms}/kept?dryRun=All",
                            {**before, "data": {"k": "changed"}}).json()["data"] == {
            "k": "changed"}
        assert kube.request("PATCH", f"{cms}/kept?dryRun=All", {"data": {"k": "patched"}},
                            content_type="application/merge-patch+json").status == 200
        assert kube.request("DELETE", f"{cms}/kept?dryRun=All").status == 200
        assert kube.request("GET", f"{cms}/kept").json() == before
        # the first event the watcher gets is this real write, nothing dry
        kube.request("POST", cms, _cm("real"))
        assert events_of([w.next()]) == [("ADDED", "real")]


@pytest.mark.parametrize(("method", "suffix", "kind"), [
    ("POST", "", "CreateOptions"), ("PUT", "/x", "UpdateOptions"),
    ("PATCH", "/x", "PatchOptions"), ("DELETE", "/x", "DeleteOptions")])
def test_unknown_dry_run_value_is_422(kube, namespace, method, suffix, kind):
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.request("POST", cms, _cm("x"))
    r = kube.request(method, f"{cms}{suffix}?dryRun=Some",
                     None if method == "DELETE" else _cm("x"),
                     content_type="application/merge-patch+json" if method == "PATCH"
                     else "application/json")
    assert r.status == 422
    assert (r.json()["details"]["kind"], r.json()["details"]["causes"][0]["field"]) == (
        kind, "dryRun")
    assert kube.request("GET", f"{cms}/x").status == 200


# -- pod-bound tokens (istiod's CA: tokenreview/k8sauthn.go, ca/node_auth.go) -------------


def _bound_pod(kube, core, namespace, sa: str = "ztunnel") -> dict:
    kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}})
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"{sa}-pod"),
        spec=client.V1PodSpec(service_account_name=sa, containers=[
            client.V1Container(name="c", image="busybox")])))
    until(core.list_namespaced_pod, lambda items: all(p.spec.node_name for p in items),
          namespace=namespace)
    return kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/{sa}-pod").json()


def _token(kube, namespace, sa, pod=None, audiences=("istio-ca",)) -> str:
    spec: dict = {"audiences": list(audiences), "expirationSeconds": 43200}
    if pod is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1",
                                  "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}
    r = kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": spec})
    assert r.status == 201, r.body
    return r.json()["status"]["token"]


def _review(kube, token, audiences=None) -> dict:
    spec: dict = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    r = kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": spec})
    assert r.status == 201 and r.content_type == "application/json"
    return r.json()["status"]


def test_pod_bound_token_review_has_the_pod_and_node_extras(kube, core, namespace):
    pod = _bound_pod(kube, core, namespace)
    token = _token(kube, namespace, "ztunnel", pod)
    status = _review(kube, token, ["istio-ca"])
    assert status["authenticated"] is True
    user = status["user"]
    assert user["username"] == f"system:serviceaccount:{namespace}:ztunnel"
    assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                              "system:authenticated"]
    node = kube.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}").json()
    extra = user["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == [pod["metadata"]["name"]]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    assert extra["authentication.kubernetes.io/node-name"] == [node["metadata"]["name"]]
    assert extra["authentication.kubernetes.io/node-uid"] == [node["metadata"]["uid"]]
    assert extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    assert status["audiences"] == ["istio-ca"]
    # audiences: the token's, among those asked for; none asked means the API server's
    wrong = _review(kube, token, ["other"])
    assert wrong["authenticated"] is False
    assert 'token audiences ["istio-ca"] is invalid for the target audiences ["other"]' in \
        wrong["error"]
    assert _review(kube, token)["authenticated"] is False
    # ... and a token for istio-ca is no credential for the API itself
    assert kube.request("GET", "/api/v1/namespaces", token=token).status == 401
    api_token = _token(kube, namespace, "ztunnel", pod, audiences=())
    assert kube.request("GET", "/api/v1/namespaces", token=api_token).status == 200
    # the token dies with its pod
    core.delete_namespaced_pod(pod["metadata"]["name"], namespace, grace_period_seconds=0)
    until(core.list_namespaced_pod, lambda items: not items, namespace=namespace)
    gone = _review(kube, token, ["istio-ca"])
    assert gone["authenticated"] is False
    assert "service account token has been invalidated" in gone["error"]


def test_token_request_refusals(kube, core, namespace):
    pod = _bound_pod(kube, core, namespace, sa="runner")
    kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "other"}})
    base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    ref = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"]}

    def ask(sa, **bound):
        return kube.request("POST", f"{base}/{sa}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"boundObjectRef": {**ref, **bound}}})

    mismatch = ask("other")
    assert mismatch.status == 400
    assert 'to pod running with serviceaccount "runner"' in mismatch.json()["message"]
    stale = ask("runner", uid="00000000-0000-0000-0000-000000000000")
    assert stale.status == 409
    assert ask("runner", kind="Deployment", apiVersion="apps/v1").status == 400
    ok = ask("runner").json()
    assert ok["spec"]["expirationSeconds"] == 3600
    assert ok["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]


# -- kinds of the ambient install ------------------------------------------------------------

KINDS = [
    ("", "v1", "resourcequotas", True,
     {"kind": "ResourceQuota", "spec": {"hard": {"pods": "10"}}}),
    ("policy", "v1", "poddisruptionbudgets", True,
     {"kind": "PodDisruptionBudget",
      "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "istiod"}}}}),
    ("autoscaling", "v2", "horizontalpodautoscalers", True,
     {"kind": "HorizontalPodAutoscaler", "spec": {
         "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "istiod"},
         "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {
             "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
    ("networking.k8s.io", "v1", "networkpolicies", True,
     {"kind": "NetworkPolicy", "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    ("networking.k8s.io", "v1", "ingresses", True,
     {"kind": "Ingress", "spec": {"ingressClassName": "istio", "rules": [{"http": {"paths": [{
         "path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": "productpage", "port": {"number": 9080}}}}]}}]}}),
    ("networking.k8s.io", "v1", "ingressclasses", False,
     {"kind": "IngressClass", "spec": {"controller": "istio.io/ingress-controller"}}),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", False,
     {"kind": "ValidatingWebhookConfiguration", "webhooks": []}),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", False,
     {"kind": "MutatingWebhookConfiguration", "webhooks": []}),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", False,
     {"kind": "ValidatingAdmissionPolicy", "spec": {
         "failurePolicy": "Fail",
         "matchConstraints": {"resourceRules": [{
             "apiGroups": ["security.istio.io"], "apiVersions": ["*"],
             "operations": ["CREATE", "UPDATE"], "resources": ["*"]}]},
         "validations": [{"expression": "true"}]}}),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", False,
     {"kind": "ValidatingAdmissionPolicyBinding", "spec": {
         "policyName": "p", "validationActions": ["Deny"]}}),
]


@pytest.mark.parametrize(("group", "version", "plural", "namespaced", "body"), KINDS,
                         ids=[k[2] for k in KINDS])
def test_install_kinds_are_stored_and_served(kube, namespace, group, version, plural,
                                             namespaced, body):
    gv = f"{group}/{version}" if group else version
    prefix = f"/apis/{gv}" if group else f"/api/{gv}"
    listing = kube.request("GET", prefix).json()
    assert plural in [r["name"] for r in listing["resources"]]
    base = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
    name = f"n-{uuid.uuid4().hex[:6]}"
    doc = {"apiVersion": gv, **body, "metadata": {"name": name}}
    with kube.watch(f"{base}?{WATCH_LIST}&timeoutSeconds=30&watch=true") as w:
        w.until(lambda e: e["type"] == "BOOKMARK")
        created = kube.request("POST", base, doc)
        assert created.status == 201, created.body
        assert events_of([w.next()]) == [("ADDED", name)]
    assert kube.request("GET", f"{base}/{name}").json()["kind"] == body["kind"]
    assert name in [i["metadata"]["name"] for i in kube.request("GET", base).json()["items"]]
    assert kube.request("DELETE", f"{base}/{name}").status == 200
    assert kube.request("GET", f"{base}/{name}").status == 404


def test_watch_resume_from_a_future_version_sends_only_what_comes_after(kube, namespace):
    """A plain watch from a version ahead of the store sends only later changes (the
    real cacheWatcher drops events at or below its version)."""
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    ahead = _rv(kube, base) + 3
    with kube.watch(f"{base}?resourceVersion={ahead}&timeoutSeconds=30&watch=true") as w:
        for i in range(5):
            kube.request("POST", base, _cm(f"c{i}"))
        first = w.next()
    assert int(first["object"]["metadata"]["resourceVersion"]) > ahead


def test_events_are_served_in_both_groups(kube, namespace):
    """One Event, two views: written through events.k8s.io/v1 (client-go's
    tools/events recorder) and read as core v1, and the other way round (kubernetes
    pkg/apis/events/v1/conversion.go)."""
    new = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    core = f"/api/v1/namespaces/{namespace}/events"
    with kube.watch(f"{new}?{WATCH_LIST}&timeoutSeconds=30&watch=true") as w:
        w.until(lambda e: e["type"] == "BOOKMARK")
        created = kube.request("POST", new, {
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "probe",
            "reportingInstance": "probe-1", "action": "Probe", "reason": "Probed",
            "type": "Normal", "note": "hello",
            "regarding": {"kind": "Pod", "name": "p", "namespace": namespace}})
        assert created.status == 201, created.body
        assert created.json()["note"] == "hello"
        as_core = kube.request("GET", f"{core}/e1").json()
        assert (as_core["apiVersion"], as_core["message"], as_core["involvedObject"]["name"],
                as_core["reportingComponent"]) == ("v1", "hello", "p", "probe")
        kube.request("POST", core, {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Pod", "name": "q", "namespace": namespace},
            "reason": "Old", "message": "from the core group", "count": 3, "type": "Normal",
            "source": {"component": "kubelet"}})
        first, second = w.events(2)
    assert first["object"]["apiVersion"] == "events.k8s.io/v1"
    assert second["object"]["note"] == "from the core group"
    assert second["object"]["deprecatedCount"] == 3
    assert second["object"]["deprecatedSource"] == {"component": "kubelet"}
    patched = kube.request("PATCH", f"{new}/e2", {"note": "patched"},
                           content_type="application/merge-patch+json").json()
    assert patched["note"] == "patched"
    assert kube.request("GET", f"{core}/e2").json()["message"] == "patched"
    names = [i["metadata"]["name"] for i in kube.request("GET", new).json()["items"]]
    assert names == ["e1", "e2"]
