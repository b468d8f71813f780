"""The kind provider's logic, against a substitute ``kind`` that records its argv.

This machine has neither kind nor a Docker engine; what matters here is that the
provider (through pytest-kind, for create, delete and load) asks kind for the right
things (pinned image, generated node roles, reuse, delete, load, export), that kind's
failures reach the caller with the command, its stderr and the fix, and that neither
pytest-kind nor the provider leaves anything in the current directory or downloads.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from clusters.choose_provider import make_provider, unavailable_reason
from clusters.kind import DEFAULT_NODE_IMAGE, KIND_VERSION, KindCluster
from clusters.kubectl_cluster import run_tool
from clusters.provider import ClusterError

FAKE_KIND = """\
#!{python}
# A stand-in for kind: records argv, keeps a list of clusters, fails on request.
import json, os, pathlib, sys

state = pathlib.Path({state!r})
args = sys.argv[1:]
with open(state / "calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\\n")
with open(state / "cwds", "a") as f:
    f.write(os.getcwd() + "\\n")
fail = state / ("fail-" + args[0])
if fail.exists():
    sys.stderr.write(fail.read_text())
    sys.exit(1)
listed = state / "clusters"
names = listed.read_text().split() if listed.exists() else []

def flag(name):
    # kind (cobra) takes both --name value and --name=value; pytest-kind uses the latter
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise SystemExit("fake kind: no " + name)

def kubeconfig(name):
    ctx = "kind-" + name
    return json.dumps({{
        "apiVersion": "v1", "kind": "Config", "current-context": ctx,
        "clusters": [{{"name": ctx, "cluster": {{"server": "https://127.0.0.1:1"}}}}],
        "contexts": [{{"name": ctx, "context": {{"cluster": ctx, "user": ctx}}}}],
        "users": [{{"name": ctx, "user": {{"token": "fake"}}}}]}})

if args[:1] == ["version"]:
    version = state / "version"
    print(version.read_text() if version.exists() else "kind v0.33.0 go1.25.5 linux/amd64")
elif args[:2] == ["get", "clusters"]:
    if names:
        print("\\n".join(names))
    else:
        sys.stderr.write("No kind clusters found.\\n")
elif args[:2] == ["get", "kubeconfig"]:
    print(kubeconfig(flag("--name")))
elif args[:2] == ["create", "cluster"]:
    (state / "seen-config.yaml").write_text(pathlib.Path(flag("--config")).read_text())
    written = pathlib.Path(flag("--kubeconfig"))
    written.write_text(kubeconfig(flag("--name")))
    if (state / "quirk-no-kubeconfig").exists():
        written.unlink()
    listed.write_text("\\n".join(names + [flag("--name")]))
    sys.stderr.write("Creating cluster ...\\n")
elif args[:2] == ["delete", "cluster"]:
    listed.write_text("\\n".join(n for n in names if n != flag("--name")))
elif args[:2] == ["export", "logs"]:
    pathlib.Path(args[2], "kind-version.txt").write_text("fake")
"""

# kubectl for the provider's readiness wait: records argv, fails on request.
FAKE_KUBECTL = """\
#!{python}
import json, pathlib, sys

state = pathlib.Path({state!r})
with open(state / "kubectl-calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
fail = state / "fail-kubectl"
if fail.exists():
    sys.stderr.write(fail.read_text())
    sys.exit(1)
"""


class FakeKind:
    """The substitute binaries (kind, and the kubectl the provider waits with) and
    what they saw."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "fake-kind"
        self.state.mkdir()
        self.binary = tmp_path / "bin" / "kind"
        self.binary.parent.mkdir()
        self.binary.write_text(FAKE_KIND.format(python=sys.executable, state=str(self.state)))
        self.binary.chmod(0o755)
        self.kubectl = tmp_path / "kubectl-bin" / "kubectl"
        self.kubectl.parent.mkdir()
        self.kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable,
                                                    state=str(self.state)))
        self.kubectl.chmod(0o755)

    @staticmethod
    def _read(log: Path) -> list[list[str]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def calls(self) -> list[list[str]]:
        return self._read(self.state / "calls.jsonl")

    def kubectl_calls(self) -> list[list[str]]:
        return self._read(self.state / "kubectl-calls.jsonl")

    def cwds(self) -> set[str]:
        log = self.state / "cwds"
        return set(log.read_text().splitlines()) if log.exists() else set()

    def has_cluster(self, *names: str) -> None:
        (self.state / "clusters").write_text("\n".join(names))

    def fail(self, verb: str, stderr: str) -> None:
        (self.state / f"fail-{verb}").write_text(stderr)


@pytest.fixture
def kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKind:
    from clusters import kubectl_cluster

    fake = FakeKind(tmp_path)
    monkeypatch.setattr(kubectl_cluster, "kubectl_binary", lambda: str(fake.kubectl))
    return fake


def _kubeconfig_context(path: Path) -> str:
    return yaml.safe_load(path.read_text())["current-context"]


def _cluster(kind: FakeKind, tmp_path: Path, **kw) -> KindCluster:
    kw.setdefault("name", "t")
    return KindCluster(kind_binary=kind.binary, root=tmp_path / "state", **kw)


def test_the_node_image_is_pinned_by_digest():
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", DEFAULT_NODE_IMAGE)
    assert KIND_VERSION.startswith("v0.")


def test_up_creates_with_pinned_image_generated_config_and_wait(kind, tmp_path):
    c = _cluster(kind, tmp_path, nodes=3)
    c.up()
    state = tmp_path / "state" / "kind-t"
    # ours (reuse?), then pytest-kind's create(): its own look, then kind create
    assert kind.calls() == [
        ["get", "clusters"],
        ["get", "clusters"],
        ["create", "cluster", "--name=t", f"--kubeconfig={state / 'kubeconfig'}",
         f"--image={DEFAULT_NODE_IMAGE}", "--config", str(state / "kind-config.yaml")],
    ]
    # what `kind create cluster --wait` did: every node Ready before the mesh goes in
    assert kind.kubectl_calls() == [
        [f"--kubeconfig={state / 'kubeconfig'}", f"--cache-dir={state / 'kubectl-cache'}",
         "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=120s"]]
    config = yaml.safe_load((kind.state / "seen-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert c.kubeconfig == state / "kubeconfig"
    assert _kubeconfig_context(c.kubeconfig) == "kind-t"
    assert c.kubeconfig.stat().st_mode & 0o777 == 0o600


def test_pytest_kind_is_given_our_kind_and_kubectl_and_never_downloads(kind, tmp_path,
                                                                      monkeypatch):
    import requests

    def no_download(*args, **kwargs):
        raise AssertionError(f"pytest-kind tried to download {args}")

    monkeypatch.setattr(requests, "get", no_download)
    c = _cluster(kind, tmp_path)
    c.up()
    library = c._pytest_kind()
    assert Path(library.kind_path) == kind.binary
    assert Path(library.kubectl_path) == kind.kubectl
    assert Path(library.kubeconfig_path) == c.kubeconfig
    library.ensure_kind()
    library.ensure_kubectl()
    library.kind_path = tmp_path / "no-such-kind"
    with pytest.raises(ClusterError, match="never downloads kind"):
        library.ensure_kind()
    library.kubectl_path = tmp_path / "no-such-kubectl"
    with pytest.raises(ClusterError, match="never downloads kubectl"):
        library.ensure_kubectl()


def test_one_node_is_a_lone_control_plane(kind, tmp_path):
    _cluster(kind, tmp_path, nodes=1).up()
    config = yaml.safe_load((kind.state / "seen-config.yaml").read_text())
    assert config["nodes"] == [{"role": "control-plane"}]


def test_a_given_config_replaces_the_generated_one(kind, tmp_path):
    own = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
           "nodes": [{"role": "control-plane"}, {"role": "worker"}],
           "networking": {"disableDefaultCNI": True}}
    _cluster(kind, tmp_path, config=own).up()
    assert yaml.safe_load((kind.state / "seen-config.yaml").read_text()) == own
    as_file = tmp_path / "own.yaml"
    as_file.write_text(yaml.safe_dump(own))
    _cluster(kind, tmp_path, name="u", config=as_file).up()
    create = kind.calls()[-1]
    assert create[create.index("--config") + 1] == str(as_file)


def test_up_reuses_a_running_cluster_of_the_same_name(kind, tmp_path):
    kind.has_cluster("other", "t")
    c = _cluster(kind, tmp_path)
    c.up()
    assert kind.calls() == [["get", "clusters"], ["get", "kubeconfig", "--name", "t"]]
    assert kind.kubectl_calls() == []
    assert _kubeconfig_context(c.kubeconfig) == "kind-t"
    assert c.kubeconfig.stat().st_mode & 0o777 == 0o600


def test_a_kept_cluster_is_reused_by_the_next_run_then_deleted(kind, tmp_path):
    first = _cluster(kind, tmp_path, keep=True)
    first.up()
    first.teardown()
    assert kind.calls()[-1][:2] == ["create", "cluster"]
    second = _cluster(kind, tmp_path)
    second.up()
    assert kind.calls()[-2:] == [["get", "clusters"], ["get", "kubeconfig", "--name", "t"]]
    second.teardown()
    assert kind.calls()[-1][:3] == ["delete", "cluster", "--name=t"]
    assert second.clusters() == []


def test_teardown_deletes_the_cluster_and_its_state(kind, tmp_path):
    c = _cluster(kind, tmp_path)
    c.up()
    c.teardown()
    assert kind.calls()[-1] == ["delete", "cluster", "--name=t",
                                f"--kubeconfig={c.kubeconfig}"]
    assert not c.state_dir.exists()
    assert c.clusters() == []
    calls = len(kind.calls())
    c.teardown()  # twice is fine, and asks kind nothing more
    assert len(kind.calls()) == calls


def test_keep_skips_the_delete_and_keeps_the_kubeconfig(kind, tmp_path):
    c = _cluster(kind, tmp_path, keep=True)
    c.up()
    c.teardown()
    assert not any(call[0] == "delete" for call in kind.calls())
    assert c.kubeconfig.exists()


def test_context_manager_creates_then_deletes(kind, tmp_path):
    with _cluster(kind, tmp_path) as c:
        assert c.clusters() == ["t"]
    assert [call[0] for call in kind.calls()] == ["get", "get", "create", "get", "delete"]


def test_a_kept_cluster_is_removed_later_by_a_provider_that_never_ran_up(kind, tmp_path):
    kind.has_cluster("t")
    _cluster(kind, tmp_path).teardown()
    assert kind.calls() == [["delete", "cluster", "--name=t",
                             f"--kubeconfig={tmp_path / 'state' / 'kind-t' / 'kubeconfig'}"]]
    assert not (tmp_path / "state" / "kind-t").exists()


def test_load_image_from_docker_or_an_archive(kind, tmp_path):
    c = _cluster(kind, tmp_path)
    c.load_image("example.com/app:1")
    c.load_image("example.com/app:1", archive=tmp_path / "app.tar")
    assert kind.calls() == [
        ["load", "docker-image", "--name", "t", "example.com/app:1"],  # pytest-kind's order
        ["load", "image-archive", str(tmp_path / "app.tar"), "--name", "t"],
    ]


def test_export_logs(kind, tmp_path):
    dest = tmp_path / "logs" / "run-1"
    assert _cluster(kind, tmp_path).export_logs(dest) == dest
    assert kind.calls() == [["export", "logs", str(dest), "--name", "t"]]
    assert (dest / "kind-version.txt").exists()


def test_a_failed_create_names_the_command_the_problem_and_the_fix(kind, tmp_path):
    kind.fail("create", 'ERROR: failed to create cluster: node(s) already exist for a '
                        'cluster with the name "t"\n')
    with pytest.raises(ClusterError) as err:
        _cluster(kind, tmp_path).up()
    assert err.value.__cause__ is None and err.value.__context__ is not None
    assert not isinstance(err.value.__context__, __import__("subprocess").CalledProcessError)
    text = str(err.value)
    assert text.startswith("creating kind cluster 't': `kind create cluster --name=t ")
    assert f"--image={DEFAULT_NODE_IMAGE}" in text
    assert "failed (exit 1): ERROR: failed to create cluster: node(s) already exist" in text
    assert text.endswith("Fix: a kind cluster named 't' (or its leftover node containers) "
                         "already exists: delete it with `kind delete cluster --name t` and "
                         "run again")


@pytest.mark.parametrize("stderr, fix", [
    ("ERROR: failed to create cluster: failed to pull image "
     '"kindest/node:v1.37.0": exit status 1\n', "could not be pulled"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
     "daemon running?\n", "start it (`docker info` must work"),
])
def test_known_kind_failures_come_with_their_fix(kind, tmp_path, stderr, fix):
    kind.fail("create", stderr)
    with pytest.raises(ClusterError, match=re.escape(fix)):
        _cluster(kind, tmp_path).up()


def test_an_unknown_failure_with_another_kind_release_says_to_install_the_pin(kind, tmp_path):
    (kind.state / "version").write_text("kind v0.20.0 go1.20.4 linux/amd64")
    kind.fail("create", "ERROR: failed to create cluster: something odd\n")
    with pytest.raises(ClusterError) as err:
        _cluster(kind, tmp_path).up()
    assert "something odd. Fix: this kind is 'kind v0.20.0 go1.20.4 linux/amd64', the " \
           f"pinned node image is built for kind {KIND_VERSION}: install it" in str(err.value)
    # with the pinned release: how to keep the nodes kind removed, to look at them
    (kind.state / "version").write_text(f"kind {KIND_VERSION} go1.25.5 linux/amd64")
    with pytest.raises(ClusterError) as err:
        _cluster(kind, tmp_path, name="u").up()
    assert str(err.value).endswith(
        "ERROR: failed to create cluster: something odd. Fix: kind removed what it had "
        "made; to look at the nodes, run that command with `--retain`, then "
        "`kind export logs --name u`")


def test_create_never_loops_when_kind_leaves_no_kubeconfig(kind, tmp_path):
    # pytest-kind's create() deletes and re-creates while the kubeconfig is missing
    (kind.state / "quirk-no-kubeconfig").write_text("")
    with pytest.raises(ClusterError, match=r"succeeded but left no kubeconfig at .*stopped "
                                           r"instead of looping"):
        _cluster(kind, tmp_path).up()
    assert [c[:2] for c in kind.calls()].count(["create", "cluster"]) == 1


def test_nodes_that_never_get_ready_are_a_cluster_error_with_the_fix(kind, tmp_path):
    (kind.state / "fail-kubectl").write_text("error: timed out waiting for the condition "
                                             "on nodes/t-worker\n")
    with pytest.raises(ClusterError) as err:
        _cluster(kind, tmp_path).up()
    text = str(err.value)
    assert text.startswith("kind cluster 't' was created but its nodes were not Ready "
                           "within 120s: `kubectl wait")
    assert "timed out waiting for the condition on nodes/t-worker" in text
    assert "`kind export logs --name t`" in text


def test_pytest_kind_leaves_nothing_in_the_working_directory(kind, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    c = _cluster(kind, tmp_path)
    c.up()
    c.load_image("app:1")
    c.export_logs(c.state_dir / "logs")
    assert not (c.state_dir / ".pytest-kind").exists()
    c.teardown()
    kept = _cluster(kind, tmp_path, name="kept", keep=True)
    kept.up()
    kept.teardown()
    _cluster(kind, tmp_path, name="gone").teardown()  # never up: deletes by name
    assert os.getcwd() == str(cwd)
    assert list(cwd.iterdir()) == []
    assert kind.cwds() == {str(cwd)}  # kind itself ran where the user did
    assert sorted(p.name for p in kept.state_dir.iterdir()) == ["kind-config.yaml",
                                                                 "kubeconfig"]


@pytest.mark.parametrize("verb, call", [
    ("delete", lambda c: c.teardown()),
    ("load", lambda c: c.load_image("app:1")),
    ("load", lambda c: c.load_image("app:1", archive=c.state_dir / "app.tar")),
    ("export", lambda c: c.export_logs(c.state_dir / "logs")),
    ("get", lambda c: c.up()),
])
def test_every_kind_failure_is_a_cluster_error_with_stderr(kind, tmp_path, verb, call):
    kind.fail(verb, f"ERROR: {verb} went wrong\n")
    with pytest.raises(ClusterError, match=rf"`kind {verb} .*` failed \(exit 1\): "
                                           rf"ERROR: {verb} went wrong"):
        call(_cluster(kind, tmp_path))


def test_a_missing_kind_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match=r"go install sigs\.k8s\.io/kind@v0\.33\.0"):
        KindCluster("t", root=tmp_path).up()
    with pytest.raises(ClusterError, match="kind not found"):
        KindCluster("t", root=tmp_path, kind_binary=tmp_path / "nope").up()


def test_exec_goes_through_kubectl_with_the_clusters_kubeconfig(kind, tmp_path, monkeypatch):
    from clusters import kubectl_cluster

    seen = tmp_path / "kubectl-argv"
    fake = tmp_path / "bin" / "kubectl"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {seen}\necho hi\n")
    fake.chmod(0o755)
    monkeypatch.setattr(kubectl_cluster, "kubectl_binary", lambda: str(fake))
    c = _cluster(kind, tmp_path)
    r = c.exec("ns", "deploy/sleep", ["curl", "-sS", "http://x"])
    assert (r.exit_code, r.stdout) == (0, "hi\n")
    assert seen.read_text().splitlines() == [
        f"--kubeconfig={c.kubeconfig}", f"--cache-dir={c.state_dir / 'kubectl-cache'}",
        "exec", "-n", "ns", "deploy/sleep", "--", "curl", "-sS", "http://x"]


def test_at_least_one_node():
    with pytest.raises(ClusterError, match="at least one node"):
        KindCluster(nodes=0)


def test_a_hung_tool_times_out_with_the_command_named():
    with pytest.raises(ClusterError, match=r"`sleep 5` did not finish within 0.2s"):
        run_tool(["sleep", "5"], timeout=0.2)


# -- availability ---------------------------------------------------------------------


def _engine(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "bin" / "docker"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(0o755)
    return path


def test_available_without_kind_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = KindCluster.available()
    assert reason is not None
    assert "kind is not on PATH" in reason and "go install sigs.k8s.io/kind@v0.33.0" in reason


def test_available_without_a_docker_engine(kind, tmp_path):
    dead = _engine(tmp_path, """\
        echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2
        exit 1
        """)
    reason = KindCluster.available(kind_binary=kind.binary, engine_binary=dead)
    assert reason is not None
    assert reason.startswith("no Docker engine is running: kind needs one")
    assert "Cannot connect to the Docker daemon" in reason


def test_available_without_docker_at_all(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(kind.binary.parent))
    monkeypatch.delenv("KIND_EXPERIMENTAL_PROVIDER", raising=False)
    reason = KindCluster.available(kind_binary=kind.binary)
    assert reason == "docker is not on PATH: kind needs a Docker engine to run its nodes"


def test_available_with_kind_and_an_engine(kind, tmp_path):
    alive = _engine(tmp_path, "exit 0\n")
    assert KindCluster.available(kind_binary=kind.binary, engine_binary=alive) is None


def test_available_on_this_machine_gives_a_reason():
    reason = unavailable_reason("kind")
    if reason is None:
        pytest.skip("this machine has kind and a running Docker engine")
    assert "kind is not on PATH" in reason or "Docker engine" in reason, reason


# -- choosing a provider ----------------------------------------------------------------


def test_make_provider_by_name(tmp_path):
    from clusters.existing import ExistingCluster
    from clusters.local.provider import LocalCluster

    kind_cluster = make_provider("kind", name="k", nodes=3, root=tmp_path)
    assert isinstance(kind_cluster, KindCluster)
    assert (kind_cluster.name, kind_cluster.nodes) == ("k", 3)
    assert kind_cluster.kubeconfig == tmp_path / "kind-k" / "kubeconfig"
    local = make_provider("local", name="l", nodes=1, root=tmp_path)
    assert isinstance(local, LocalCluster)
    assert (local.name, local.nodes) == ("l", 1)
    existing = make_provider("existing", name="ignored", kubeconfig=tmp_path / "kc",
                             context="ctx")
    assert isinstance(existing, ExistingCluster)
    assert (existing.kubeconfig, existing.context) == (tmp_path / "kc", "ctx")


def test_an_unknown_provider_lists_the_known_ones():
    with pytest.raises(ClusterError, match="unknown cluster provider 'minikube': choose one "
                                           "of local, kind, existing"):
        make_provider("minikube", name="x")
    with pytest.raises(ClusterError, match="unknown cluster provider"):
        unavailable_reason("minikube")
    assert unavailable_reason("existing") is None
