"""Job and CronJob controllers: run pods to completion, and Jobs on a schedule.

The Job controller follows k8s.io/kubernetes ``pkg/controller/job/job_controller.go``
in what a user sees:

- it keeps ``min(parallelism, completions - succeeded)`` pods active (pods named
  ``<job>-<random>``, labelled by the template the API server completed, see
  ``apiserver/batch.py``);
- ``status.active/ready/succeeded/failed/terminating``, ``startTime``;
- once ``completions`` pods succeeded: conditions ``SuccessCriteriaMet`` then
  ``Complete`` and ``completionTime``; once more pods failed than ``backoffLimit``:
  ``FailureTarget`` then ``Failed`` with reason ``BackoffLimitExceeded``; past
  ``activeDeadlineSeconds``: ``DeadlineExceeded``.  Active pods of a finished Job are
  deleted;
- ``suspend: true`` deletes active pods and sets ``Suspended``;
- ``ttlSecondsAfterFinished`` deletes the finished Job (and its pods) after the TTL,
  as the TTL-after-finished controller does.

- ``completionMode: Indexed``: each of the indexes 0..completions-1 must succeed once;
  a pod per missing index, lowest first, named ``<job>-<index>-<random>``, with the
  index in the annotation and label ``batch.kubernetes.io/job-completion-index``,
  the hostname ``<job>-<index>`` and ``JOB_COMPLETION_INDEX`` in each container's
  environment (from that annotation, as the real controller adds it); the succeeded
  ones in ``status.completedIndexes`` (``"0-2,4"``).

Simplified: a failed pod is replaced at once, without the real controller's
exponential back-off (10 s doubling); pod failure and success policies are not run.

The CronJob controller (``pkg/controller/cronjob/cronjob_controllerv2.go``) creates
``<cronjob>-<minutes since the epoch of the scheduled time>`` Jobs at each time of the
schedule (read in ``timeZone``, UTC without one, by ``croniter``, which reads the
same five-field and ``@hourly`` forms as the real controller's parser, and IANA
zones by ``zoneinfo``), with ``concurrencyPolicy`` Allow/Forbid/Replace,
``suspend``, ``startingDeadlineSeconds`` (a missed time is run late only within it;
without it only the latest missed time runs), history limits, and
``status.active``/``lastScheduleTime``/``lastSuccessfulTime``.
"""

from __future__ import annotations

import copy
import datetime
import itertools
from typing import Any

from ..apiserver import errors
from ..apiserver.api import DeleteOptions
from ..apiserver.batch import COMPLETION_INDEX, SCHEDULED_AT, time_zone
from ..apiserver.meta import controller_ref, now
from ..apiserver.store import Event
from .base import Controller, controller_keys, is_pod_ready, owned, record_event
from .workloads import write_status

PODS = ("", "pods")
JOBS = ("batch", "jobs")
CRONJOBS = ("batch", "cronjobs")
COMPONENT = "job-controller"


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.UTC)


def _format_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _schedule(spec: dict[str, Any], start: datetime.datetime) -> Any:
    """The times of the CronJob's schedule after ``start``, read in its ``timeZone``
    (croniter, loaded by the first CronJob): aware datetimes, which compare with UTC
    ones as instants."""
    from croniter import croniter

    return croniter(spec["schedule"], start.astimezone(time_zone(spec.get("timeZone"))))


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
    t = now()
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": t, "lastTransitionTime": t}


def completion_index(pod: dict[str, Any]) -> int | None:
    """The index an Indexed Job's pod runs (its annotation), if it has a valid one."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def index_ranges(indexes: set[int]) -> str:
    """``status.completedIndexes``: sorted, runs of consecutive indexes as ranges."""
    runs: list[list[int]] = []
    for i in sorted(indexes):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def with_index(pod: dict[str, Any], job_name: str, index: int) -> None:
    """Make ``pod`` the one of ``index`` (pkg/controller/job/indexed_job_utils.go):
    its name, annotation and label, hostname, and ``JOB_COMPLETION_INDEX`` in each
    container's environment, read from the annotation."""
    meta = pod["metadata"]
    meta["generateName"] = f"{job_name}-{index}-"
    meta["annotations"][COMPLETION_INDEX] = str(index)
    meta["labels"][COMPLETION_INDEX] = str(index)
    spec = pod["spec"]
    spec.setdefault("hostname", f"{job_name}-{index}")
    env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        variables = container.setdefault("env", [])
        if not any(v.get("name") == env["name"] for v in variables):
            variables.append(copy.deepcopy(env))


def job_finished(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job has that condition, else None."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


class JobController(Controller):
    name = COMPONENT
    watches = (JOBS, PODS)

    def resync(self) -> None:
        for job in self.api.store.items(JOBS):
            self.enqueue((job["metadata"]["namespace"], job["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == JOBS:
            return [(ev.obj["metadata"]["namespace"], ev.obj["metadata"]["name"])]
        return controller_keys(ev, "Job")

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        job = self.api.store.get(JOBS, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec, status = job.get("spec") or {}, copy.deepcopy(job.get("status") or {})
        pods = owned(self.api, PODS, job)
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        phase = [(p.get("status") or {}).get("phase") for p in live]
        active = [p for p, ph in zip(live, phase, strict=True)
                  if ph not in ("Succeeded", "Failed")]
        failed = phase.count("Failed")
        indexed = spec.get("completionMode") == "Indexed"
        done: set[int] = set()
        if indexed:  # each index counts once, whatever ran it
            done = {i for p, ph in zip(live, phase, strict=True) if ph == "Succeeded"
                    and (i := completion_index(p)) is not None
                    and i < int(spec.get("completions") or 0)}
            succeeded = len(done)
            status["completedIndexes"] = index_ranges(done)
            if not status["completedIndexes"]:
                del status["completedIndexes"]
        else:
            succeeded = phase.count("Succeeded")
        finished = job_finished(job)
        if finished is not None:
            self._expire(job, status)
            return
        conditions = status.setdefault("conditions", [])
        if spec.get("suspend"):
            self._delete(job, active)
            if not any(c["type"] == "Suspended" for c in conditions):
                conditions.append(_condition("Suspended", "JobSuspended", "Job suspended"))
                record_event(self.api, job, "Suspended", "Job suspended", component=COMPONENT)
            status.pop("startTime", None)
            active = []
        else:
            if any(c["type"] == "Suspended" for c in conditions):
                status["conditions"] = conditions = [
                    c for c in conditions if c["type"] != "Suspended"]
                record_event(self.api, job, "Resumed", "Job resumed", component=COMPONENT)
            status.setdefault("startTime", now())
            completions = spec.get("completions")
            parallelism = int(spec.get("parallelism", 1))
            outcome = self._outcome(job, status, succeeded, failed, completions)
            if outcome is not None:
                ctype, reason, message = outcome
                interim = "SuccessCriteriaMet" if ctype == "Complete" else "FailureTarget"
                conditions.append(_condition(interim, reason, message))
                conditions.append(_condition(ctype, reason, message))
                if ctype == "Complete":
                    status["completionTime"] = now()
                self._delete(job, active)
                record_event(self.api, job, "Completed" if ctype == "Complete" else reason,
                             message, "Normal" if ctype == "Complete" else "Warning",
                             component=COMPONENT)
                active = []
            else:
                remaining = (completions - succeeded) if completions is not None else \
                    (0 if succeeded else parallelism)
                want = max(0, min(parallelism, remaining))
                active = self._scale(job, active, want, done if indexed else None)
                deadline = spec.get("activeDeadlineSeconds")
                if deadline is not None:
                    left = deadline - (_utcnow() - _parse_time(status["startTime"])
                                       ).total_seconds()
                    self.requeue_after(key, left + 0.5)
        status.update(active=len(active), succeeded=succeeded, failed=failed,
                      ready=sum(1 for p in active if is_pod_ready(p)),
                      terminating=len(terminating), uncountedTerminatedPods={})
        for field in ("active", "succeeded", "failed"):
            if not status[field]:
                del status[field]
        if not status["conditions"]:
            del status["conditions"]
        write_status(self.api, JOBS, job, status)

    def _outcome(self, job: dict[str, Any], status: dict[str, Any], succeeded: int,
                 failed: int, completions: int | None) -> tuple[str, str, str] | None:
        """(condition, reason, message) once the Job is decided, else None."""
        spec = job.get("spec") or {}
        if completions is not None and succeeded >= completions:
            return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
        if completions is None and succeeded > 0:
            return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
        if failed > int(spec.get("backoffLimit", 6)):
            return "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and status.get("startTime") and \
                (_utcnow() - _parse_time(status["startTime"])).total_seconds() >= deadline:
            return "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    def _scale(self, job: dict[str, Any], active: list[dict[str, Any]], want: int,
               done: set[int] | None = None) -> list[dict[str, Any]]:
        """Create or delete pods until ``want`` are active; for an Indexed Job (``done``:
        its succeeded indexes) the new pods take the lowest indexes nobody runs."""
        ns = job["metadata"]["namespace"]
        pods_rt = self.api.rt(*PODS)
        if len(active) > want:
            doomed = active[want:]
            self._delete(job, doomed)
            return active[:want]
        missing: list[int | None] = [None] * (want - len(active))
        if done is not None:
            running = {completion_index(p) for p in active}
            free = (i for i in range(int((job.get("spec") or {}).get("completions") or 0))
                    if i not in done and i not in running)
            missing = list(itertools.islice(free, want - len(active)))
        template = (job.get("spec") or {}).get("template") or {}
        for index in missing:
            tmeta = template.get("metadata") or {}
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"generateName": job["metadata"]["name"] + "-",
                                "namespace": ns,
                                "labels": dict(tmeta.get("labels") or {}),
                                "annotations": dict(tmeta.get("annotations") or {}),
                                "ownerReferences": [controller_ref(job)]},
                   "spec": copy.deepcopy(template.get("spec") or {})}
            if index is not None:
                with_index(pod, job["metadata"]["name"], index)
            if not pod["metadata"]["annotations"]:
                del pod["metadata"]["annotations"]
            created = self.api.create(pods_rt, "v1", ns, pod)
            active.append(created)
            record_event(self.api, job, "SuccessfulCreate",
                         f"Created pod: {created['metadata']['name']}", component=COMPONENT)
        return active

    def _delete(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        pods_rt = self.api.rt(*PODS)
        for pod in pods:
            try:
                self.api.delete(pods_rt, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                DeleteOptions())
            except errors.ApiError:
                continue
            record_event(self.api, job, "SuccessfulDelete",
                         f"Deleted pod: {pod['metadata']['name']}", component=COMPONENT)

    def _expire(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        """The TTL-after-finished controller's part: delete the Job once its TTL ran."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        ended = status.get("completionTime") or next(
            (c.get("lastTransitionTime") for c in status.get("conditions") or ()
             if c.get("type") == "Failed"), None)
        if not ended:
            return
        left = ttl - (_utcnow() - _parse_time(ended)).total_seconds()
        meta = job["metadata"]
        if left > 0:
            self.requeue_after((meta["namespace"], meta["name"]), left + 0.5)
            return
        self.api.delete(self.api.rt(*JOBS), meta["namespace"], meta["name"],
                        DeleteOptions(propagation="Background"))


class CronJobController(Controller):
    name = "cronjob-controller"
    watches = (CRONJOBS, JOBS)

    def resync(self) -> None:
        for cj in self.api.store.items(CRONJOBS):
            self.enqueue((cj["metadata"]["namespace"], cj["metadata"]["name"]))

    def keys_for(self, ev: Event) -> list[Any]:
        if ev.key == CRONJOBS:
            return [(ev.obj["metadata"]["namespace"], ev.obj["metadata"]["name"])]
        return controller_keys(ev, "CronJob")

    def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        cj = self.api.store.get(CRONJOBS, ns, name)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        spec, status = cj.get("spec") or {}, copy.deepcopy(cj.get("status") or {})
        jobs = owned(self.api, JOBS, cj)
        running = [j for j in jobs if job_finished(j) is None]
        for done in [j for j in jobs if job_finished(j) == "Complete"]:
            ended = (done.get("status") or {}).get("completionTime")
            if ended and ended > (status.get("lastSuccessfulTime") or ""):
                status["lastSuccessfulTime"] = ended
        self._trim_history(cj, jobs)
        current = _utcnow()
        created = cj["metadata"]["creationTimestamp"]
        last = _parse_time(status.get("lastScheduleTime") or created)
        due = self._due(spec, last, current)
        if due is not None and not spec.get("suspend"):
            policy = spec.get("concurrencyPolicy", "Allow")
            if running and policy == "Forbid":
                record_event(self.api, cj, "JobAlreadyActive",
                             "Not starting job because prior execution is running and "
                             "concurrency policy is Forbid", component=self.name)
            else:
                if running and policy == "Replace":
                    for job in running:
                        self.api.delete(self.api.rt(*JOBS), ns, job["metadata"]["name"],
                                        DeleteOptions(propagation="Background"))
                    running = []
                job = self._create_job(cj, due)
                if job is not None:
                    running.append(job)
                status["lastScheduleTime"] = _format_time(due)
        status["active"] = [{"kind": "Job", "namespace": ns, "apiVersion": "batch/v1",
                             "name": j["metadata"]["name"], "uid": j["metadata"]["uid"],
                             "resourceVersion": j["metadata"].get("resourceVersion")}
                            for j in running]
        if not status["active"]:
            del status["active"]
        write_status(self.api, CRONJOBS, cj, status)
        after = max(current, due or current)
        upcoming = _schedule(spec, after).get_next(datetime.datetime)
        self.requeue_after(key, (upcoming - _utcnow()).total_seconds() + 0.2)

    @staticmethod
    def _due(spec: dict[str, Any], last: datetime.datetime, current: datetime.datetime
             ) -> datetime.datetime | None:
        """The latest schedule time after ``last`` and not after ``current`` that may still
        run (within ``startingDeadlineSeconds``), or None."""
        times = _schedule(spec, last)
        latest = None
        for _ in range(1000):  # bounded, as the real controller gives up after 100 misses
            t = times.get_next(datetime.datetime)
            if t > current:
                break
            latest = t
        if latest is None:
            return None
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (current - latest).total_seconds() > deadline:
            return None
        return latest

    def _create_job(self, cj: dict[str, Any], due: datetime.datetime) -> dict[str, Any] | None:
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        name = f"{cj['metadata']['name']}-{int(due.timestamp()) // 60}"
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": cj["metadata"]["namespace"],
                            "labels": dict(tmeta.get("labels") or {}),
                            "annotations": {**(tmeta.get("annotations") or {}),
                                            SCHEDULED_AT: _format_time(due)},
                            "ownerReferences": [controller_ref(cj)]},
               "spec": copy.deepcopy(template.get("spec") or {})}
        try:
            made = self.api.create(self.api.rt(*JOBS), "v1", cj["metadata"]["namespace"], job)
        except errors.ApiError as exc:
            if exc.code == 409:  # made already, at this time
                return None
            record_event(self.api, cj, "FailedCreate", f"Error creating job: {exc.message}",
                         "Warning", component=self.name)
            raise
        record_event(self.api, cj, "SuccessfulCreate", f"Created job {name}",
                     component=self.name)
        return made

    def _trim_history(self, cj: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        spec = cj.get("spec") or {}
        for outcome, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                               ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            done = sorted((j for j in jobs if job_finished(j) == outcome),
                          key=lambda j: j["metadata"]["creationTimestamp"])
            for job in done[: max(0, len(done) - int(limit))]:
                self.api.delete(self.api.rt(*JOBS), job["metadata"]["namespace"],
                                job["metadata"]["name"], DeleteOptions(propagation="Background"))
                record_event(self.api, cj, "SawCompletedJob" if outcome == "Complete"
                             else "SuccessfulDelete",
                             f"Deleted job {job['metadata']['name']}", component=self.name)
