"""Jobs, StatefulSets and drain with the pinned kubectl on a cluster whose nodes run pods.

The controllers' reactions to each pod state are tested in
test_batch_and_statefulsets.py; here the pods are real processes, so a Job completes
because its command exited 0, a StatefulSet's pod answers at its stable DNS name, and
``kubectl drain`` evicts through the API as it does on a real cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import termios
import time
import uuid

import pytest

from clusters.provider import kubectl_binary

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

CURL = "curlimages/curl"
RATINGS = "docker.io/istio/examples-bookinfo-ratings-v1:1.20.2"


@pytest.fixture
def wns(nodes_kubectl):
    name = f"w-{uuid.uuid4().hex[:8]}"
    nodes_kubectl("create", "namespace", name)
    yield name
    nodes_kubectl("delete", "namespace", name, "--wait=false")


def test_a_job_runs_to_completion_and_keeps_its_log(nodes_kubectl, wns):
    k = nodes_kubectl
    k("create", "job", "hello", "-n", wns, f"--image={CURL}", "--", "sh", "-c",
      "echo hello from the job")
    k("wait", "--for=condition=complete", "job/hello", "-n", wns, "--timeout=60s", timeout=90)
    assert k("logs", "job/hello", "-n", wns).stdout == "hello from the job\n"
    job = json.loads(k("get", "job", "hello", "-n", wns, "-o", "json").stdout)
    assert job["status"]["succeeded"] == 1
    k("create", "job", "fails", "-n", wns, f"--image={CURL}", "--", "sh", "-c", "exit 3")
    k("patch", "job", "fails", "-n", wns, "--type=merge", "-p",
      '{"spec":{"backoffLimit":0}}')
    k("wait", "--for=condition=failed", "job/fails", "-n", wns, "--timeout=60s", timeout=90)
    row = k("get", "job", "fails", "-n", wns, "--no-headers").stdout.split()
    assert row[:3] == ["fails", "Failed", "0/1"]


STATEFULSET = """
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  clusterIP: None
  selector: {app: ratings}
  ports: [{port: 9080, name: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ratings}
spec:
  serviceName: ratings
  replicas: 2
  selector: {matchLabels: {app: ratings}}
  template:
    metadata: {labels: {app: ratings}}
    spec:
      containers:
      - name: ratings
        image: RATINGS
        ports: [{containerPort: 9080}]
        readinessProbe: {httpGet: {path: /health, port: 9080}}
""".replace("RATINGS", RATINGS)


def test_a_statefulsets_pods_answer_at_their_stable_names(nodes_kubectl, wns):
    k = nodes_kubectl
    k("apply", "-n", wns, "-f", "-", input=STATEFULSET)
    k("run", "client", "-n", wns, f"--image={CURL}", "--command", "--", "sleep", "600")
    k("rollout", "status", "statefulset/ratings", "-n", wns, "--timeout=90s", timeout=120)
    k("wait", "--for=condition=Ready", "pod/client", "-n", wns, "--timeout=60s", timeout=90)
    assert k("exec", "-n", wns, "ratings-1", "--", "hostname").stdout.strip() == "ratings-1"
    answer = k("exec", "-n", wns, "client", "--", "curl", "-s", "-m", "10",
               f"http://ratings-1.ratings.{wns}.svc.cluster.local:9080/health").stdout
    assert json.loads(answer) == {"status": "Ratings is healthy"}


def test_drain_evicts_within_the_disruption_budget(nodes_kubectl, wns):
    k = nodes_kubectl
    k("create", "deployment", "web", "-n", wns, f"--image={RATINGS}", "--replicas=2")
    k("rollout", "status", "deployment/web", "-n", wns, "--timeout=90s", timeout=120)
    k("create", "pdb", "web", "-n", wns, "--selector=app=web", "--min-available=2")
    pods = json.loads(k("get", "pods", "-n", wns, "-l", "app=web", "-o", "json").stdout)
    node = pods["items"][0]["spec"]["nodeName"]
    drain = ("drain", node, "--pod-selector=app=web", "--ignore-daemonsets")
    try:
        refused = k(*drain, "--timeout=5s", check=False, timeout=60)
        assert refused.returncode != 0
        assert "disruption budget" in refused.stderr
        k("patch", "pdb", "web", "-n", wns, "--type=merge", "-p",
          '{"spec":{"minAvailable":1}}')
        done = k(*drain, "--timeout=60s", timeout=90)
        assert f"node/{node} drained" in done.stdout
        k("rollout", "status", "deployment/web", "-n", wns, "--timeout=90s", timeout=120)
        after = json.loads(k("get", "pods", "-n", wns, "-l", "app=web", "-o", "json").stdout)
        assert all(p["spec"]["nodeName"] != node for p in after["items"])
    finally:
        k("uncordon", node)


def _read_until(fd: int, wanted: bytes, deadline_s: float = 60) -> bytes:
    """What the terminal shows until ``wanted`` appears (a hang guard, not a wait)."""
    seen = b""
    end = time.monotonic() + deadline_s
    while wanted not in seen:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} never appeared; the terminal showed {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: kubectl is gone
                raise AssertionError(f"kubectl ended; the terminal showed {seen!r}") from None
            seen += chunk
    return seen


# kubectl's gate for exec and attach over WebSocket (k8s.io/kubectl feature gates,
# RemoteCommandWebsockets); false makes it upgrade to SPDY, its fallback
SPDY_ENV = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


@pytest.fixture(params=["websocket", "spdy"])
def remote_env(request) -> dict[str, str]:
    return SPDY_ENV if request.param == "spdy" else {}


def test_exec_and_attach_over_spdy(nodes_kubectl, wns):
    """kubectl's fallback: one SPDY stream per channel on the upgraded connection
    (client-go tools/remotecommand v4): stdin to its end, stdout, stderr, and the
    exit code from the Status on the error stream."""
    k = nodes_kubectl
    k("run", "spdy", "-n", wns, f"--image={CURL}", "--command", "--", "sleep", "600")
    k("wait", "--for=condition=Ready", "pod/spdy", "-n", wns, "--timeout=60s", timeout=90)
    done = k("-v=8", "exec", "-i", "spdy", "-n", wns, "--", "sh", "-c",
             "cat; echo to-stderr >&2; exit 3", input="typed\n", check=False, env=SPDY_ENV)
    assert "Upgrade: SPDY/3.1" in done.stderr  # the 101's headers in kubectl's log
    assert done.stdout == "typed\n" and "to-stderr" in done.stderr
    assert done.returncode == 3
    quiet = k("exec", "spdy", "-n", wns, "--", "echo", "fine", env=SPDY_ENV)
    assert quiet.stdout == "fine\n"


def test_exec_it_gives_a_terminal_of_kubectls_size(nodes_cluster, nodes_kubectl, wns,
                                                   tmp_path, remote_env):
    k = nodes_kubectl
    k("run", "shell", "-n", wns, f"--image={CURL}", "--command", "--", "sleep", "600")
    k("wait", "--for=condition=Ready", "pod/shell", "-n", wns, "--timeout=60s", timeout=90)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    script = "test -t 0 && echo IS-A-TTY; stty size; read line; echo got:$line"
    proc = subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={nodes_cluster.kubeconfig}",
         f"--cache-dir={tmp_path / 'kube-cache'}", "exec", "-it", "-n", wns, "shell", "--",
         "sh", "-c", script], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={**os.environ, **remote_env})
    os.close(slave)
    try:
        shown = _read_until(master, b"33 111")  # kubectl sent its size, the pty took it
        assert b"IS-A-TTY" in shown
        os.write(master, b"typed\r")
        _read_until(master, b"got:typed")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


RUN_AS = """
apiVersion: v1
kind: Pod
metadata: {name: nonroot}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000]}
  containers:
  - name: main
    image: %s
    command: [sh, -c, "echo $(id -u) $(id -g) $(id -G) > /tmp/main-id; touch /tmp/ready; sleep 600"]
    readinessProbe: {exec: {command: [test, -e, /tmp/ready]}}
  - name: own
    image: %s
    securityContext: {runAsUser: 2000}
    command: [sleep, "600"]
---
apiVersion: v1
kind: Pod
metadata: {name: refused}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: main, image: %s, command: [sleep, "600"]}
""".replace("%s", CURL)


def test_containers_run_as_the_user_their_security_context_names(nodes_kubectl, wns):
    k = nodes_kubectl
    k("apply", "-n", wns, "-f", "-", input=RUN_AS)
    k("wait", "--for=condition=Ready", "pod/nonroot", "-n", wns, "--timeout=60s", timeout=90)
    main_id = k("exec", "-n", wns, "nonroot", "-c", "main", "--", "cat", "/tmp/main-id").stdout
    assert main_id == "1000 3000 3000 4000\n"
    # exec runs as the container's user, as the kubelet's does
    assert k("exec", "-n", wns, "nonroot", "-c", "main", "--", "id", "-u").stdout == "1000\n"
    assert k("exec", "-n", wns, "nonroot", "-c", "own", "--", "id", "-u").stdout == "2000\n"
    # root's files stay root's
    denied = k("exec", "-n", wns, "nonroot", "-c", "main", "--", "sh", "-c",
               "echo x > /etc/x", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    k("wait", "pod/refused", "-n", wns, "--timeout=60s",
      "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}"
      "=CreateContainerConfigError", timeout=90)
    pod = json.loads(k("get", "pod", "refused", "-n", wns, "-o", "json").stdout)
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == "container has runAsNonRoot and image will run as root"


def test_an_indexed_jobs_pods_know_their_index(nodes_kubectl, wns):
    k = nodes_kubectl
    k("apply", "-n", wns, "-f", "-", input=f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: shards}}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: {CURL}
        command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX host=$(hostname)']
""")
    k("wait", "--for=condition=Complete", "job/shards", "-n", wns, "--timeout=90s",
      timeout=120)
    logs = k("logs", "-n", wns, "-l", "job-name=shards", "--prefix=false").stdout
    assert sorted(logs.splitlines()) == [f"index={i} host=shards-{i}" for i in range(3)]
    shown = k("get", "job", "shards", "-n", wns, "-o",
              "jsonpath={.status.completedIndexes}").stdout
    assert shown == "0-2"


def test_attach_streams_the_containers_output_until_it_ends(nodes_kubectl, wns):
    k = nodes_kubectl
    k("run", "ticker", "-n", wns, f"--image={CURL}", "--restart=Never", "--command", "--",
      "sh", "-c", "sleep 2; for i in $(seq 1 20); do echo tick $i; sleep 0.1; done")
    k("wait", "--for=condition=Ready", "pod/ticker", "-n", wns, "--timeout=60s", timeout=90)
    attached = k("attach", "ticker", "-n", wns, timeout=90)
    lines = attached.stdout.splitlines()
    assert lines[-1] == "tick 20"  # followed to the end, then kubectl exits 0
    k("run", "sleeper", "-n", wns, f"--image={CURL}", "--command", "--", "sleep", "600")
    k("wait", "--for=condition=Ready", "pod/sleeper", "-n", wns, "--timeout=60s", timeout=90)
    refused = k("attach", "-i", "sleeper", "-n", wns, check=False, timeout=60)
    assert refused.returncode != 0
    assert "kubectl exec -it sleeper -c sleeper -- sh" in refused.stderr


def test_logs_carry_each_lines_time(nodes_cluster, nodes_kubectl, wns):
    k = nodes_kubectl
    k("run", "talker", "-n", wns, f"--image={CURL}", "--command", "--", "sh", "-c",
      "echo early; echo same-moment; sleep 2; echo late; exec sleep 600")
    k("wait", "pod/talker", "-n", wns, "--for=condition=Ready", "--timeout=60s", timeout=90)
    # follow the log until "late" is written (kubectl logs -f returns only when the
    # container ends, so the follow is read line by line and stopped)
    follow = subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={nodes_cluster.kubeconfig}", "logs", "-f",
         "--timestamps", "talker", "-n", wns], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        lines = [follow.stdout.readline().rstrip("\n") for _ in range(3)]
    finally:
        follow.kill()
        follow.wait()
    assert [line.split(" ", 1)[1] for line in lines] == ["early", "same-moment", "late"]
    times = [line.split(" ", 1)[0] for line in lines]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", t) for t in times)
    assert times == sorted(times) and times[0] < times[2]
    plain = k("logs", "talker", "-n", wns).stdout
    assert plain == "early\nsame-moment\nlate\n"  # the log itself is unchanged
    since = k("logs", "talker", "-n", wns, f"--since-time={times[2]}").stdout
    assert since == "late\n"
    assert k("logs", "talker", "-n", wns, "--since=1h").stdout == plain


def test_run_it_gives_a_shell_on_the_containers_terminal(nodes_cluster, wns, tmp_path):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={nodes_cluster.kubeconfig}",
         f"--cache-dir={tmp_path / 'kube-cache'}", "run", "-it", "--rm", "shell", "-n", wns,
         f"--image={CURL}", "--restart=Never", "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        _read_until(master, b"pressing enter")  # kubectl attached: "If you don't see a..."
        # kubectl sends its terminal size beside what is typed, not before it (as to a
        # real kubelet): ask, prompt after prompt, until the size has arrived
        for _ in range(100):
            os.write(master, b"stty size\r")
            if b"40 120" in _read_until(master, b"\r\n# "):
                break
        else:
            raise AssertionError("the terminal never took kubectl's size (40 rows, 120 "
                                 "columns)")
        os.write(master, b"echo sum-$((20+22)); test -t 0 && echo on-a-tty\r")
        shown = _read_until(master, b"on-a-tty\r\n")
        assert b"sum-42" in shown
        os.write(master, b"exit\r")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_attach_i_feeds_the_containers_stdin(nodes_kubectl, wns, remote_env):
    k = nodes_kubectl
    k("apply", "-n", wns, "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  restartPolicy: Never
  containers:
  - name: reader
    image: {CURL}
    stdin: true
    stdinOnce: true
    command: [sh, -c, "while read line; do echo got:$line; done; echo stdin-closed"]
""")
    k("wait", "--for=condition=Ready", "pod/reader", "-n", wns, "--timeout=60s", timeout=90)
    attached = k("attach", "-i", "reader", "-n", wns, input="hello\nworld\n", timeout=60,
                 env=remote_env)
    # the lines typed came back, and closing stdin (stdinOnce) ended the loop
    assert attached.stdout.splitlines()[-3:] == ["got:hello", "got:world", "stdin-closed"]
