"""The reference ztunnel, except that DENY policies never match."""

import sys

from ambient_ref.policy import evaluate

_decide = evaluate.ordered_decision


def _ignore_deny(deny, allow, dry_run, matches):  # type: ignore[no-untyped-def]
    return _decide([], allow, dry_run, matches)


evaluate.ordered_decision = _ignore_deny

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
