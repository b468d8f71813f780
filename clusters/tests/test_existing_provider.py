"""The existing-cluster provider: unit checks with a substitute kubectl, then the real
thing against a local cluster that the provider did not start and must not stop."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from clusters import kubectl_cluster
from clusters.choose_provider import unavailable_reason
from clusters.existing import ExistingCluster, default_kubeconfig
from clusters.local.provider import LocalCluster
from clusters.provider import ClusterError


def _kubeconfig(path: Path, server: str, contexts: tuple[str, ...] = ("ctx",),
                current: str | None = "ctx") -> Path:
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "c", "cluster": {"server": server,
                                                  "insecure-skip-tls-verify": True}}],
           "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
           "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}}
                        for n in contexts]}
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


# -- kubeconfig resolution ----------------------------------------------------------------


def test_kubeconfig_comes_from_the_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "from-env"))
    assert ExistingCluster().kubeconfig == tmp_path / "from-env"
    assert ExistingCluster(tmp_path / "given").kubeconfig == tmp_path / "given"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_kubeconfig() == tmp_path / ".kube" / "config"


def test_a_kubeconfig_list_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    with pytest.raises(ClusterError, match=r"lists several files.*kubeconfig=<file>"):
        ExistingCluster().kubeconfig  # noqa: B018


def test_a_missing_kubeconfig_names_the_file(tmp_path):
    missing = re.escape(f"kubeconfig {tmp_path / 'nope'} does not exist")
    with pytest.raises(ClusterError, match=missing):
        ExistingCluster(tmp_path / "nope").up()


def test_an_unknown_context_lists_the_known_ones(tmp_path):
    kc = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", contexts=("a", "b"), current="a")
    with pytest.raises(ClusterError, match=r"has no context 'c' \(it has: a, b\)"):
        ExistingCluster(kc, context="c").up()
    kc = _kubeconfig(tmp_path / "kc2", "https://127.0.0.1:1", contexts=("a",), current=None)
    with pytest.raises(ClusterError, match="sets no current-context: pass context="):
        ExistingCluster(kc).up()


def test_load_image_is_refused():
    with pytest.raises(ClusterError, match="an existing cluster pulls images from a registry; "
                                           "push the image there"):
        ExistingCluster(Path("/nonexistent")).load_image("app:1")


def test_teardown_does_nothing_even_without_a_cluster(tmp_path):
    ExistingCluster(tmp_path / "nope").teardown()


# -- kubectl exec, with a substitute kubectl -----------------------------------------------

FAKE_KUBECTL = """\
#!{python}
import json, pathlib, sys
pathlib.Path({log!r}).write_text(json.dumps(sys.argv[1:]))
script = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
if script[:1] == ["missing"]:
    sys.stderr.write('Error from server (NotFound): pods "missing" not found\\n')
    sys.exit(1)
if script[:1] == ["exit"]:
    code = int(script[1])
    print("to stdout")
    sys.stderr.write("to stderr\\n")
    if code:
        sys.stderr.write("command terminated with exit code %d\\n" % code)
    sys.exit(code)
"""


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "kubectl-argv.json"
    binary = tmp_path / "kubectl"
    binary.write_text(FAKE_KUBECTL.format(python=sys.executable, log=str(log)))
    binary.chmod(0o755)
    monkeypatch.setattr(kubectl_cluster, "kubectl_binary", lambda: str(binary))
    return log


def test_exec_passes_the_context_and_returns_the_remote_exit_code(tmp_path, fake_kubectl):
    c = ExistingCluster(tmp_path / "kc", context="prod-like")
    r = c.exec("ns", "deploy/sleep", ["exit", "3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "to stdout\n", "to stderr\n")
    argv = json.loads(fake_kubectl.read_text())
    assert argv == [f"--kubeconfig={tmp_path / 'kc'}", "--context=prod-like",
                    "exec", "-n", "ns", "deploy/sleep", "--", "exit", "3"]
    ok = c.exec("ns", "pod-a", ["exit", "0"])
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "to stdout\n", "to stderr\n")


def test_exec_tells_kubectls_own_failure_from_the_commands(tmp_path, fake_kubectl):
    with pytest.raises(ClusterError) as err:
        ExistingCluster(tmp_path / "kc").exec("ns", "missing", ["missing"])
    text = str(err.value)
    assert "kubectl exec -n ns missing -- missing" in text
    assert 'pods "missing" not found' in text


# -- live, against a local cluster the provider did not start -------------------------------

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
       "spec": {"containers": [{"name": "sleep", "image": "curlimages/curl",
                                "command": ["sleep", "3650d"]}]}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "talker"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "talker"}},
                       "template": {"metadata": {"labels": {"app": "talker"}},
                                    "spec": {"containers": [{
                                        "name": "talk", "image": "curlimages/curl",
                                        "command": ["sh", "-c",
                                                    "echo talker started; exec sleep 3650d"]}]}}}}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    reason = unavailable_reason("local")
    if reason:
        pytest.skip(reason)
    c = LocalCluster(f"ex-{os.getpid()}", root=tmp_path_factory.mktemp("existing"))
    c.up()
    yield c
    c.teardown()


@pytest.fixture(scope="module")
def workload(local: LocalCluster) -> str:
    ns = f"ex-{uuid.uuid4().hex[:6]}"
    local.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}])
    local.apply([POD, DEPLOYMENT], namespace=ns)
    local.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", ns, "--timeout=60s")
    return ns


@pytest.mark.slow
def test_up_checks_the_cluster_answers(local, workload):
    existing = ExistingCluster(local.kubeconfig)
    existing.up()
    existing.up()  # idempotent
    names = existing.kubectl("get", "pods", "-n", workload, "-o", "name").stdout.split()
    assert "pod/sleeper" in names


@pytest.mark.slow
def test_exec_returns_exit_codes_and_output(local, workload):
    existing = ExistingCluster(local.kubeconfig)
    r = existing.exec(workload, "sleeper", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r.exit_code == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    ok = existing.exec(workload, "deploy/talker", ["sh", "-c", "echo fine"])
    assert (ok.exit_code, ok.stdout) == (0, "fine\n")


@pytest.mark.slow
def test_exec_into_a_missing_pod_is_a_cluster_error(local, workload):
    existing = ExistingCluster(local.kubeconfig)
    with pytest.raises(ClusterError, match=r"kubectl exec -n \S+ nobody -- true.*not found"):
        existing.exec(workload, "nobody", ["true"])


@pytest.mark.slow
def test_logs_and_api_client_use_the_named_context(local, workload):
    kubeconfig = yaml.safe_load(local.kubeconfig.read_text())
    context = kubeconfig["current-context"]
    existing = ExistingCluster(local.kubeconfig, context=context)
    existing.up()
    assert "talker started" in existing.logs(workload, "deploy/talker")
    with existing.api_client() as api:
        pod = client.CoreV1Api(api).read_namespaced_pod("sleeper", workload)
    assert pod.status.phase == "Running"
    ready = existing.wait("v1", "Pod", "sleeper", namespace=workload, timeout=10,
                          condition=lambda p: p["status"]["phase"] == "Running")
    assert ready["metadata"]["name"] == "sleeper"


@pytest.mark.slow
def test_teardown_leaves_the_cluster_running(local, workload):
    existing = ExistingCluster(local.kubeconfig)
    existing.up()
    existing.teardown()
    assert local.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    still = local.exec(workload, "sleeper", ["true"])
    assert still.exit_code == 0
    existing.up()  # and it can be used again


@pytest.mark.slow
def test_a_closed_port_fails_quickly_and_clearly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = _kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        ExistingCluster(kc, ready_timeout=5).up()
    assert time.monotonic() - started < 15
    text = str(err.value)
    assert "the existing cluster does not answer" in text
    assert f"kubeconfig {kc}" in text and "context ctx" in text
    assert f"127.0.0.1:{port}" in text
    assert "refused" in text
    assert "Check that the cluster is running" in text
