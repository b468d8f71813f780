"""Container images as programs: what the local cluster runs for an image name.

The local cluster pulls nothing.  An image name maps either to an executable the
user named (``executables.py``: real components such as Istio's, run with the
image's files at their image paths), or to a program of this catalog:
Bookinfo's images to the project's Python Bookinfo, ``curlimages/curl`` to the
command given (so ``exec ... curl`` is the real curl), the cluster's own DNS
image to its DNS server.  Other projects add catalog images through the
``ambient_harness.images`` entry point group (the reference implementation
registers its one image, whose arguments pick the component, this way).  An image nobody
mapped or registered fails its pod the way a failed pull does.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .executables import HOW_TO_MAP, ImageExecutable, find

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def python_paths() -> tuple[str, ...]:
    """The folders of this machine a catalog program needs inside its container's
    root: the project and the Python installation running the cluster."""
    paths: list[str] = []
    for p in (PROJECT_ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)):
        real = str(p.resolve())
        if not any(real == q or real.startswith(q.rstrip("/") + "/") for q in paths):
            paths = [q for q in paths if not q.startswith(real.rstrip("/") + "/")] + [real]
    return tuple(paths)


@dataclass(frozen=True)
class Program:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # The image counts as started once these ports accept connections, as a real
    # container is not "running" before its runtime finished creating it.
    listens: tuple[int, ...] = ()


class UnknownImage(Exception):
    pass


Resolver = Callable[[re.Match[str], dict[str, Any]], Program]


def python_module(module: str, *args: str, listens: tuple[int, ...] = ()) -> Program:
    """A Python program of this project, run with the interpreter running the cluster."""
    return Program([sys.executable, "-m", module, *args],
                   {"PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}, listens)


def _as_given(default: list[str]) -> Resolver:
    """The container's command and args.  Without a command, the args run as the image's
    entrypoint runs them: curlimages/curl's ``entrypoint.sh`` runs its first argument
    when that is a program (``kubectl run -it --image=curlimages/curl -- sh``), and
    prepends the default (``curl``) when it is an option or not a program."""
    def resolve(match: re.Match[str], container: dict[str, Any]) -> Program:
        args = [str(a) for a in container.get("args") or ()]
        if container.get("command"):
            return Program([str(c) for c in container["command"]] + args)
        if args and not args[0].startswith("-") and shutil.which(args[0]) is not None:
            return Program(args)
        if not default and not args:
            raise UnknownImage("the image has no command to run; give the container a command")
        return Program(list(default) + args)
    return resolve


def _bookinfo(match: re.Match[str], container: dict[str, Any]) -> Program:
    service, version = match.group("svc"), match.group("ver")
    port = next((p.get("containerPort") for p in container.get("ports") or ()
                 if p.get("containerPort")), 9080)
    # The image's version, unless the pod's env sets SERVICE_VERSION (as an env var
    # overrides an image's ENV).
    own_version = any(e.get("name") == "SERVICE_VERSION" for e in container.get("env") or ())
    args = [service, *([] if own_version else ["--version", version]), "--port", str(port)]
    return python_module("clusters.local.images.bookinfo", *args, listens=(int(port),))


def _dns(match: re.Match[str], container: dict[str, Any]) -> Program:
    return python_module("clusters.local.images.dns", "--port", "53", "--health-port", "8080",
                         listens=(53,))


def _locust(match: re.Match[str], container: dict[str, Any]) -> Program:
    """The perf load generator (``perf.loadgen``): its agent by default, or, like fortio's
    image, the test server it ships (``args: [echo, ...]``); started once it listens."""
    args = [str(a) for a in container.get("args") or ()]
    port = int(args[args.index("--port") + 1]) if "--port" in args[:-1] else (
        8080 if args[:1] == ["echo"] else 8089)
    return python_module("perf.loadgen", *args, listens=(port,))


def _arg_after(args: list[str], flags: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg in flags:
            return args[i + 1]
    return None


def _httpbin(match: re.Match[str], container: dict[str, Any]) -> Program:
    """go-httpbin: ``-port N`` in the args, or ``PORT`` in the env, else 8080."""
    args = [str(a) for a in container.get("args") or ()]
    env_port = next((str(e.get("value")) for e in container.get("env") or ()
                     if e.get("name") == "PORT" and e.get("value")), None)
    port = int(_arg_after(args, ("-port", "--port")) or env_port or 8080)
    return python_module("clusters.local.images.samples.httpbin", "--port", str(port),
                         listens=(port,))


def _helloworld(match: re.Match[str], container: dict[str, Any]) -> Program:
    return python_module("clusters.local.images.samples.helloworld",
                         "--version", match.group("ver"), listens=(5000,))


def _tcp_echo(match: re.Match[str], container: dict[str, Any]) -> Program:
    """The image's ENTRYPOINT with the container's args (the image's CMD by default:
    ``9000 hello``)."""
    args = [str(a) for a in container.get("args") or ("9000", "hello")]
    ports = tuple(int(p) for p in args[0].split(",") if p.isdigit()) if args else ()
    return python_module("clusters.local.images.samples.tcp_echo", *args, listens=ports)


class ImageCatalog:
    def __init__(self, executables: list[ImageExecutable] | None = None) -> None:
        self._entries: list[tuple[re.Pattern[str], Resolver, str]] = []
        self.executables = list(executables or ())

    def register(self, pattern: str, resolver: Resolver, description: str) -> None:
        self._entries.append((re.compile(pattern), resolver, description))

    def register_module(self, pattern: str, module: str, *, listens: tuple[int, ...] = (),
                        args: tuple[str, ...] = (), description: str) -> None:
        """An image that runs a Python module with the cluster's interpreter (the way a
        separate distribution, installed beside the harness, plugs its images in)."""
        self.register(pattern, lambda _m, _c: python_module(module, *args, listens=listens),
                      description)

    def register_entrypoint(self, pattern: str, module: str, *, entrypoint: str,
                            listens: Mapping[str, tuple[int, ...]],
                            description: str) -> None:
        """An image whose entrypoint is a Python module taking the container's arguments,
        the first of them a command (the reference implementation's one image runs
        ``ambient-reference pilot|ztunnel|waypoint``).  ``listens`` says the ports each
        command serves once started.  A container ``command`` may name the entrypoint
        itself (Kubernetes' command replaces an image's ENTRYPOINT); any other command
        is a program this catalog does not have."""
        def resolve(_match: re.Match[str], container: dict[str, Any]) -> Program:
            command = [str(a) for a in container.get("command") or ()]
            if command and Path(command[0]).name != entrypoint:
                raise UnknownImage(
                    f"{description}: the container's command {command[0]!r} is not in the "
                    f"image (its entrypoint is {entrypoint!r}); give the command as args")
            argv = command[1:] + [str(a) for a in container.get("args") or ()]
            ports = listens.get(argv[0], ()) if argv else ()
            return python_module(module, *argv, listens=ports)
        self.register(pattern, resolve, description)

    def resolve(self, image: str, container: dict[str, Any]) -> Program | ImageExecutable:
        """The user's mapping first (in its order), then the catalog's images."""
        mapped = find(self.executables, image)
        if mapped is not None:
            return mapped
        for pattern, resolver, _ in self._entries:
            match = pattern.search(image)
            if match:
                return resolver(match, container)
        known = "; ".join(d for _, _, d in self._entries)
        mapping = "; ".join(e.image for e in self.executables) or "none"
        raise UnknownImage(
            f'image "{image}" is neither mapped to an executable (mapped: {mapping}) nor in '
            f"the local cluster's image catalog, so it cannot be pulled; {HOW_TO_MAP}. "
            f"Catalog images: {known}")

    def descriptions(self) -> list[str]:
        return [d for _, _, d in self._entries]


def default_catalog(executables: list[ImageExecutable] | None = None) -> ImageCatalog:
    catalog = ImageCatalog(executables)
    catalog.register(
        r"(^|/)examples-bookinfo-(?P<svc>productpage|details|reviews|ratings)-(?P<ver>v[\w-]+?)"
        r"(:[\w.\-]+)?(@sha256:[0-9a-f]+)?$",
        _bookinfo, "Bookinfo (examples-bookinfo-<service>-<version>, any registry and tag)")
    # Istio's other samples (samples/httpbin, samples/helloworld, samples/tcp-echo)
    catalog.register(r"(^|/)mccutchen/go-httpbin(:[\w.\-]+)?(@sha256:[0-9a-f]+)?$", _httpbin,
                     "mccutchen/go-httpbin (Istio's httpbin sample: the endpoints its tasks "
                     "use)")
    catalog.register(r"(^|/)examples-helloworld-(?P<ver>v\d+)(:[\w.\-]+)?"
                     r"(@sha256:[0-9a-f]+)?$", _helloworld,
                     "examples-helloworld-v1/-v2 (Istio's helloworld sample)")
    catalog.register(r"(^|/)tcp-echo-server(:[\w.\-]+)?(@sha256:[0-9a-f]+)?$", _tcp_echo,
                     "tcp-echo-server (Istio's tcp-echo sample)")
    catalog.register(r"(^|/)curlimages/curl(:[\w.\-]+)?(@sha256:[0-9a-f]+)?$",
                     _as_given(["curl"]), "curlimages/curl (runs the container's command)")
    catalog.register(r"(^|/)ambient-harness/cluster-dns(:[\w.\-]+)?$", _dns,
                     "ambient-harness/cluster-dns (the cluster's DNS)")
    catalog.register_module(r"(^|/)ambient-harness/bench-server(:[\w.\-]+)?$",
                            "clusters.local.images.benchserver", listens=(8080,),
                            description="ambient-harness/bench-server (1 KB HTTP responses)")
    catalog.register(r"(^|/)ambient-harness/locust(:[\w.\-]+)?$", _locust,
                     "ambient-harness/locust (perf load generator; args [echo] for its server)")
    catalog.register(r"(^|/)ambient-harness/hbone-probe(:[\w.\-]+)?$",
                     lambda _m, c: python_module("conformance.probes.hbone",
                                                 *(str(a) for a in c.get("args") or ())),
                     "ambient-harness/hbone-probe (the suite's HBONE client: runs once, "
                     "prints what the server did)")
    for ep in entry_points(group="ambient_harness.images"):
        register = ep.load()
        register(catalog)
    for spec in filter(None, os.environ.get(PLUGINS_ENV, "").split(",")):
        _load_plugin(spec.strip())(catalog)
    return catalog


# More image registrations without packaging, as ``module:function`` pairs separated by
# commas: the suite's self-test runs deliberately broken components this way, and a
# developer can try a build of their own before packaging it.
PLUGINS_ENV = "AMBIENT_HARNESS_IMAGE_PLUGINS"


def _load_plugin(spec: str) -> Callable[[ImageCatalog], None]:
    import importlib

    module, _, function = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), function or "register")
    except (ImportError, AttributeError) as exc:
        raise UnknownImage(f"{PLUGINS_ENV}: cannot load {spec!r} ({exc}); give "
                           "module:function of an importable image registration") from None
