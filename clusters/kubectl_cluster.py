"""What clusters reached only through a kubeconfig share: kubectl with the right
context, ``exec`` and ``logs`` through kubectl, and running external tools.

The embedded local cluster can enter a pod's network namespace itself; a kind
cluster or someone else's cluster cannot, so for them ``kubectl exec`` is the one
way in.  Both go through :class:`KubectlCluster`, so the subtle part (telling the
command's own exit code from kubectl failing) exists once.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from .provider import ClusterError, ClusterProvider, ExecResult, kubectl_binary

# kubectl's last stderr line when the remote command exited non-zero (its exit
# status is then that code); any other non-zero exit is kubectl's own failure.
_REMOTE_EXIT = re.compile(r"command terminated with exit code (\d+)\s*\Z")


def run_tool(argv: list[str], *, timeout: float, input: str | None = None,
             check: bool = True, display: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run an external tool with a deadline; every failure is a ClusterError that
    names the command and shows its stderr, so a failed run explains itself.

    ``display`` is how the command is named in messages (default: the argv), e.g.
    to say ``kubectl`` rather than the wheel's full path.
    """
    shown = display or shlex.join(argv)
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClusterError(f"`{shown}`: {argv[0]} not found") from None
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
            else (exc.stderr or "")
        raise ClusterError(f"`{shown}` did not finish within {timeout:g}s"
                           + (f": {err.strip()}" if err.strip() else "")) from None
    if check and proc.returncode != 0:
        raise ClusterError(f"`{shown}` failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip() or 'no output'}")
    return proc


class KubectlCluster(ClusterProvider):
    """A provider whose only handle on the cluster is a kubeconfig (and context).

    Subclasses supply ``up``, ``teardown`` and ``kubeconfig``; this class makes
    every client (kubectl, the Python client) use ``context`` when one is set, so
    a multi-context kubeconfig never silently talks to its current context.
    """

    context: str | None = None

    @property
    def kubectl_cache_dir(self) -> Path | None:
        """Where kubectl caches discovery; None leaves kubectl's default (~/.kube/cache)."""
        return self.kubeconfig.parent / "kubectl-cache"

    def kubectl_argv(self, *args: str) -> list[str]:
        """The full kubectl command line for ``args`` against this cluster."""
        cmd = [kubectl_binary(), f"--kubeconfig={self.kubeconfig}"]
        if self.context:
            cmd.append(f"--context={self.context}")
        if self.kubectl_cache_dir is not None:
            cmd.append(f"--cache-dir={self.kubectl_cache_dir}")
        return [*cmd, *args]

    def _shown(self, *args: str) -> str:
        context = [f"--context={self.context}"] if self.context else []
        return shlex.join(["kubectl", *context, *args])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (with ``--context`` when one is set)."""
        return run_tool(self.kubectl_argv(*args), timeout=timeout, input=input, check=check,
                        display=self._shown(*args))

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster's context (a new one per call)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig),
                                             context=self.context)

    def exec(self, namespace: str, target: str, argv: list[str],
             timeout: float = 60) -> ExecResult:
        """``kubectl exec -n namespace target -- argv``: the command's exit code and output.

        kubectl exits with the remote command's code and says so on its last
        stderr line; any other failure (no such pod, no running container, API
        unreachable) is kubectl's own and raises ClusterError with its stderr, so a
        test never mistakes "could not run" for "ran and failed".
        """
        if not argv:
            raise ClusterError(f"exec into {namespace}/{target}: no command given")
        args = ["exec", "-n", namespace, target, "--", *argv]
        proc = self.kubectl(*args, check=False, timeout=timeout)
        if proc.returncode == 0:
            return ExecResult(0, proc.stdout, proc.stderr)
        stderr = proc.stderr.rstrip("\n")
        head, _, last = stderr.rpartition("\n")
        marker = _REMOTE_EXIT.fullmatch(last.strip())
        if marker and int(marker.group(1)) == proc.returncode:
            return ExecResult(proc.returncode, proc.stdout, head + "\n" if head else "")
        raise ClusterError(f"`{self._shown(*args)}` could not run the command "
                           f"(kubectl exit {proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip() or 'no output'}")

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """``kubectl logs`` (``pod`` may also be ``deploy/<name>``)."""
        args = ["logs", "-n", namespace, pod]
        if container:
            args += ["-c", container]
        return self.kubectl(*args, timeout=60).stdout
