"""What a container runs, with which environment, in which root.

Pure functions of the container's spec, its image (a mapped executable or a
catalog program) and the pod's prepared volumes, so the runtime's rules are
testable without processes:

- the command: Kubernetes' rules over the image's entrypoint and cmd (``command``
  replaces the entrypoint and drops cmd, ``args`` replaces cmd; see "Define a
  Command and Arguments for a Container" in the Kubernetes docs), ``$(VAR)``
  expanded; a command without a slash is looked up in the container's ``PATH``
  inside its root;
- the root (``rootfs.RootSpec``): the pod's ``/etc/hosts``, ``/etc/hostname``,
  ``/etc/resolv.conf``, the termination-message file, each ``volumeMount``
  (``subPath``, ``subPathExpr``, ``readOnly``), the automounted service-account
  token, and the image's files (or, for a catalog program, the project and the
  Python installation it runs from), ordered parents first as runtimes order
  mounts, so a volume at ``/tmp`` never hides a deeper bind.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..images.catalog import Program, python_paths
from ..images.executables import ImageExecutable
from . import rootfs
from .podenv import ConfigError, expand
from .volumes import SA_MOUNT, SA_VOLUME, Volume, VolumeError

TERMINATION_LOG = "/dev/termination-log"


class LaunchError(Exception):
    """The container cannot be created as specified (kubelet's CreateContainerError)."""


@dataclass(frozen=True)
class PodFiles:
    """Files of the pod's folder every container gets in its /etc."""

    hosts: str
    hostname: str
    resolv_conf: str | None  # None: the node's (dnsPolicy Default)


def argv(image: Program | ImageExecutable, container: dict[str, Any],
         env: dict[str, str]) -> list[str]:
    command = [str(a) for a in container.get("command") or ()]
    args = [str(a) for a in container.get("args") or ()]
    if isinstance(image, ImageExecutable):
        if command:
            out = command + args
        elif args:
            out = list(image.entrypoint) + args
        else:
            out = list(image.entrypoint) + list(image.cmd)
    else:
        out = list(image.argv)
        if command and out[:len(command)] != command:
            out = command + args
    if not out:
        raise LaunchError("no command specified: the container gives none and its image has "
                          "neither entrypoint nor cmd")
    return [expand(a, env) for a in out]


def base_env(image: Program | ImageExecutable, pod_name: str, service: dict[str, str],
             agent_path: str) -> dict[str, str]:
    """What a container's env starts from: the image's config, HOSTNAME and HOME as
    runtimes set them, and the service variables kubelet adds."""
    if isinstance(image, ImageExecutable):
        env = {"PATH": image.path, **image.env}
    else:
        env = {"PATH": agent_path, **image.env}
    env.setdefault("HOME", "/root")
    env["HOSTNAME"] = pod_name
    env.update(service)
    return env


def _depth(bind: rootfs.Bind) -> int:
    return len(PurePosixPath(bind.target).parts)


def _image_ids(user: str) -> tuple[int | None, str, int | None]:
    """An image config's ``User`` (``uid``, ``name``, ``uid:gid``, ``name:group``) as
    (uid if numeric, the name if not, gid if given); names are looked up in this
    machine's /etc/passwd and /etc/group (the image's, here) when run."""
    name, _, group = user.partition(":")
    uid = int(name) if name.isdigit() else None
    gid: int | None = None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ConfigError(f"image's group {group!r} is not in /etc/group") from None
    return uid, "" if uid is not None else name, gid


def run_as(pod_spec: dict[str, Any], container: dict[str, Any],
           image_user: str = "") -> rootfs.RunAs | None:
    """The user a container runs as: its ``securityContext`` over the pod's, as the
    kubelet merges them, over the image's ``User`` (root when it has none, as every
    catalog image).  A uid without a group takes that user's group from this
    machine's /etc/passwd (the image's, here), else group 0, as containerd does.
    ``runAsNonRoot`` is checked as the kubelet checks it
    (``kuberuntime/security_context_others.go``, ``verifyRunAsNonRoot``): a
    ``runAsUser`` of 0, an image that runs as root or one whose user is a name is
    refused with its message (a ConfigError: the pod waits in
    ``CreateContainerConfigError``)."""
    pod_ctx = pod_spec.get("securityContext") or {}
    ctx = {**pod_ctx, **(container.get("securityContext") or {})}
    uid = ctx.get("runAsUser")
    image_uid, image_name, image_gid = _image_ids(image_user) if image_user else (0, "", None)
    if ctx.get("runAsNonRoot"):
        if uid is not None and int(uid) == 0:
            raise ConfigError("container's runAsUser breaks non-root policy")
        if uid is None and image_name:
            raise ConfigError(f"container has runAsNonRoot and image has non-numeric user "
                              f"({image_name}), cannot verify user is non-root")
        if uid is None and not image_uid:
            raise ConfigError("container has runAsNonRoot and image will run as root")
    gid = ctx.get("runAsGroup")
    groups = tuple(int(g) for g in pod_ctx.get("supplementalGroups") or ())
    if uid is None:
        if image_name:
            try:
                image_uid = pwd.getpwnam(image_name).pw_uid
            except KeyError:
                raise ConfigError(f"image's user {image_name!r} is not in /etc/passwd") from None
        uid = image_uid
        if gid is None:
            gid = image_gid
    if not uid and not gid and not groups:
        return None  # root, the caller's user
    uid = int(uid or 0)
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    return rootfs.RunAs(uid, int(gid), groups)


def root_spec(image: Program | ImageExecutable, container: dict[str, Any],
              env: dict[str, str], volumes: dict[str, Volume], files: PodFiles,
              termination_log: str, scratch: str, netns: str | None,
              hostname: str, proc: str = "/proc",
              user: rootfs.RunAs | None = None) -> rootfs.RootSpec:
    binds = [rootfs.Bind(files.hosts, "/etc/hosts"),
             rootfs.Bind(files.hostname, "/etc/hostname")]
    if files.resolv_conf:
        binds.append(rootfs.Bind(files.resolv_conf, "/etc/resolv.conf"))
    binds.append(rootfs.Bind(termination_log,
                             container.get("terminationMessagePath") or TERMINATION_LOG))
    mounted = set()
    for mount in container.get("volumeMounts") or ():
        name, target = mount.get("name", ""), mount.get("mountPath", "")
        if not target.startswith("/"):
            raise LaunchError(f"volumeMount {name}: mountPath {target!r} must be absolute")
        volume = volumes.get(name)
        if volume is None:
            raise LaunchError(f"volumeMount {name} names no volume of the pod")
        sub = mount.get("subPath") or ""
        if mount.get("subPathExpr"):
            sub = expand(mount["subPathExpr"], env)
        try:
            binds += volume.binds(mount, sub)
        except VolumeError as exc:
            raise LaunchError(str(exc)) from None
        mounted.add(PurePosixPath(target))
    if SA_VOLUME in volumes and PurePosixPath(SA_MOUNT) not in mounted:
        binds += volumes[SA_VOLUME].binds({"name": SA_VOLUME, "mountPath": SA_MOUNT})
    if isinstance(image, ImageExecutable):
        binds += [rootfs.Bind(host, inside, readonly=True) for inside, host in image.files.items()]
    else:
        binds += [rootfs.Bind(p, p, readonly=True) for p in python_paths()]
    binds.sort(key=_depth)  # stable: at equal depth the later (image, program) wins
    workdir = container.get("workingDir") or (
        image.working_dir if isinstance(image, ImageExecutable) else "/")
    return rootfs.RootSpec(scratch=scratch, binds=tuple(binds), netns=netns,
                           hostname=hostname, workdir=workdir, proc=proc, user=user)
