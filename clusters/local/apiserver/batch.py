"""Jobs and CronJobs as the API server takes them: defaults, generated selectors, checks.

What the real server does on create (k8s.io/kubernetes ``pkg/apis/batch/v1/
defaults.go``, ``pkg/registry/batch/job/strategy.go``, ``pkg/apis/batch/validation``),
less what this cluster does not run (pod failure and success policies, managedBy):

- a Job without ``manualSelector`` gets the selector
  ``batch.kubernetes.io/controller-uid=<uid>`` and its pod template the labels
  ``batch.kubernetes.io/controller-uid``, ``batch.kubernetes.io/job-name`` and their
  legacy twins ``controller-uid`` and ``job-name``;
- ``completions`` and ``parallelism`` are 1 when neither is given, ``parallelism`` 1
  when only it is missing; ``backoffLimit`` 6; ``completionMode`` NonIndexed;
- a pod template must restart ``OnFailure`` or ``Never`` (an unset one is defaulted to
  ``Always`` first and refused, as on a real server);
- an ``Indexed`` Job needs ``completions`` (at most 100,000, as its ``parallelism``),
  and the completion mode cannot change;
- a CronJob's ``timeZone`` must be an IANA zone name;
- a CronJob's schedule must parse (standard cron, ``@hourly``-style descriptors; the
  same parser the controller runs), and gets ``concurrencyPolicy`` Allow, ``suspend``
  false and history limits 3 and 1.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections.abc import Callable
from typing import Any

from .selectors import SelectorError, label_selector_from_spec

Cause = dict[str, str]
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_MODES = ("NonIndexed", "Indexed")
MAX_INDEXED_COMPLETIONS = 100_000  # pkg/apis/batch/validation: maxParallelismForIndexedJob
JOB_RESTART_POLICIES = ("OnFailure", "Never")


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Cause:
    return {"field": field, "reason": reason, "message": message}


def default_job(obj: dict[str, Any], default_pod_spec: Callable[[dict[str, Any]], None]
                ) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    if not spec.get("manualSelector"):
        meta = obj["metadata"]
        uid, name = meta["uid"], meta["name"]
        spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update({CONTROLLER_UID: uid, JOB_NAME: name,
                       LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name})
    default_pod_spec(template.setdefault("spec", {}))


def job_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    for field in ("completions", "parallelism", "backoffLimit", "activeDeadlineSeconds",
                  "ttlSecondsAfterFinished"):
        value = spec.get(field)
        if isinstance(value, int) and value < 0:
            causes.append(_cause(f"spec.{field}", f"Invalid value: {value}: must be greater "
                                 "than or equal to 0"))
    mode = spec.get("completionMode")
    if mode not in COMPLETION_MODES:
        causes.append(_cause("spec.completionMode", f'Unsupported value: "{mode}": supported '
                             'values: "NonIndexed", "Indexed"', "FieldValueNotSupported"))
    elif mode == "Indexed":
        if spec.get("completions") is None:
            causes.append(_cause("spec.completions", "Required value: when completion mode "
                                 "is Indexed", "FieldValueRequired"))
        for field in ("completions", "parallelism"):
            value = spec.get(field)
            if isinstance(value, int) and value > MAX_INDEXED_COMPLETIONS:
                causes.append(_cause(f"spec.{field}", f"Invalid value: {value}: must be less "
                                     f"than or equal to {MAX_INDEXED_COMPLETIONS} when "
                                     "completion mode is Indexed"))
    if old is not None and (old.get("spec") or {}).get("completionMode") != mode:
        causes.append(_cause("spec.completionMode", "Invalid value: field is immutable"))
    template = spec.get("template") or {}
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in JOB_RESTART_POLICIES:
        causes.append(_cause("spec.template.spec.restartPolicy",
                             f'Unsupported value: "{policy}": supported values: "OnFailure", '
                             '"Never"', "FieldValueNotSupported"))
    labels = (template.get("metadata") or {}).get("labels") or {}
    try:
        selector = label_selector_from_spec(spec.get("selector"))
    except SelectorError as exc:
        causes.append(_cause("spec.selector", f"Invalid value: {exc}"))
    else:
        if spec.get("selector") is None:
            causes.append(_cause("spec.selector", "Required value", "FieldValueRequired"))
        elif not selector.matches(labels):
            causes.append(_cause("spec.template.metadata.labels",
                                 "Invalid value: `selector` does not match template `labels`"))
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        causes.append(_cause("spec.selector", "Invalid value: field is immutable"))
    return causes


def default_cronjob(obj: dict[str, Any], default_pod_spec: Callable[[dict[str, Any]], None]
                    ) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
    default_pod_spec(job_spec.setdefault("template", {}).setdefault("spec", {}))


def schedule_problem(schedule: Any) -> str | None:
    """Why ``schedule`` is not one the controller can run, or None."""
    if not isinstance(schedule, str) or not schedule.strip():
        return "Required value"
    if schedule.startswith(("TZ=", "CRON_TZ=")):
        return (f'Invalid value: "{schedule}": cannot use TZ or CRON_TZ in schedule, use '
                "timeZone field instead")
    from croniter import croniter  # loaded by the first CronJob, not at the server's start

    if not croniter.is_valid(schedule):
        return f'Invalid value: "{schedule}": unparseable schedule'
    return None


_TZ_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")


def time_zone(name: str | None) -> datetime.tzinfo:
    """The zone a CronJob's schedule is read in (UTC when it names none)."""
    if not name or name in ("UTC", "Etc/UTC"):
        return datetime.UTC
    return zoneinfo.ZoneInfo(name)


def time_zone_problem(name: Any) -> str | None:
    """Why ``name`` is no ``timeZone``, in the real server's words
    (pkg/apis/batch/validation ``validateTimeZone``: an IANA name, read as Go's
    ``time.LoadLocation`` reads it), or None."""
    if not isinstance(name, str) or not name:
        return "timeZone must be nil or non-empty string"
    for part in name.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.fullmatch(part):
            return f"unknown time zone {name}"
    if name.lower() == "local":
        return ("timeZone must be an explicit time zone as defined in "
                "https://www.iana.org/time-zones")
    try:
        time_zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {name}"
    return None


def cronjob_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    problem = schedule_problem(spec.get("schedule"))
    if problem is not None:
        causes.append(_cause("spec.schedule", problem, "FieldValueRequired"
                             if problem == "Required value" else "FieldValueInvalid"))
    if "timeZone" in spec and spec["timeZone"] is not None:
        problem = time_zone_problem(spec["timeZone"])
        if problem is not None:
            causes.append(_cause("spec.timeZone",
                                 f'Invalid value: "{spec["timeZone"]}": {problem}',
                                 "FieldValueInvalid"))
    policy = spec.get("concurrencyPolicy")
    if policy not in ("Allow", "Forbid", "Replace"):
        causes.append(_cause("spec.concurrencyPolicy",
                             f'Unsupported value: "{policy}": supported values: "Allow", '
                             '"Forbid", "Replace"', "FieldValueNotSupported"))
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in JOB_RESTART_POLICIES:
        causes.append(_cause("spec.jobTemplate.spec.template.spec.restartPolicy",
                             f'Unsupported value: "{policy}": supported values: "OnFailure", '
                             '"Never"', "FieldValueNotSupported"))
    return causes
