"""Jobs, CronJobs, StatefulSets and evictions on the local API, through the official client.

The cluster here runs no node agents: the tests play the kubelet's part by writing the
pods' status (Running and Ready, Succeeded, Failed), so each controller's reaction to
each state is seen exactly.  Pods of the real node agents are in
test_kubectl_workloads.py.
"""

from __future__ import annotations

import datetime
import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clusters.local.apiserver.batch import COMPLETION_INDEX as INDEX
from clusters.local.controllers.jobs import CronJobController, index_ranges

from .waiting import until

pytestmark = pytest.mark.slow

UNSCHEDULED = {"schedulerName": "manual", "restartPolicy": "Never",
               "containers": [{"name": "c", "image": "curlimages/curl"}]}


@pytest.fixture
def batch(api_client) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


def _job(name: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": dict(UNSCHEDULED)}, **spec}}


def _set_phase(core, ns: str, pod: str, phase: str, ready: bool = False) -> None:
    status = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    core.patch_namespaced_pod_status(pod, ns, {"status": status})


def _pods(core, ns: str, selector: str, predicate):
    return until(core.list_namespaced_pod, predicate, namespace=ns, label_selector=selector)


def _job_when(batch, ns: str, name: str, predicate):
    return until(batch.list_namespaced_job, lambda items: any(
        j.metadata.name == name and predicate(j) for j in items), namespace=ns)


def _conditions(job) -> list[str]:
    return [c.type for c in (job.status.conditions or ()) if c.status == "True"]


def test_a_job_runs_its_completions_one_at_a_time_then_completes(core, batch, namespace):
    made = batch.create_namespaced_job(namespace, _job("twice", completions=2))
    # the server generated the selector and the template's labels
    uid = made.metadata.uid
    assert made.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = made.spec.template.metadata.labels
    assert labels["batch.kubernetes.io/job-name"] == labels["job-name"] == "twice"
    assert (made.spec.parallelism, made.spec.backoff_limit) == (1, 6)
    selector = "job-name=twice"
    [first] = _pods(core, namespace, selector, lambda items: len(items) == 1)
    assert first.metadata.name.startswith("twice-")
    assert first.metadata.owner_references[0].kind == "Job"
    _set_phase(core, namespace, first.metadata.name, "Succeeded")
    pods = _pods(core, namespace, selector, lambda items: len(items) == 2)
    second = next(p for p in pods if p.metadata.name != first.metadata.name)
    _job_when(batch, namespace, "twice",
              lambda j: j.status.succeeded == 1 and j.status.active == 1)
    _set_phase(core, namespace, second.metadata.name, "Succeeded")
    [job] = [j for j in _job_when(batch, namespace, "twice",
                                  lambda j: "Complete" in _conditions(j))
             if j.metadata.name == "twice"]
    assert _conditions(job) == ["SuccessCriteriaMet", "Complete"]
    assert job.status.succeeded == 2 and not job.status.active
    assert job.status.completion_time is not None


def test_a_job_fails_past_its_backoff_limit_and_parallel_pods_run_together(
        core, batch, namespace):
    batch.create_namespaced_job(namespace, _job("flaky", backoffLimit=1, parallelism=2,
                                                completions=4))
    pods = _pods(core, namespace, "job-name=flaky", lambda items: len(items) == 2)
    _set_phase(core, namespace, pods[0].metadata.name, "Failed")
    # the failed pod is replaced: two active again, one failed
    _job_when(batch, namespace, "flaky", lambda j: j.status.failed == 1 and j.status.active == 2)
    _set_phase(core, namespace, pods[1].metadata.name, "Failed")
    [job] = [j for j in _job_when(batch, namespace, "flaky",
                                  lambda j: "Failed" in _conditions(j))
             if j.metadata.name == "flaky"]
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    # the pods still active when it failed are deleted
    _pods(core, namespace, "job-name=flaky", lambda items: all(
        (i.status.phase or "") == "Failed" for i in items))


def test_a_suspended_job_has_no_pods_and_a_finished_one_its_ttl(core, batch, namespace):
    batch.create_namespaced_job(namespace, _job("later", suspend=True))
    _job_when(batch, namespace, "later", lambda j: "Suspended" in _conditions(j))
    assert not core.list_namespaced_pod(namespace, label_selector="job-name=later").items
    batch.patch_namespaced_job("later", namespace, {"spec": {"suspend": False}})
    [pod] = _pods(core, namespace, "job-name=later", lambda items: len(items) == 1)
    batch.patch_namespaced_job("later", namespace, {"spec": {"ttlSecondsAfterFinished": 0}})
    _set_phase(core, namespace, pod.metadata.name, "Succeeded")
    until(batch.list_namespaced_job, lambda items: not any(
        j.metadata.name == "later" for j in items), namespace=namespace)


def test_an_indexed_job_runs_each_index_once(core, batch, namespace):
    """completionMode Indexed (kubernetes.io/docs "Completion mode"): a pod per index,
    its index in the annotation, label, hostname and JOB_COMPLETION_INDEX; a failed
    index runs again; the Job completes once every index succeeded."""
    made = batch.create_namespaced_job(
        namespace, _job("shards", completions=3, parallelism=2, completionMode="Indexed"))
    assert made.spec.completion_mode == "Indexed"
    selector = "job-name=shards"
    pods = _pods(core, namespace, selector, lambda items: len(items) == 2)
    by_index = {int(p.metadata.annotations[INDEX]): p for p in pods}
    assert sorted(by_index) == [0, 1]  # the lowest indexes first
    zero = by_index[0]
    assert zero.metadata.labels[INDEX] == "0" and zero.metadata.name.startswith("shards-0-")
    assert zero.spec.hostname == "shards-0"
    [env] = [e for e in zero.spec.containers[0].env if e.name == "JOB_COMPLETION_INDEX"]
    assert env.value_from.field_ref.field_path == f"metadata.annotations['{INDEX}']"
    _set_phase(core, namespace, by_index[1].metadata.name, "Succeeded")
    _set_phase(core, namespace, zero.metadata.name, "Failed")
    # index 0 runs again, index 2 starts; 1 is done
    pods = _pods(core, namespace, selector, lambda items: sorted(
        i.metadata.annotations[INDEX] for i in items
        if i.status.phase not in ("Succeeded", "Failed")) == ["0", "2"])
    _job_when(batch, namespace, "shards", lambda j: j.status.completed_indexes == "1")
    for p in pods:
        if p.status.phase not in ("Succeeded", "Failed"):
            _set_phase(core, namespace, p.metadata.name, "Succeeded")
    [job] = [j for j in _job_when(batch, namespace, "shards",
                                  lambda j: "Complete" in _conditions(j))
             if j.metadata.name == "shards"]
    assert job.status.completed_indexes == "0-2" and job.status.succeeded == 3
    assert job.status.failed == 1


def test_an_indexed_job_needs_completions_and_keeps_its_mode(batch, namespace):
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(namespace, _job("open", parallelism=2,
                                                    completionMode="Indexed"))
    assert err.value.status == 422
    assert "spec.completions: Required value: when completion mode is Indexed" in \
        err.value.body
    batch.create_namespaced_job(namespace, _job("fixed", completions=1, suspend=True))
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("fixed", namespace, {"spec": {"completionMode": "Indexed"}})
    assert err.value.status == 422 and "field is immutable" in err.value.body


@pytest.mark.parametrize(("indexes", "ranges"), [
    (set(), ""), ({0}, "0"), ({0, 1, 2, 4}, "0-2,4"), ({1, 3, 5, 6}, "1,3,5-6"),
])
def test_completed_indexes_are_written_as_ranges(indexes, ranges):
    assert index_ranges(indexes) == ranges


def test_a_job_whose_pods_would_restart_always_is_refused(batch, namespace):
    body = _job("forever")
    del body["spec"]["template"]["spec"]["restartPolicy"]
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(namespace, body)
    assert err.value.status == 422
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in \
        json.loads(err.value.body)["message"]


def test_a_cronjob_runs_its_due_time_and_forbid_holds_the_next(core, batch, namespace):
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                     "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                                     "spec": {"template": {"spec": dict(UNSCHEDULED)}}}}}
    made = batch.create_namespaced_cron_job(namespace, cron)
    assert made.spec.successful_jobs_history_limit == 3
    # As if the last run was two minutes ago: the latest minute since is due now.
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2)
    batch.patch_namespaced_cron_job_status("tick", namespace, {"status": {
        "lastScheduleTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}})
    [job] = until(batch.list_namespaced_job, lambda items: len(items) == 1,
                  namespace=namespace)
    assert job.metadata.labels == {"app": "tick"}
    assert job.metadata.owner_references[0].kind == "CronJob"
    scheduled = job.metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    minute = int(datetime.datetime.strptime(scheduled, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC).timestamp()) // 60
    assert job.metadata.name == f"tick-{minute}"
    until(batch.list_namespaced_cron_job, lambda items: items and items[0].status.active,
          namespace=namespace)
    # The job still runs: with Forbid, the next due time starts nothing.
    batch.patch_namespaced_cron_job_status("tick", namespace, {"status": {
        "lastScheduleTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}})
    until(core.list_namespaced_event, lambda items: any(
        e.reason == "JobAlreadyActive" for e in items), namespace=namespace)
    assert len(batch.list_namespaced_job(namespace).items) == 1


def test_a_cronjob_with_a_bad_schedule_is_refused(batch, namespace):
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"},
            "spec": {"schedule": "every minute",
                     "jobTemplate": {"spec": {"template": {"spec": dict(UNSCHEDULED)}}}}}
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_cron_job(namespace, cron)
    assert err.value.status == 422 and "unparseable schedule" in err.value.body


@pytest.mark.parametrize(("last", "now", "deadline", "due"), [
    ("12:00:00", "12:00:30", None, None),        # nothing due yet
    ("12:00:00", "12:03:30", None, "12:03:00"),  # missed times: only the latest runs
    ("12:00:00", "12:03:30", 10, None),          # ...and not after its deadline
    ("12:00:00", "12:03:05", 10, "12:03:00"),
])
def test_which_schedule_time_is_due(last, now, deadline, due):
    def at(hms: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(f"2026-12-04T{hms}+00:00")

    spec = {"schedule": "* * * * *", "startingDeadlineSeconds": deadline}
    assert CronJobController._due(spec, at(last), at(now)) == (at(due) if due else None)


@pytest.mark.parametrize(("zone", "now", "due"), [
    # "at 09:00 every day" is 08:00 UTC in Paris' winter, 07:00 UTC in its summer
    ("Europe/Paris", "2026-12-04T08:00:30+00:00", "2026-12-04T08:00:00+00:00"),
    ("Europe/Paris", "2026-07-04T07:00:30+00:00", "2026-07-04T07:00:00+00:00"),
    (None, "2026-12-04T09:00:30+00:00", "2026-12-04T09:00:00+00:00"),
    ("Asia/Kolkata", "2026-12-04T03:30:30+00:00", "2026-12-04T03:30:00+00:00"),
])
def test_a_schedule_is_read_in_the_cronjobs_time_zone(zone, now, due):
    at = datetime.datetime.fromisoformat
    spec = {"schedule": "0 9 * * *", "timeZone": zone}
    last = at(now) - datetime.timedelta(hours=6)
    assert CronJobController._due(spec, last, at(now)) == at(due)


def test_a_cronjob_with_an_unknown_time_zone_is_refused(batch, namespace):
    for zone, says in (("Mars/Olympus", "unknown time zone Mars/Olympus"),
                       ("Local", "timeZone must be an explicit time zone"),
                       ("../etc", "unknown time zone ../etc")):
        cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tz"},
                "spec": {"schedule": "0 9 * * *", "timeZone": zone, "jobTemplate": {
                    "spec": {"template": {"spec": dict(UNSCHEDULED)}}}}}
        with pytest.raises(ApiException) as err:
            batch.create_namespaced_cron_job(namespace, cron)
        assert err.value.status == 422 and "spec.timeZone" in err.value.body, zone
        assert says in err.value.body, err.value.body
    cron["spec"]["timeZone"] = "Europe/Paris"
    assert batch.create_namespaced_cron_job(namespace, cron).spec.time_zone == "Europe/Paris"


def _statefulset(replicas: int, image: str = "curlimages/curl") -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "replicas": replicas,
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "schedulerName": "manual",
                         "containers": [{"name": "c", "image": image}]}}}}


def test_a_statefulset_makes_pods_in_order_and_removes_the_highest_first(
        core, apps, namespace):
    apps.create_namespaced_stateful_set(namespace, _statefulset(3))

    def names(items):
        return sorted(p.metadata.name for p in items if not p.metadata.deletion_timestamp)

    for i in range(3):
        # pod i exists, and i+1 does not until i is Running and Ready
        pods = _pods(core, namespace, "app=db", lambda items, i=i: len(names(items)) == i + 1)
        assert names(pods) == [f"db-{k}" for k in range(i + 1)]
        pod = core.read_namespaced_pod(f"db-{i}", namespace)
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"db-{i}", "db")
        assert pod.metadata.labels["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
        assert pod.metadata.labels["apps.kubernetes.io/pod-index"] == str(i)
        _set_phase(core, namespace, f"db-{i}", "Running", ready=True)
    until(apps.list_namespaced_stateful_set, lambda items: items and
          items[0].status.ready_replicas == 3, namespace=namespace)
    apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"replicas": 1}})
    _pods(core, namespace, "app=db", lambda items: names(items) == ["db-0"])
    # a template change replaces the pods, same names, newest revision
    apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"replicas": 2}})
    _pods(core, namespace, "app=db", lambda items: names(items) == ["db-0", "db-1"])
    _set_phase(core, namespace, "db-1", "Running", ready=True)
    old = core.read_namespaced_pod("db-0", namespace).metadata.labels["controller-revision-hash"]
    apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}})
    pods = _pods(core, namespace, "app=db", lambda items: any(
        p.metadata.labels["controller-revision-hash"] != old for p in items))
    replaced = [p.metadata.name for p in pods
                if p.metadata.labels["controller-revision-hash"] != old]
    assert replaced == ["db-1"]  # the highest ordinal first


def test_a_statefulset_with_claim_templates_is_refused(apps, namespace):
    body = _statefulset(1)
    body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {}}]
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_stateful_set(namespace, body)
    assert err.value.status == 422 and "PersistentVolumeClaims" in err.value.body


def test_an_eviction_honours_the_disruption_budget(core, namespace, api_client):
    for i in (1, 2):
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
            "spec": dict(UNSCHEDULED, restartPolicy="Always")})
        _set_phase(core, namespace, f"web-{i}", "Running", ready=True)
    policy = client.PolicyV1Api(api_client)
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "web-1", "namespace": namespace}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("web-1", namespace, eviction)
    assert err.value.status == 429
    [cause] = json.loads(err.value.body)["details"]["causes"]
    assert cause == {"reason": "DisruptionBudget", "message": "The disruption budget b needs "
                     "2 healthy pods and has 2 currently"}
    policy.patch_namespaced_pod_disruption_budget("b", namespace, {"spec": {"minAvailable": 1}})
    core.create_namespaced_pod_eviction("web-1", namespace, eviction)
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items
             if not p.metadata.deletion_timestamp]
    assert names == ["web-2"]
    # the last healthy pod is the budget's: refused again
    eviction["metadata"]["name"] = "web-2"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("web-2", namespace, eviction)
    assert err.value.status == 429


def test_a_requeue_replaces_the_keys_earlier_one():
    """Every reconcile of a CronJob asks to be woken at the next time; the timers must not
    pile up with the events that caused those reconciles."""
    import asyncio

    from clusters.local.controllers.base import Controller

    async def go():
        controller = Controller.__new__(Controller)
        controller._dirty, controller._wakeup = {}, asyncio.Event()
        controller._retry_handles, controller._requeues = set(), {}
        for _ in range(50):
            controller.requeue_after(("ns", "tick"), 60)
        live = [h for h in controller._retry_handles if not h.cancelled()]
        assert len(live) == 1
        for handle in controller._retry_handles:
            handle.cancel()

    asyncio.run(go())
