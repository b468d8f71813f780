"""What the project's images add to their base, measured without a container engine.

``./run image-sizes``.  No Docker engine runs on the machines this project is built
on, so the images are never built there; their sizes are computed from the layers'
contents instead:

- the Python layer: the image's ``pip install`` done for real with this machine's
  Python 3.11 on x86-64 (the wheels the image's pip picks on amd64), into a folder
  whose files are then summed (pip compiles .pyc files there as it does in the image);
- the Debian layer: the ``Installed-Size`` Debian declares for each package the
  Dockerfile installs and every package they depend on, less Debian's minbase (the
  packages of priority ``required`` and their dependencies, in every Debian image); an
  upper bound, since the Python base image holds a few more of them.

The base image (``python:3.11-slim-bookworm``) is not measured: no registry is
reachable here.  Packages are fetched from PyPI through pip's cache.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: Path
    context: Path


IMAGES = (
    Image("ambient-reference/ambient", REPO / "reference-impl" / "Dockerfile",
          REPO / "reference-impl"),
    Image("ambient-harness/locust", REPO / "perf" / "loadgen" / "Dockerfile", REPO),
)


@dataclass(frozen=True)
class Installs:
    """What a Dockerfile's RUN instructions install, read from the file itself."""

    pip: list[list[str]]  # each pip install's arguments
    debian: list[str]


def read_installs(dockerfile: Path) -> Installs:
    from dockerfile_parse import DockerfileParser

    pip_runs, debian = [], []
    for instruction in DockerfileParser(path=str(dockerfile)).structure:
        if instruction["instruction"] != "RUN":
            continue
        for command in instruction["value"].split("&&"):
            words = command.split()
            if words[:2] == ["pip", "install"]:
                pip_runs.append([w for w in words[2:] if w != "--no-cache-dir"])
            elif words[:2] == ["apt-get", "install"]:
                debian += [w for w in words[2:] if not w.startswith("-")]
    return Installs(pip_runs, debian)


def files_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                   check=True)


def python_layer(image: Image, installs: Installs, work: Path) -> int:
    """Bytes of the files the Dockerfile's pip installs put in the image.  The build
    context's ``/src`` is the context folder; the load generator's holds only what its
    .dockerignore lets in (pyproject.toml, README.md, perf/ without tests)."""
    source = image.context
    if image.context == REPO:
        source = work / "context"
        source.mkdir()
        shutil.copy(REPO / "pyproject.toml", source)
        shutil.copy(REPO / "README.md", source)
        shutil.copytree(REPO / "perf", source / "perf", ignore=shutil.ignore_patterns(
            "tests", "scale", "__pycache__"))
    target = work / "site"
    for args in installs.pip:
        pip("install", "--target", str(target),
            *(str(source) if a == "/src" else a for a in args))
    return files_size(target)


def _index() -> dict[str, dict[str, str]]:
    """Debian's package index on this machine: each package's first stanza."""
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True,
                         check=True).stdout
    index: dict[str, dict[str, str]] = {}
    for stanza in out.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if "Package" in fields:
            index.setdefault(fields["Package"], fields)
    return index


def _closure(packages: list[str]) -> set[str]:
    """The packages and everything they depend on (Depends, Pre-Depends)."""
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                          "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                          "--no-enhances", *packages], capture_output=True, text=True,
                         check=True).stdout
    return {line.strip() for line in out.splitlines()
            if line and not line.startswith((" ", "<"))}


def debian_layer(packages: list[str]) -> tuple[int, list[str]]:
    """Bytes Debian declares installed for ``packages`` and their dependencies, less
    what every Debian image holds (the slim images are debootstrap's minbase: the
    packages of priority ``required`` and their dependencies), and the packages
    counted.  An upper bound: the Python base image adds a few packages of its own."""
    if not packages:
        return 0, []
    index = _index()
    base = _closure(sorted(n for n, f in index.items() if f.get("Priority") == "required"))
    counted = sorted(_closure(packages) - base)
    kib = sum(int(index.get(n, {}).get("Installed-Size", 0)) for n in counted)
    return kib * 1024, counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run image-sizes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    if shutil.which("apt-cache") is None:
        print("image-sizes: apt-cache not found: the Debian layer is computed from Debian's "
              "package index; run on Debian", file=sys.stderr)
        return 2
    print(f"{'image':28} {'python layer':>13} {'debian layer':>13}  (base image not included)")
    for image in IMAGES:
        installs = read_installs(image.dockerfile)
        with tempfile.TemporaryDirectory(prefix="image-sizes-") as tmp:
            print(f"{image.name}: installing as {image.dockerfile.relative_to(REPO)} does ...",
                  file=sys.stderr, flush=True)
            python = python_layer(image, installs, Path(tmp))
        debian, counted = debian_layer(installs.debian)
        print(f"{image.name:28} {python / 1e6:>10.1f} MB {debian / 1e6:>10.1f} MB"
              + (f"  (Debian: {', '.join(counted)})" if counted else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
