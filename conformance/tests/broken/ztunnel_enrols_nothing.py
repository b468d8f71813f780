"""The reference ztunnel, except that it enrols nothing: it marks each mesh pod as
captured (the redirection annotation) but binds no listener in it and installs no
redirection rule, so every connection goes straight to its destination."""

import sys

from ambient_ref.ztunnel import capture, proxy


async def _no_listeners(self):  # type: ignore[no-untyped-def]
    return None


async def _no_rules(netns, node_addresses):  # type: ignore[no-untyped-def]
    return None


proxy.PodProxy.start = _no_listeners
capture.install = _no_rules

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
