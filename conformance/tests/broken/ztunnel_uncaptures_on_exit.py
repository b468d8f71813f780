"""The reference ztunnel, except that stopping takes its pods out of the mesh: while no
ztunnel runs on the node their traffic goes out in plaintext, around every policy
(what the reference did before it left the redirection in place)."""

import sys

from ambient_ref.ztunnel import main as ztunnel_main

_release = ztunnel_main.Ztunnel._release


async def _always_uncapture(self, uid, annotate, uncapture=True):  # type: ignore[no-untyped-def]
    await _release(self, uid, annotate, True)


ztunnel_main.Ztunnel._release = _always_uncapture

sys.exit(ztunnel_main.main())
