"""The reference ztunnel, except that clients bypass it: only inbound traffic is
redirected to it, so a pod's outbound connections leave in plaintext, straight to
their destination, without the client's identity."""

import sys

from ambient_ref.ztunnel import capture

_render = capture.render_rules
_OUTBOUND_REDIRECT = f"redirect to :{capture.OUTBOUND_PORT}"


def _inbound_only(node_addresses):  # type: ignore[no-untyped-def]
    rules = _render(node_addresses)
    return "\n".join(line for line in rules.splitlines() if _OUTBOUND_REDIRECT not in line)


capture.render_rules = _inbound_only

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
