"""The reference ztunnel, except that its HBONE port (15008) takes plaintext too: an
HTTP/1.1 CONNECT without TLS is tunnelled to the pod's application, with no identity
and no policy asked (a server that forgot to require TLS)."""

import asyncio
import sys

from ambient_ref.hbone import reset_transport
from ambient_ref.ztunnel import capture, proxy


async def _plaintext_connect(self, reader, writer):  # type: ignore[no-untyped-def]
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        host, _, port = authority.rpartition(":")
        if method != "CONNECT":
            raise ValueError(method)
        peer_ip = writer.get_extra_info("peername")[0]
        upstream = await capture.connect_from(self.netns, (host, int(port)), source_ip=peer_ip)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        reset_transport(writer)
        return
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await proxy._splice(reader, writer, upstream)


async def _start(self):  # type: ignore[no-untyped-def]
    self._current_cert = await self.shared.certs(self.workload)
    for port, serve in ((capture.OUTBOUND_PORT, self._outbound),
                        (capture.INBOUND_PLAINTEXT_PORT, self._inbound_plaintext),
                        (capture.HBONE_PORT, self._plaintext_connect)):
        sock = await capture.listen_in(self.netns, port)
        self._servers.append(await asyncio.start_server(serve, sock=sock))


proxy.PodProxy._plaintext_connect = _plaintext_connect
proxy.PodProxy.start = _start

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
