"""The load generator's image (``perf/loadgen/Dockerfile``), checked without Docker.

No container engine runs where these tests run.  What is checked instead: the
Dockerfile's instructions (dockerfile-parse), that the packages it installs are the
versions the harness pins, that everything ``perf.loadgen`` imports is in the image
(the perf package, the standard library, and the libraries the Dockerfile installs),
and, by building the wheel from exactly the files the build context lets in and
importing the load generator from it, that the image's ``pip install`` yields a
working program.
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
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOADGEN = ROOT / "perf" / "loadgen"
DOCKERFILE = LOADGEN / "Dockerfile"
IGNORE = LOADGEN / "Dockerfile.dockerignore"
# What the build context holds (Dockerfile.dockerignore lets in only these).
CONTEXT = ("pyproject.toml", "README.md", "perf")
LEFT_OUT = ("perf/tests", "perf/scale")
# Libraries the installed ones bring along (locust depends on gevent).
BROUGHT_ALONG = {"gevent": "locust"}


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def _pip_installs(parser: DockerfileParser) -> dict[str, str]:
    """Each ``name==version`` the RUN instructions give pip."""
    pins = {}
    for run in _instructions(parser, "RUN"):
        for word in run.split():
            if "==" in word:
                req = Requirement(word)
                pins[req.name.lower()] = str(req.specifier)
    return pins


def test_pip_installs_the_versions_the_harness_pins(dockerfile):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["perf"]]:
        req = Requirement(spec)
        pinned[req.name.lower()] = str(req.specifier)
    installs = _pip_installs(dockerfile)
    assert installs, "the Dockerfile installs no pinned library"
    for name, version in installs.items():
        assert pinned.get(name) == version, f"{name}{version}: pyproject pins {pinned.get(name)}"


def test_the_context_lets_in_what_the_build_copies(dockerfile):
    ignore = [line.strip() for line in IGNORE.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the context must start empty and let files in by name"
    for copy in _instructions(dockerfile, "COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert f"!{source}" in ignore, f"COPY {source}: the .dockerignore keeps it out"
    assert set(CONTEXT) == {s.lstrip("!") for s in ignore if s.startswith("!")}


def test_the_entrypoint_runs_the_load_generator(dockerfile):
    [entrypoint] = _instructions(dockerfile, "ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["python", "-m", "perf.loadgen"]
    assert (LOADGEN / "__main__.py").is_file()


def _module_file(name: str) -> Path | None:
    """The project file defining module ``name``, or None (not a module of the project:
    a name imported from one, or another distribution's)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(module: str, path: Path) -> set[str]:
    """Every module name an import statement of ``path`` may load, parents included
    (importing ``a.b`` runs ``a`` first), relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {".".join(n.split(".")[:i]) for n in names if n
            for i in range(1, n.count(".") + 2)}


def test_everything_the_load_generator_imports_is_in_the_image(dockerfile):
    """Follow the imports of ``python -m perf.loadgen`` through the project: every
    module reached is in the context, and every library is the standard library's or
    installed by the Dockerfile."""
    libraries = set(_pip_installs(dockerfile)) | set(BROUGHT_ALONG)
    seen, todo, outside = set(), ["perf.loadgen.__main__"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        assert path is not None, module
        assert not any(str(path.relative_to(ROOT)).startswith(p) for p in LEFT_OUT), path
        for name in _imported(module, path):
            top = name.split(".")[0]
            if top == "perf":
                if _module_file(name) is not None:
                    todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    assert {"perf.loadgen.worker", "perf.plan"} <= seen, "the scan missed the worker"
    assert outside <= libraries, f"not in the image: {sorted(outside - libraries)}"


@pytest.mark.slow
def test_the_wheel_built_from_the_context_runs_the_load_generator(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", *(Path(p).name for p in LEFT_OUT)))
        else:
            shutil.copy(source, context / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"),
                    str(context)], check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-compile", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # (and bin/, the harness's console script, unused in the image)
    assert {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")} <= {
        "perf", "bin"}
    code = ("import perf, perf.loadgen.agent, perf.loadgen.echo, perf.loadgen.worker; "
            "print(perf.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(site)), "imported the source tree, not the wheel"
    bad = subprocess.run([sys.executable, "-m", "perf.loadgen", "bogus"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert bad.returncode != 0 and "agent, worker or echo" in bad.stderr
