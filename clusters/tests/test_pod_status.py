"""Pod phase and conditions from container states, as the node agent writes them."""

from __future__ import annotations

from clusters.local.node.status import ContainerView, phase_of, pod_status


def _running():
    return ContainerView("c", "img", state={"running": {"startedAt": "t"}}, ready=True,
                         started=True)


def _exited(code, restarts=0):
    return ContainerView("c", "img", restart_count=restarts,
                         state={"terminated": {"exitCode": code}})


def test_phases():
    assert phase_of("Always", [], [ContainerView("c", "img")]) == "Pending"
    assert phase_of("Always", [], [_running()]) == "Running"
    assert phase_of("Never", [], [_exited(0)]) == "Succeeded"
    assert phase_of("Never", [], [_exited(2)]) == "Failed"
    assert phase_of("OnFailure", [], [_exited(2)]) == "Running"  # will restart
    assert phase_of("Always", [], [_exited(0)]) == "Running"
    waiting_after_crash = ContainerView("c", "img", restart_count=1,
                                        state={"waiting": {"reason": "CrashLoopBackOff"}})
    assert phase_of("Always", [], [waiting_after_crash]) == "Running"
    assert phase_of("Never", [_exited(1)], [ContainerView("c", "img")]) == "Failed"


def test_ready_condition_needs_every_container_ready():
    pod = {"spec": {"restartPolicy": "Always"}, "status": {"qosClass": "BestEffort"}}
    not_ready = ContainerView("b", "img", state={"running": {"startedAt": "t"}})
    since: dict[str, str] = {}
    status = pod_status(pod, [], [_running(), not_ready], pod_ip="198.18.0.2",
                        host_ip="198.18.255.1", start_time="t0", now="t1", sandbox_ready=True,
                        since=since)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert status["podIP"] == "198.18.0.2" and status["phase"] == "Running"
    not_ready.ready = True
    later = pod_status(pod, [], [_running(), not_ready], pod_ip="198.18.0.2",
                       host_ip="198.18.255.1", start_time="t0", now="t2", sandbox_ready=True,
                       since=since)
    conds = {c["type"]: c for c in later["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["lastTransitionTime"] == "t2"
    # a condition that did not change keeps its transition time
    assert conds["PodScheduled"]["lastTransitionTime"] == "t1"
