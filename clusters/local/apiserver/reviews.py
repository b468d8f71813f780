"""Answers to the review kinds clients ask the API about themselves with.

``kubectl auth can-i`` creates a SelfSubjectAccessReview (``--list``: a
SelfSubjectRulesReview), ``kubectl auth whoami`` a SelfSubjectReview; controllers
and webhooks ask SubjectAccessReview and LocalSubjectAccessReview about others.
None is stored: the answer is the created object with its ``status`` filled in
(k8s.io/kubernetes ``pkg/registry/authorization/*`` and
``pkg/registry/authentication/selfsubjectreview``).

The answers are truthful for this server: it authorizes nothing (README, "How the
local API differs"), so every authenticated caller may do everything.  The reason
given says so, as a real authorizer's reason names the rule that allowed.
"""

from __future__ import annotations

from typing import Any

ALLOW_REASON = ("the local cluster authorizes every authenticated request "
                "(RBAC objects are stored, not enforced)")
ACCESS_REVIEWS = frozenset({"SelfSubjectAccessReview", "SubjectAccessReview",
                            "LocalSubjectAccessReview"})


def access_review(review: dict[str, Any]) -> dict[str, Any]:
    """Any of the three access reviews: allowed."""
    review["status"] = {"allowed": True, "reason": ALLOW_REASON}
    return review


def rules_review(review: dict[str, Any]) -> dict[str, Any]:
    """SelfSubjectRulesReview: every verb on every resource and URL, complete."""
    review["status"] = {
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        "incomplete": False,
    }
    return review


def self_subject_review(review: dict[str, Any], user: dict[str, Any] | None
                        ) -> dict[str, Any]:
    """SelfSubjectReview: the user the request authenticated as."""
    info = {k: (user or {}).get(k) for k in ("username", "uid", "groups", "extra")}
    review["status"] = {"userInfo": {k: v for k, v in info.items() if v}}
    return review
