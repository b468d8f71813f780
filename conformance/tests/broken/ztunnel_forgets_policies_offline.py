"""The reference ztunnel, except that it drops every authorization policy while its
configuration stream is down (fail open when the control plane is unreachable)."""

import sys

from ambient_ref.xds import client

_connection = client.XdsClient._connection


async def _forgetting(self, http):  # type: ignore[no-untyped-def]
    try:
        await _connection(self, http)
    finally:
        self.state.authorizations.clear()
        if self.on_change is not None:
            self.on_change("authorizations", {}, [])


client.XdsClient._connection = _forgetting

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
