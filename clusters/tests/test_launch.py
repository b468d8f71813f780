"""What a container runs and which binds make its root: Kubernetes' command rules
over an image's entrypoint and cmd, volume mounts, the automounted token."""

from __future__ import annotations

import pwd
import re

import pytest

from clusters.local.images.catalog import Program, python_paths
from clusters.local.images.executables import ImageExecutable
from clusters.local.node import launch
from clusters.local.node.volumes import SA_MOUNT, SA_VOLUME, Volume


@pytest.fixture
def image(tmp_path):
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    return ImageExecutable("example.com/tool", {"/usr/local/bin/tool": str(exe)},
                           entrypoint=["/usr/local/bin/tool", "--serve"], cmd=["--port", "80"],
                           working_dir="/srv")


@pytest.mark.parametrize("container, argv", [
    ({}, ["/usr/local/bin/tool", "--serve", "--port", "80"]),
    ({"args": ["--port", "$(PORT)"]}, ["/usr/local/bin/tool", "--serve", "--port", "8080"]),
    ({"command": ["tool"]}, ["tool"]),                           # cmd dropped too
    ({"command": ["sh", "-c"], "args": ["echo $(PORT) $$(PORT)"]},
     ["sh", "-c", "echo 8080 $(PORT)"]),
])
def test_command_and_args_over_entrypoint_and_cmd(image, container, argv):
    assert launch.argv(image, container, {"PORT": "8080"}) == argv


def test_nothing_to_run_cannot_be_created():
    with pytest.raises(launch.LaunchError, match="no command specified"):
        launch.argv(Program([]), {}, {})


def test_catalog_programs_keep_their_argv_unless_the_command_differs():
    program = Program(["/usr/bin/python3", "-m", "x"])
    assert launch.argv(program, {}, {}) == ["/usr/bin/python3", "-m", "x"]
    assert launch.argv(program, {"command": ["sleep"], "args": ["9"]}, {}) == ["sleep", "9"]


def test_base_env_from_the_image_config(image):
    env = launch.base_env(image, "pod-a", {"KUBERNETES_SERVICE_HOST": "198.19.0.1"}, "/agent")
    assert env["PATH"] == image.path and env["HOSTNAME"] == "pod-a" and env["HOME"] == "/root"
    assert env["KUBERNETES_SERVICE_HOST"] == "198.19.0.1"
    assert launch.base_env(Program(["p"]), "pod-a", {}, "/agent")["PATH"] == "/agent"


FILES = launch.PodFiles("/pod/etc/hosts", "/pod/etc/hostname", "/pod/etc/resolv.conf")


def _spec(image, container, volumes):
    return launch.root_spec(image, container, {"SUB": "s1"}, volumes, FILES, "/pod/term",
                            "/pod/scratch", netns="/run/netns/pod-1", hostname="pod-a")


def test_root_binds_parents_first_with_image_files_read_only(image):
    volumes = {"cfg": Volume("/pod/volumes/cfg", readonly=True),
               "tmp": Volume("/pod/volumes/tmp", writable_kind=True),
               "host": Volume("/node/root/opt/cni/bin", writable_kind=True),
               SA_VOLUME: Volume("/pod/volumes/sa", readonly=True)}
    container = {"volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/istio/config"},
        {"name": "host", "mountPath": "/host/opt/cni/bin", "readOnly": True},
        {"name": "tmp", "mountPath": "/usr/local"}]}
    spec = _spec(image, container, volumes)
    targets = [b.target for b in spec.binds]
    assert targets.index("/usr/local") < targets.index("/usr/local/bin/tool")  # not hidden
    by_target = {b.target: b for b in spec.binds}
    assert by_target["/etc/istio/config"].readonly          # configMap: always read-only
    assert by_target["/host/opt/cni/bin"].readonly           # readOnly: true
    assert not by_target["/usr/local"].readonly
    assert by_target["/usr/local/bin/tool"].readonly
    assert by_target[SA_MOUNT].source == "/pod/volumes/sa"
    assert by_target["/etc/resolv.conf"].source == FILES.resolv_conf
    assert by_target["/dev/termination-log"].source == "/pod/term"
    assert spec.workdir == "/srv" and spec.hostname == "pod-a"
    assert spec.netns == "/run/netns/pod-1"
    assert not set(python_paths()) & set(targets)  # a real image gets no project


def test_catalog_programs_get_the_project_and_python_over_any_volume():
    volumes = {"scratch": Volume("/pod/volumes/scratch", writable_kind=True)}
    paths = python_paths()
    container = {"volumeMounts": [{"name": "scratch", "mountPath": paths[0]}]}
    spec = _spec(Program(["p"]), container, volumes)
    at_project = [b.source for b in spec.binds if b.target == paths[0]]
    assert at_project == ["/pod/volumes/scratch", paths[0]]  # the program's bind on top


def test_token_not_automounted_over_a_mount_of_its_own(image):
    volumes = {"mine": Volume("/pod/volumes/mine", readonly=True),
               SA_VOLUME: Volume("/pod/volumes/sa", readonly=True)}
    spec = _spec(image, {"volumeMounts": [{"name": "mine", "mountPath": SA_MOUNT}]}, volumes)
    assert [b.source for b in spec.binds if b.target == SA_MOUNT] == ["/pod/volumes/mine"]


def test_sub_paths(image, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    volumes = {"data": Volume(str(vol), writable_kind=True),
               "cfg": Volume(str(tmp_path), readonly=True)}
    spec = _spec(image, {"volumeMounts": [
        {"name": "data", "mountPath": "/a", "subPathExpr": "$(SUB)/x"},
        {"name": "data", "mountPath": "/b", "subPath": "plain"}]}, volumes)
    sources = {b.target: b.source for b in spec.binds}
    assert sources["/a"] == str(vol / "s1" / "x") and (vol / "s1" / "x").is_dir()
    assert sources["/b"] == str(vol / "plain")
    with pytest.raises(launch.LaunchError, match="must be a relative path inside"):
        _spec(image, {"volumeMounts": [{"name": "data", "mountPath": "/c",
                                        "subPath": "../../etc"}]}, volumes)
    with pytest.raises(launch.LaunchError, match="does not exist in volume cfg"):
        _spec(image, {"volumeMounts": [{"name": "cfg", "mountPath": "/c",
                                        "subPath": "missing"}]}, volumes)
    with pytest.raises(launch.LaunchError, match="names no volume"):
        _spec(image, {"volumeMounts": [{"name": "nope", "mountPath": "/c"}]}, volumes)


def _passwd_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0


@pytest.mark.parametrize("pod_ctx, ctx, image_user, expected", [
    ({}, {}, "", None),  # root: the catalog's images and a mapped image without USER
    ({}, {}, "1337:1337", (1337, 1337, ())),  # Dockerfile.pilot's USER
    ({"runAsNonRoot": True}, {}, "1337:1337", (1337, 1337, ())),  # istiod's pod
    # containerd: a runAsUser replaces the image's user and group; the group is then
    # the uid's in the image's /etc/passwd, else 0
    ({}, {"runAsUser": 1000}, "1337:1337", (1000, _passwd_gid(1000), ())),
    ({}, {"runAsUser": 1000, "runAsGroup": 5}, "1337", (1000, 5, ())),
    ({"supplementalGroups": [7]}, {}, "root", (0, 0, (7,))),
    ({}, {}, "0:0", None),
])
def test_the_user_is_the_security_context_over_the_images(pod_ctx, ctx, image_user,
                                                           expected):
    user = launch.run_as({"securityContext": pod_ctx}, {"securityContext": ctx}, image_user)
    assert (user and (user.uid, user.gid, user.groups)) == expected


@pytest.mark.parametrize("ctx, image_user, message", [
    ({"runAsNonRoot": True}, "", "container has runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, "0", "container has runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True, "runAsUser": 0}, "1337",
     "container's runAsUser breaks non-root policy"),
    ({"runAsNonRoot": True}, "nobody",
     "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify "
     "user is non-root"),
])
def test_run_as_non_root_is_checked_as_the_kubelet_checks_it(ctx, image_user, message):
    """pkg/kubelet/kuberuntime/security_context_others.go, verifyRunAsNonRoot."""
    with pytest.raises(launch.ConfigError, match=re.escape(message)):
        launch.run_as({}, {"securityContext": ctx}, image_user)
