"""The reference waypoint, except that every request is authorized (L7 policy ignored)."""

import sys

from ambient_ref.policy.evaluate import Decision
from ambient_ref.waypoint import main as waypoint


def _allow_all(*_args, **_kwargs):  # type: ignore[no-untyped-def]
    return Decision(True, "allowed (self-test: policies ignored)", None, ())


waypoint.authorize_l7 = _allow_all

sys.exit(waypoint.main())
