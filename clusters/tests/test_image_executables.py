"""Images mapped to executables: references normalised as runtimes do, patterns,
the three ways to give a mapping, and the messages for bad input."""

from __future__ import annotations

import json

import pytest

from clusters.local.images import executables as ex
from clusters.local.images.catalog import UnknownImage, default_catalog


@pytest.fixture
def exe(tmp_path):
    path = tmp_path / "ztunnel"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("given, full", [
    ("istio/ztunnel:1.2", "docker.io/istio/ztunnel:1.2"),
    ("docker.io/istio/ztunnel:1.2", "docker.io/istio/ztunnel:1.2"),
    ("index.docker.io/istio/ztunnel:1.2", "docker.io/istio/ztunnel:1.2"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("gcr.io/istio-release/pilot:1.24.0", "gcr.io/istio-release/pilot:1.24.0"),
    ("localhost:5000/ztunnel", "localhost:5000/ztunnel:latest"),
    ("istio/ztunnel@sha256:" + "a" * 64, "docker.io/istio/ztunnel@sha256:" + "a" * 64),
    ("istio/ztunnel:1.2@sha256:" + "b" * 64, "docker.io/istio/ztunnel:1.2@sha256:" + "b" * 64),
])
def test_references_are_normalised_as_runtimes_do(given, full):
    assert str(ex.normalize(given)) == full


@pytest.mark.parametrize("pattern, image, matches", [
    ("istio/ztunnel", "docker.io/istio/ztunnel:1.24.0", True),
    ("istio/ztunnel", "istio/ztunnel", True),                       # :latest
    ("istio/ztunnel", "istio/ztunnel@sha256:" + "c" * 64, True),
    ("docker.io/istio/ztunnel", "istio/ztunnel:1.2", True),
    ("istio/ztunnel", "gcr.io/istio/ztunnel:1.2", False),           # another registry
    ("istio/ztunnel", "istio/ztunnel-debug:1.2", False),
    ("istio/ztunnel:1.2*", "istio/ztunnel:1.24.0", True),
    ("istio/ztunnel:1.2*", "istio/ztunnel:1.3.0", False),
    ("istio/ztunnel:1.2", "istio/ztunnel:1.2@sha256:" + "d" * 64, True),
    ("*/ztunnel", "gcr.io/istio-release/ztunnel:1.2", True),        # any registry
    ("*/ztunnel", "docker.io/istio/ztunnel", True),
    ("istio/*", "istio/pilot:1.2", True),
    ("istio/*", "other/pilot:1.2", False),
])
def test_patterns(pattern, image, matches):
    assert ex.Pattern(pattern).matches(image) is matches


def test_simple_form_places_the_executable_in_usr_local_bin(exe):
    [entry] = ex.parse([f"istio/ztunnel={exe}"])
    assert entry.files == {"/usr/local/bin/ztunnel": str(exe)}
    assert entry.entrypoint == ["/usr/local/bin/ztunnel"] and entry.cmd == []
    assert entry.path == ex.DEFAULT_PATH


def test_file_form_with_several_files(tmp_path, exe):
    plugin = tmp_path / "istio-cni"
    plugin.write_text("#!/bin/sh\n")
    mapping = tmp_path / "images.yaml"
    mapping.write_text(
        "images:\n"
        "- image: istio/install-cni\n"
        "  files:\n"
        f"    /usr/local/bin/install-cni: {exe}\n"
        "    /opt/cni/bin/istio-cni: istio-cni\n"      # relative to the file
        "  cmd: [/usr/local/bin/install-cni]\n"
        "  workingDir: /opt/cni/bin\n"
        "  env: {PATH: /usr/bin:/opt/cni/bin}\n")
    [entry] = ex.parse([str(mapping)])
    assert entry.files == {"/usr/local/bin/install-cni": str(exe),
                           "/opt/cni/bin/istio-cni": str(plugin)}
    assert entry.cmd == ["/usr/local/bin/install-cni"] and entry.entrypoint == []
    assert entry.working_dir == "/opt/cni/bin" and entry.path == "/usr/bin:/opt/cni/bin"
    # JSON is YAML too; a bare list works as well as 'images:'
    as_json = tmp_path / "images.json"
    as_json.write_text(json.dumps([{"image": "istio/pilot", "files": {"/bin/pilot": str(exe)},
                                    "entrypoint": ["/bin/pilot"]}]))
    assert ex.parse([as_json])[0].image == "istio/pilot"


def test_dicts_and_the_environment_variable(exe):
    [a] = ex.parse({"istio/ztunnel": str(exe)})
    assert a.entrypoint == ["/usr/local/bin/ztunnel"]
    [b] = ex.parse([{"image": "istio/pilot", "files": {"/p": str(exe)}, "cmd": ["/p"]}])
    assert b.cmd == ["/p"]
    entries = ex.from_environment({ex.ENV_VAR: f"istio/ztunnel={exe}, istio/pilot:*={exe}"})
    assert [e.image for e in entries] == ["istio/ztunnel", "istio/pilot:*"]


def test_dump_and_load_keep_every_field(tmp_path, exe):
    entries = ex.parse([{"image": "istio/install-cni", "files": {"/x": str(exe)},
                         "entrypoint": ["/x"], "cmd": ["-v"], "env": {"A": "1"},
                         "workingDir": "/w"}])
    ex.dump(entries, tmp_path / "m.json")
    assert ex.load(tmp_path / "m.json") == entries


@pytest.mark.parametrize("item, says", [
    ("istio/ztunnel=/no/such/exe", "/no/such/exe (for image 'istio/ztunnel') is not an "
                                   "executable file"),
    ("/no/such/mapping.yaml", "neither IMAGE=/path/to/executable nor a YAML/JSON file"),
    ("Not A Reference=/bin/sh", "is not an image reference"),
])
def test_bad_items_say_what_is_wrong(item, says):
    with pytest.raises(ex.MappingError, match=None) as info:
        ex.parse([item])
    assert says in str(info.value)


def test_bad_file_entries_say_what_is_wrong(tmp_path, exe):
    cases = {
        "- {image: a/b, files: {/x: " + str(exe) + "}, entrypoint: /x}": "must be a list",
        "- {image: a/b, files: {/x: " + str(exe) + "}, entrypiont: [/x]}": "unknown field",
        "- {image: a/b, files: {x: " + str(exe) + "}, entrypoint: [/x]}": "must be absolute",
        "- {image: a/b, files: {/x: " + str(exe) + "}}": "neither entrypoint nor cmd",
        "- {image: a/b, files: {/x: missing}, entrypoint: [/x]}": "does not exist",
        "- {image: a/b, files: {/x: " + str(exe) + "}, entrypoint: [/x], user: 'a b'}":
            "must be a Dockerfile USER",
        "images: 3": "expected a list of images",
    }
    for text, says in cases.items():
        f = tmp_path / "bad.yaml"
        f.write_text(text)
        with pytest.raises(ex.MappingError) as info:
            ex.parse([f])
        assert says in str(info.value) and str(f) in str(info.value), text


def test_the_mapping_comes_before_the_catalog_and_an_unknown_image_names_the_ways(exe):
    catalog = default_catalog(ex.parse([f"*/curlimages/curl={exe}"]))
    assert isinstance(catalog.resolve("curlimages/curl:8.1", {}), ex.ImageExecutable)
    with pytest.raises(UnknownImage) as info:
        catalog.resolve("example.com/nothing:1", {})
    message = str(info.value)
    for needed in ("--image-exec", ex.ENV_VAR, "LocalCluster(image_executables=",
                   "image catalog", "*/curlimages/curl"):
        assert needed in message


def test_a_bad_mapping_stops_the_cluster_before_it_starts(tmp_path, monkeypatch):
    from clusters.local.provider import LocalCluster
    from clusters.provider import ClusterError

    cluster = LocalCluster("bad-mapping", root=tmp_path,
                           image_executables=["istio/ztunnel=/no/such/ztunnel"])
    with pytest.raises(ClusterError, match=r"--image-exec / image_executables: /no/such/ztunnel"):
        cluster.up()
    monkeypatch.setenv(ex.ENV_VAR, "bad ref=/bin/sh")
    with pytest.raises(ClusterError, match=f"{ex.ENV_VAR}: 'bad ref' is not an image"):
        LocalCluster("bad-mapping", root=tmp_path).up()
    assert list(tmp_path.iterdir()) == []


def test_an_entrypoint_image_runs_the_command_its_arguments_name():
    # The reference implementation's one image (registered through its entry point):
    # the container's args pick the component, and the start waits for its ports.
    catalog = default_catalog()
    pilot = catalog.resolve("ambient-reference/ambient:0.1.0", {"args": ["pilot"]})
    assert pilot.argv[-3:] == ["-m", "ambient_ref", "pilot"] and pilot.listens == (15012,)
    waypoint = catalog.resolve("registry.example/ambient-reference/ambient:dev",
                               {"command": ["ambient-reference"], "args": ["waypoint", "-v"]})
    assert waypoint.argv[-3:] == ["ambient_ref", "waypoint", "-v"]
    assert waypoint.listens == (15021,)
    # no component: the entrypoint runs and fails with its usage, as the image would
    bare = catalog.resolve("ambient-reference/ambient:0.1.0", {})
    assert bare.argv[-2:] == ["-m", "ambient_ref"] and bare.listens == ()
    with pytest.raises(UnknownImage, match=r"command 'sh' is not in the image.*as args"):
        catalog.resolve("ambient-reference/ambient:0.1.0", {"command": ["sh", "-c", "x"]})


def test_the_images_user_is_kept_for_the_node_agents(tmp_path, exe):
    f = tmp_path / "images.yaml"
    f.write_text("- {image: istio/pilot, files: {/x: " + str(exe) + "}, entrypoint: [/x], "
                 "user: '1337:1337'}")
    (entry,) = ex.parse([f])
    assert entry.user == "1337:1337"
    ex.dump([entry], tmp_path / "images.json")
    assert ex.load(tmp_path / "images.json")[0].user == "1337:1337"
