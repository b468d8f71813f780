"""A pod's PID namespace: its PID 1 (``pause.py``), started before the pod's
containers and killed after them.

Kubernetes gives each pod PID namespaces of their own, the node's only with
``hostPID: true``.  Here the containers of a pod share one, as they do in
Kubernetes with ``shareProcessNamespace: true``: PID 1 is the pod's pause process,
which reaps orphans, and each container's process has a pid of 2 and up, so
SIGTERM reaches it with its default action (a container's own PID 1 ignores
signals it has no handler for).

The namespace is made, and joined, by the thread that forks (``rootfs``'s spawner
threads): its ``pid_for_children`` is switched for one fork and restored, so a
container's process is still a child of the node agent, which waits for it and
signals its process group, while its pids inside are the pod's.  The pause's pidfd
names the namespace to join (``RootSpec.pid_namespace``); it stays valid, unlike
a pid, however long the pod runs.  When the pause is killed the kernel kills
whatever the pod still ran, so nothing of the pod survives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from . import rootfs

PAUSE = Path(__file__).with_name("pause.py")


class PodPidNamespace:
    """One pod's PID namespace, held by its PID 1 (the pause process)."""

    def __init__(self, init: rootfs.Process) -> None:
        self.init = init
        self.fd = os.pidfd_open(init.pid)

    @classmethod
    async def start(cls) -> PodPidNamespace:
        # -I -S: the standard library only, no site packages: a few ms to start
        init = await rootfs.spawn_init([sys.executable, "-I", "-S", str(PAUSE)],
                                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        return cls(init)

    @property
    def exited(self) -> bool:
        """Whether the pause has exited (killed from outside: the kernel then killed the
        pod's processes too)."""
        return self.init.returncode is not None

    async def stop(self) -> None:
        """Kill the pause, and so every process left in the namespace; wait for it.
        Safe to call again, also while a first call waits."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        await self.init.wait()
