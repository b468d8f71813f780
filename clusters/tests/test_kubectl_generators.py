"""kubectl's generator commands against the local API: ``create <kind>``, ``run``,
``expose``, ``create token`` and ``auth``.

They go through client-go's typed clients, which send protobuf bodies
(clusters/local/apiserver/protobuf.py), so each test checks what was stored, not only
that kubectl exited 0: a body read wrongly would store the wrong object.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]


def stored(kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def test_create_namespace_configmap_secret_serviceaccount(kubectl, ns):
    kubectl("create", "namespace", f"{ns}-made")
    try:
        made = stored(kubectl, "namespace", f"{ns}-made")
        assert made["metadata"]["labels"]["kubernetes.io/metadata.name"] == f"{ns}-made"
    finally:
        kubectl("delete", "namespace", f"{ns}-made", "--wait=false")
    kubectl("create", "configmap", "cm", "-n", ns, "--from-literal=a=1",
            "--from-literal=b=two")
    assert stored(kubectl, "configmap", "cm", "-n", ns)["data"] == {"a": "1", "b": "two"}
    kubectl("create", "secret", "generic", "pw", "-n", ns, "--from-literal=pw=hunter2")
    secret = stored(kubectl, "secret", "pw", "-n", ns)
    assert base64.b64decode(secret["data"]["pw"]) == b"hunter2"
    assert secret["type"] == "Opaque"
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    assert stored(kubectl, "serviceaccount", "robot", "-n", ns)["metadata"]["name"] == "robot"


def test_create_deployment_keeps_what_was_asked_and_nothing_go_would_not_write(kubectl, ns):
    kubectl("create", "deployment", "none", "-n", ns, "--image=nginx", "--replicas=0")
    assert stored(kubectl, "deployment", "none", "-n", ns)["spec"]["replicas"] == 0
    kubectl("create", "deployment", "web", "-n", ns, "--image=nginx", "--port=80")
    web = stored(kubectl, "deployment", "web", "-n", ns)
    assert web["spec"]["replicas"] == 1
    assert web["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    # zeros of plain omitempty fields, written on the wire, are not stored
    for absent in ("stdin", "tty", "stdinOnce"):
        assert absent not in container
    assert "paused" not in web["spec"]


def test_create_rbac_objects(kubectl, ns):
    kubectl("create", "role", "reader", "-n", ns, "--verb=get,list", "--resource=pods")
    rules = stored(kubectl, "role", "reader", "-n", ns)["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    kubectl("create", "rolebinding", "readers", "-n", ns, "--role=reader",
            f"--serviceaccount={ns}:default")
    binding = stored(kubectl, "rolebinding", "readers", "-n", ns)
    assert binding["roleRef"]["name"] == "reader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default",
                                    "namespace": ns}]
    kubectl("create", "clusterrole", f"{ns}-nodes", "--verb=get", "--resource=nodes")
    kubectl("create", "clusterrolebinding", f"{ns}-nodes", f"--clusterrole={ns}-nodes",
            "--user=bob")
    try:
        assert stored(kubectl, "clusterrolebinding", f"{ns}-nodes")["subjects"][0]["name"] \
            == "bob"
    finally:
        kubectl("delete", "clusterrole,clusterrolebinding", f"{ns}-nodes")


def test_create_service_quota_pdb_and_ingress(kubectl, ns):
    kubectl("create", "service", "clusterip", "svc", "-n", ns, "--tcp=80:8080")
    port = stored(kubectl, "service", "svc", "-n", ns)["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    kubectl("create", "quota", "q", "-n", ns, "--hard=pods=10")
    assert stored(kubectl, "quota", "q", "-n", ns)["spec"]["hard"] == {"pods": "10"}
    kubectl("create", "pdb", "budget", "-n", ns, "--selector=app=web", "--min-available=1")
    assert stored(kubectl, "pdb", "budget", "-n", ns)["spec"]["minAvailable"] == 1
    kubectl("create", "ingress", "ing", "-n", ns, "--rule=foo.com/bar=svc:80")
    rule = stored(kubectl, "ingress", "ing", "-n", ns)["spec"]["rules"][0]
    assert rule["host"] == "foo.com"  # the rule's value is inlined in JSON
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "svc",
                                                              "port": {"number": 80}}


def test_run_and_expose(kubectl, ns):
    kubectl("run", "one", "-n", ns, "--image=busybox", "--labels=app=one", "--port=8080",
            "--", "sleep", "100")
    pod = stored(kubectl, "pod", "one", "-n", ns)
    assert pod["spec"]["containers"][0]["args"] == ["sleep", "100"]
    kubectl("expose", "pod", "one", "-n", ns, "--port=80", "--target-port=8080")
    svc = stored(kubectl, "service", "one", "-n", ns)
    assert svc["spec"]["selector"] == {"app": "one"}
    assert svc["spec"]["ports"][0]["targetPort"] == 8080


def test_create_token_makes_a_token_the_api_accepts(kubectl, ns):
    token = kubectl("create", "token", "default", "-n", ns, "--duration=10m").stdout.strip()
    assert kubectl("--token", token, "get", "namespace", ns).returncode == 0
    who = kubectl("--token", token, "auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["username"] == \
        f"system:serviceaccount:{ns}:default"


def test_auth_can_i_and_whoami_answer_truthfully(kubectl):
    # The local API authorizes every authenticated caller (README): yes, to anything.
    assert kubectl("auth", "can-i", "delete", "pods", "--all-namespaces").stdout.strip() \
        == "yes"
    listing = kubectl("auth", "can-i", "--list").stdout
    assert "*.*" in listing.split("\n")[1]
    who = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "admin"
    assert "system:masters" in who["status"]["userInfo"]["groups"]


def test_create_job_cronjob_and_priorityclass(kubectl, ns):
    kubectl("create", "job", "once", "-n", ns, "--image=curlimages/curl", "--", "echo", "hi")
    job = stored(kubectl, "job", "once", "-n", ns)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    kubectl("create", "cronjob", "tick", "-n", ns, "--image=curlimages/curl",
            "--schedule=*/5 * * * *", "--", "date")
    row = kubectl("get", "cronjob", "tick", "-n", ns, "--no-headers").stdout.split()
    assert row[:6] == ["tick", "*/5", "*", "*", "*", "*"]
    kubectl("create", "priorityclass", f"{ns}-high", "--value=1000")
    try:
        row = kubectl("get", "priorityclass", f"{ns}-high", "--no-headers").stdout.split()
        assert row[1:3] == ["1000", "false"]
    finally:
        kubectl("delete", "priorityclass", f"{ns}-high")
