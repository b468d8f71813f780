"""The reference implementation's one image (``Dockerfile``), checked without Docker.

No container engine runs where these tests run, so the image is never built here.
What is checked instead: the Dockerfile's instructions (read by dockerfile-parse),
that its base and packages provide every program the components run, that the
manifests name the image and a component in each container, and, by building and
installing this distribution's wheel the way the image's ``pip install`` does, that
the entrypoint it declares runs every component.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from ambient_ref import cli, images
from ambient_ref.xds.waypoints import Waypoint, waypoint_manifests
from ambient_ref.ztunnel import capture

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ambient_ref"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def _instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def test_the_base_is_a_python_the_distribution_supports(dockerfile):
    # FROM names the build argument, whose default is a Python image of the version
    # pyproject requires at least (>=3.11).
    assert _instructions(dockerfile, "FROM") == ["${PYTHON_IMAGE}"]
    [arg] = _instructions(dockerfile, "ARG")
    name, _, default = arg.partition("=")
    assert name == "PYTHON_IMAGE"
    assert default.startswith("python:3.11-slim")
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_build_copies_only_what_exists_and_installs_it(dockerfile):
    for copy in _instructions(dockerfile, "COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in {ROOT}"
    assert any("pip install" in run and "/src" in run for run in _instructions(dockerfile, "RUN"))


def test_the_entrypoint_is_the_console_script_the_distribution_declares(dockerfile):
    [entrypoint] = _instructions(dockerfile, "ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == [images.ENTRYPOINT]
    assert PYPROJECT["project"]["scripts"][images.ENTRYPOINT] == "ambient_ref.cli:main"


def _calls_run_in_pod(tree: ast.AST) -> list[str]:
    """The program named by each ``run_in_pod(netns, "<program>", ...)`` call."""
    found = []
    for node in ast.walk(tree):
        name = getattr(node, "func", None)
        name = getattr(name, "attr", getattr(name, "id", None))
        if (isinstance(node, ast.Call) and name == "run_in_pod" and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)):
            found.append(node.args[1].value)
    return found


def test_every_program_the_ztunnel_runs_is_declared():
    used = set()
    for source in PACKAGE.rglob("*.py"):
        used.update(_calls_run_in_pod(ast.parse(source.read_text())))
    assert used, "no run_in_pod call found: the scan is broken"
    assert used | {"nsenter"} <= set(capture.COMMANDS)


def _debian_package(program: str) -> tuple[str, str]:
    """The Debian package providing ``program`` on this machine, and its priority
    (``required`` ones are in every Debian image, the slim Python images included)."""
    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{program} is not installed here (./run installs it)")
    candidates = [path, os.path.realpath(path)]
    candidates += [c.removeprefix("/usr") for c in candidates]  # usr-merged paths
    for candidate in candidates:
        out = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            package = out.stdout.split(":", 1)[0]
            priority = subprocess.run(["dpkg-query", "-W", "-f=${Priority}", package],
                                      capture_output=True, text=True, check=True).stdout
            return package, priority
    raise AssertionError(f"no Debian package owns {program} ({', '.join(candidates)})")


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system: no dpkg")
def test_the_image_holds_every_program_the_ztunnel_runs(dockerfile):
    installs = " ".join(r for r in _instructions(dockerfile, "RUN") if "apt-get install" in r)
    for program in capture.COMMANDS:
        package, priority = _debian_package(program)
        assert package in installs.split() or priority == "required", (
            f"{program} comes from {package} ({priority}), which the Dockerfile does not "
            "install")


def test_the_manifests_run_the_image_with_a_component_each():
    version = PYPROJECT["project"]["version"]
    docs = [d for d in yaml.safe_load_all((PACKAGE / "manifests" / "install.yaml").read_text())
            if d and d["kind"] in ("Deployment", "DaemonSet")]
    waypoint = next(d for d in waypoint_manifests(Waypoint(
        gateway="waypoint", namespace="default", flavour="istio-waypoint",
        waypoint_for="service", deployment="waypoint")) if d["kind"] == "Deployment")
    for doc in [*docs, waypoint]:
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == f"{images.IMAGE}:{version}", doc["metadata"]["name"]
            assert container["args"][0] in cli.COMPONENTS, doc["metadata"]["name"]
    assert set(images.LISTENS) == set(cli.COMPONENTS)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """This distribution installed as the image installs it (``pip install /src``),
    from its wheel into a folder of its own."""
    work = tmp_path_factory.mktemp("image")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (work / "dist").glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-compile", "--target", str(work / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return work / "site"


def _entrypoint(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The console script pip wrote, run with the installed copy first on the path
    # (its dependencies come from this interpreter, as the image's pip installs them).
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, str(site / "bin" / images.ENTRYPOINT), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.slow
def test_the_installed_entrypoint_runs_every_component(installed):
    assert (installed / "ambient_ref" / "manifests" / "install.yaml").is_file()
    usage = _entrypoint(installed, "--help")
    assert usage.returncode == 0 and all(c in usage.stdout for c in cli.COMPONENTS)
    for component in cli.COMPONENTS:
        out = _entrypoint(installed, component, "--help")
        assert out.returncode == 0, out.stderr
        assert f"usage: {images.ENTRYPOINT} {component}" in out.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import ambient_ref; print(ambient_ref.__file__)"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(installed)}).stdout
    assert where.startswith(str(installed)), "the test ran the source tree, not the wheel"


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), ("sidecar",)])
def test_the_entrypoint_without_a_known_component_says_which_exist(installed, args):
    out = _entrypoint(installed, *args)
    assert out.returncode == 2
    assert "pilot" in out.stderr and "ztunnel" in out.stderr and "waypoint" in out.stderr
