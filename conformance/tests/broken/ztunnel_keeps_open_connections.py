"""The reference ztunnel, except that open inbound connections are never authorized
again: a DENY applies to new connections only (what the reference did before it
re-checked them as istio/ztunnel's PolicyWatcher does)."""

import sys

from ambient_ref.ztunnel import proxy


def _never_recheck(self):  # type: ignore[no-untyped-def]
    return 0


proxy.PodProxy.recheck_inbound = _never_recheck

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
