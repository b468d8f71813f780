"""A node's own PID namespace (``node/pidinit.py``): its init mounts the namespace's
procfs, runs the command as its child, passes signals and the exit status on, and
leaves no mount behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")


def _mounted(path: Path) -> bool:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return str(path) in points


def _launch(proc: Path, script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clusters.local.node.pidinit", "--proc", str(proc), "--",
         "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT)))


def test_the_command_runs_under_pid_1_with_the_namespace_procfs(tmp_path):
    proc = tmp_path / "proc"
    script = ('echo self=$$; echo pids=$(ls ' + str(proc) + ' | grep "^[0-9]" | tr "\\n" ,); '
              'echo ns1=$(stat -L -c %i ' + str(proc) + '/1/ns/pid); '
              'echo mine=$(stat -L -c %i /proc/self/ns/pid); exit 3')
    p = _launch(proc, script)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, err  # the command's status, through init and launcher
    facts = dict(line.split("=", 1) for line in out.split())
    assert facts["self"] == "2"  # the init is 1
    assert facts["pids"].split(",")[:2] == ["1", "2"]
    # the command is in the namespace of the procfs, which is not this test's
    assert facts["ns1"] == facts["mine"]
    assert int(facts["ns1"]) != os.stat("/proc/self/ns/pid").st_ino
    assert not _mounted(proc)  # unmounted when the command ended


def test_sigterm_reaches_the_command_and_orphans_are_reaped(tmp_path):
    proc = tmp_path / "proc"
    # an orphan (the backgrounded subshell's sleep, reparented to init), then wait
    p = _launch(proc, "trap 'echo got-term; exit 7' TERM; (sleep 3600 &); echo up; "
                "while :; do sleep 1; done")
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "up"
    assert _mounted(proc)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 7, err
    assert "got-term" in out
    assert not _mounted(proc)


def test_no_command_is_a_usage_error(tmp_path):
    p = subprocess.run([sys.executable, "-m", "clusters.local.node.pidinit", "--proc",
                        str(tmp_path / "proc")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(PROJECT)), timeout=60)
    assert p.returncode == 2 and "no command given" in p.stderr
