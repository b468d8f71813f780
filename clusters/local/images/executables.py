"""Images mapped to executables on this machine: how real components run as pods.

The local cluster pulls nothing.  A user maps image references to files of this
machine instead, and the node agent runs such a container as a runtime would: the
image's files appear at their image paths inside the container's root, and the
pod's ``command``/``args`` or the image's entrypoint and cmd are run there.

Three ways to give the mapping (all end up here): ``--image-exec`` on
``python -m clusters.local up`` and on the conformance suite, the
``AMBIENT_HARNESS_IMAGE_EXEC`` environment variable (items separated by commas),
and ``LocalCluster(image_executables=[...])``.  Each item is either

- ``PATTERN=/path/to/exe``: the image holds that one file at
  ``/usr/local/bin/<name of exe>``, which is its entrypoint; or
- the path of a YAML/JSON file listing images with several files (Istio's
  install-cni image holds ``/usr/local/bin/install-cni`` and
  ``/opt/cni/bin/istio-cni``: istio/istio cni/deployments/kubernetes/
  Dockerfile.install-cni)::

      images:
      - image: istio/install-cni          # any tag or digest
        files:
          /usr/local/bin/install-cni: /work/build/bin/install-cni
          /opt/cni/bin/istio-cni: /work/build/bin/istio-cni
        cmd: [/usr/local/bin/install-cni] # the Dockerfile's CMD
        workingDir: /opt/cni/bin
        env: {PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/cni/bin"}
      - image: istio/pilot
        files: {/usr/local/bin/pilot-discovery: /work/build/bin/pilot-discovery}
        entrypoint: [/usr/local/bin/pilot-discovery]
        user: "1337:1337"                 # the Dockerfile's USER (root if none)

Patterns are image references normalised as container runtimes do
(``istio/ztunnel:1.2`` is ``docker.io/istio/ztunnel:1.2``; ``busybox`` is
``docker.io/library/busybox``), with shell wildcards: a pattern without a tag or
digest matches any tag and digest; ``istio/ztunnel:1.2*`` any tag starting
``1.2``; a pattern whose first component has a wildcard is matched against the
whole name, registry included (``*/ztunnel`` matches ztunnel of any registry).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_VAR = "AMBIENT_HARNESS_IMAGE_EXEC"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# a Dockerfile USER: user[:group], each a number or a name
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
HOW_TO_MAP = (
    "map the image to an executable on this machine with --image-exec "
    "'IMAGE=/path/to/executable' (or a YAML file of images; on 'python -m clusters.local "
    f"up' and on the conformance suite), the {ENV_VAR} environment variable, or "
    "LocalCluster(image_executables=[...])")

_DOCKER_HUB = "docker.io"
_GLOB = re.compile(r"[*?\[]")
# distribution/reference's grammar, as far as telling the parts apart needs it
# (github.com/distribution/reference, reference.go and normalize.go).
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f*?\[\]]+$")
_TAG = re.compile(r"^[\w*?\[\]][\w.\-*?\[\]]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9._\-/:*?\[\]]+$")


class MappingError(Exception):
    """A mapping that cannot be used; the message names the item and the fix."""


@dataclass(frozen=True)
class Reference:
    name: str          # registry and path, e.g. docker.io/istio/ztunnel
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def _split(text: str) -> tuple[str, str | None, str | None]:
    name, _, digest = text.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def _full_name(name: str) -> str:
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = _DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = _DOCKER_HUB
    if domain == _DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{domain}/{path}"


def _valid(name: str, tag: str | None, digest: str | None) -> bool:
    return bool(_NAME.match(name)) and (tag is None or bool(_TAG.match(tag))) and (
        digest is None or bool(_DIGEST.match(digest)))


def normalize(reference: str) -> Reference:
    """A reference as a runtime reads it: registry and ``library/`` filled in, tag
    ``latest`` if neither tag nor digest is given."""
    name, tag, digest = _split(reference.strip())
    if not _valid(name, tag, digest) or _GLOB.search(name):
        raise MappingError(f"{reference!r} is not an image reference")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(_full_name(name), tag, digest)


@dataclass(frozen=True)
class Pattern:
    """Which image references an entry stands for (see the module's docstring)."""

    text: str

    def __post_init__(self) -> None:
        if not _valid(*_split(self.text.strip())):
            raise MappingError(f"{self.text!r} is not an image reference or pattern")

    def _parts(self) -> tuple[str, str | None, str | None]:
        name, tag, digest = _split(self.text.strip())
        first = name.partition("/")[0]
        return (name if _GLOB.search(first) else _full_name(name)), tag, digest

    def matches(self, reference: str) -> bool:
        try:
            ref = normalize(reference)
        except MappingError:
            return False
        name, tag, digest = self._parts()
        if not fnmatch.fnmatchcase(ref.name, name):
            return False
        if tag is not None and not fnmatch.fnmatchcase(ref.tag or "", tag):
            return False
        return digest is None or fnmatch.fnmatchcase(ref.digest or "", digest)


@dataclass(frozen=True)
class ImageExecutable:
    """One mapped image: its files (image path -> file on this machine) and its
    config (entrypoint, cmd, env, working directory), as an image's config has them."""

    image: str
    files: dict[str, str]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    # the config's User ("1337:1337", "uid", "name[:group]"); "": root
    user: str = ""
    origin: str = ""  # where the entry came from, for messages

    def __post_init__(self) -> None:
        try:
            Pattern(self.image)
        except MappingError as exc:
            raise MappingError(f"{self.where}: {exc}") from None
        if not self.files:
            raise MappingError(f"{self.where}: image {self.image!r} lists no files")
        for inside, outside in self.files.items():
            if not inside.startswith("/"):
                raise MappingError(f"{self.where}: image path {inside!r} of {self.image!r} "
                                   "must be absolute")
            if not os.path.isfile(outside):
                raise MappingError(f"{self.where}: {outside} (for {inside} of {self.image!r}) "
                                   "does not exist or is not a file")
        if self.user and not USER.fullmatch(self.user):
            raise MappingError(f"{self.where}: user {self.user!r} of {self.image!r} must be "
                               "a Dockerfile USER: uid, name, uid:gid or name:group")
        if not self.entrypoint and not self.cmd:
            raise MappingError(f"{self.where}: image {self.image!r} has neither entrypoint nor "
                               "cmd; give one (e.g. entrypoint: [/usr/local/bin/NAME])")

    @property
    def where(self) -> str:
        return self.origin or "image mapping"

    @property
    def pattern(self) -> Pattern:
        return Pattern(self.image)

    @property
    def path(self) -> str:
        """The image's PATH (its config's env, else the Docker default)."""
        return self.env.get("PATH", DEFAULT_PATH)

    def describe(self) -> str:
        return f"{self.image} ({', '.join(f'{k} <- {v}' for k, v in self.files.items())})"


def _entry(raw: Any, origin: str, base: Path) -> ImageExecutable:
    if not isinstance(raw, Mapping) or "image" not in raw:
        raise MappingError(f"{origin}: each entry needs 'image' and 'files' (got {raw!r})")
    unknown = set(raw) - {"image", "files", "entrypoint", "cmd", "env", "workingDir", "user"}
    if unknown:
        raise MappingError(f"{origin}: unknown field(s) {', '.join(sorted(unknown))} in the "
                           f"entry for {raw['image']!r}; known: image, files, entrypoint, cmd, "
                           "env, workingDir, user")
    files = raw.get("files") or {}
    if not isinstance(files, Mapping):
        raise MappingError(f"{origin}: 'files' of {raw['image']!r} must map image paths to "
                           "files on this machine")
    for key in ("entrypoint", "cmd"):
        value = raw.get(key) or []
        if isinstance(value, str) or not all(isinstance(a, str) for a in value):
            raise MappingError(f"{origin}: '{key}' of {raw['image']!r} must be a list of "
                               "strings (exec form, as in a Dockerfile)")
    return ImageExecutable(
        image=str(raw["image"]),
        files={str(k): str((base / str(v)).resolve()) for k, v in files.items()},
        entrypoint=list(raw.get("entrypoint") or []), cmd=list(raw.get("cmd") or []),
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
        working_dir=str(raw.get("workingDir") or "/"), user=str(raw.get("user") or ""),
        origin=origin)


def _from_file(path: Path) -> list[ImageExecutable]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"image mapping file {path}: {exc}") from None
    entries = doc.get("images") if isinstance(doc, Mapping) else doc
    if not isinstance(entries, list):
        raise MappingError(f"image mapping file {path}: expected a list of images, or "
                           "'images:' with one")
    return [_entry(e, str(path), path.parent) for e in entries]


def _from_text(item: str, origin: str) -> list[ImageExecutable]:
    item = item.strip()
    pattern, eq, exe = item.partition("=")
    if eq:
        exe = os.path.abspath(os.path.expanduser(exe))
        name = os.path.basename(exe)
        if not os.access(exe, os.X_OK) or not os.path.isfile(exe):
            raise MappingError(f"{origin}: {exe} (for image {pattern!r}) is not an executable "
                               "file")
        inside = f"/usr/local/bin/{name}"
        return [ImageExecutable(pattern, {inside: exe}, entrypoint=[inside], origin=origin)]
    path = Path(item).expanduser()
    if path.is_file():
        return _from_file(path)
    raise MappingError(f"{origin}: {item!r} is neither IMAGE=/path/to/executable nor a YAML/"
                       "JSON file of images")


Item = str | os.PathLike[str] | Mapping[str, Any] | ImageExecutable


def parse(items: Iterable[Item] | Mapping[str, str | os.PathLike[str]] | None,
          origin: str = "image mapping") -> list[ImageExecutable]:
    """Entries from the API's forms: strings (``PATTERN=EXE`` or a file), paths of
    files, dicts in the file's entry form, :class:`ImageExecutable`, or one dict of
    pattern -> executable."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        items = [f"{k}={v}" for k, v in items.items()]
    out: list[ImageExecutable] = []
    for item in items:
        if isinstance(item, ImageExecutable):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_entry(item, origin, Path.cwd()))
        elif isinstance(item, os.PathLike):
            out += _from_file(Path(item))
        else:
            out += _from_text(str(item), origin)
    return out


def from_environment(environ: Mapping[str, str] = os.environ) -> list[ImageExecutable]:
    text = environ.get(ENV_VAR, "")
    return [e for item in re.split(r"[,\n]", text) if item.strip()
            for e in _from_text(item, ENV_VAR)]


def dump(entries: list[ImageExecutable], path: Path) -> None:
    """For the node agents (other processes): JSON they read with :func:`load`."""
    path.write_text(json.dumps([asdict(e) for e in entries], indent=1))


def load(path: Path) -> list[ImageExecutable]:
    return [ImageExecutable(**raw) for raw in json.loads(path.read_text())]


def find(entries: list[ImageExecutable], image: str) -> ImageExecutable | None:
    """The first entry whose pattern matches ``image`` (the user's order)."""
    return next((e for e in entries if e.pattern.matches(image)), None)
