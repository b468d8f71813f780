"""PID 1 of a pod's PID namespace: the part of the pause container a pod's
processes see.  It holds the namespace (it ends when its PID 1 exits) and reaps
the orphans of the pod's containers, which the kernel gives to it.

Run as a script of its own (``python -I -S pause.py``: the standard library only,
no site packages, so it starts in milliseconds).  PID 1 of a namespace gets no
signal it has no handler for from inside the namespace; this one blocks SIGCHLD,
SIGTERM and SIGINT and waits for them, so SIGTERM or SIGINT from the node ends it
(exit 0) and SIGKILL, which the node agent sends when the pod is gone, ends it
and, with it, whatever the pod still ran.
"""

import os
import signal
import sys

WAKE = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def reap() -> None:
    """Collect every child that has exited (none may be left: ChildProcessError)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    # blocked, the signals stay pending until sigwait takes them: none is lost between
    # a reap and the wait
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE)
    while True:
        reap()
        if signal.sigwait(WAKE) != signal.SIGCHLD:
            return 0


if __name__ == "__main__":
    sys.exit(main())
