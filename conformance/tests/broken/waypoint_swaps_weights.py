"""The reference waypoint, except that route weights are applied in reverse order
(90/10 becomes 10/90)."""

import sys

# _pick is looked up in routing.table (where RouteTable._apply calls it) at call time.
from ambient_ref.waypoint.routing import table

_pick = table._pick


def _swapped(rule, rng):  # type: ignore[no-untyped-def]
    targets = rule.targets
    if len(targets) < 2:
        return _pick(rule, rng)
    weights = [t.weight for t in targets][::-1]
    draw = rng.randrange(sum(weights))
    for target, weight in zip(targets, weights, strict=True):
        if draw < weight:
            return target
        draw -= weight
    raise AssertionError("unreachable")


table._pick = _swapped

from ambient_ref.waypoint.main import main  # noqa: E402

sys.exit(main())
