"""The reference ztunnel, except that its HBONE server tunnels to whatever address the
CONNECT names, not only to the pod it serves (no "ip mismatch" refusal)."""

import asyncio
import sys
from dataclasses import replace

from ambient_ref.ztunnel import proxy

_on_connect = proxy.PodProxy._on_connect


async def _anywhere(self, request):  # type: ignore[no-untyped-def]
    host, _, port = request.authority.rpartition(":")
    if host == self.ip:
        return await _on_connect(self, request)
    # pretend the target is this pod's, then dial the real one
    answer = await _on_connect(self, replace(request, authority=f"{self.ip}:{port}"))
    if answer.status != 200:
        return answer
    target = (host, int(port))
    connect_from = proxy.capture.connect_from

    async def connect():  # type: ignore[no-untyped-def]
        sock = await connect_from(self.netns, target, source_ip=request.peer_address[0])
        return await asyncio.open_connection(sock=sock)

    return proxy.ConnectResponse.accept_via(connect, on_done=answer.on_done)


proxy.PodProxy._on_connect = _anywhere

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
