"""The reference ztunnel, except that an exact principal or namespace in a policy also
matches anything it is a prefix of (``.../sa/sleep`` lets ``.../sa/sleepy`` in)."""

import sys

from ambient_ref.policy import evaluate

_any = evaluate._Strings.any


def _loose(self, value):  # type: ignore[no-untyped-def]
    if value is not None and any(value.startswith(exact) for exact in self.exact):
        return True
    return _any(self, value)


evaluate._Strings.any = _loose

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
