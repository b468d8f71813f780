"""The pods and services ``proxy`` subresource: HTTP through the API server to a pod.

``/api/v1/namespaces/<ns>/pods/<name>[:<port>]/proxy/<path>`` and
``.../services/[http:]<name>[:<port>]/proxy/<path>`` (what ``kubectl get --raw`` and
``kubectl proxy`` users and dashboards call; k8s.io/kubernetes
``pkg/registry/core/{pod,service}/rest/proxy.go``).  The port is a number or a port
name (a container port's of the pod; a Service port's, mapped to its target port on
a ready endpoint pod); without one, a pod's is 80 and a Service's its only port.

The request is sent as HTTP/1.1 with h11 (sans-IO) over a connection to
``localhost:<port>`` in the pod's network namespace, the dialer port-forward uses,
where the real server would connect to the pod's address: a server listening only on
the pod's address is not reached.  The client's Authorization header is not passed
on; the answer comes back as the pod gave it.  ``https:`` targets are refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from . import errors
from .eviction import healthy
from .portforward import Dial

READ_TIMEOUT_S = 60.0
MAX_BODY = 16 * 1024 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) and the caller's credentials stay here.
_DROPPED = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                      "transfer-encoding", "upgrade", "authorization", "host"})


def split_target(name: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` -> (scheme, name, port)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        if parts[0] in ("http", "https"):
            return parts[0], parts[1], ""
        return "", parts[0], parts[1]
    return "", name, ""


def _container_port(pod: dict[str, Any], port: str) -> int | None:
    if port.isdigit():
        return int(port)
    for container in (pod.get("spec") or {}).get("containers") or ():
        for p in container.get("ports") or ():
            if p.get("name") == port:
                return int(p["containerPort"])
    return None


class ResourceProxy:
    def __init__(self, dial: Dial) -> None:
        self.dial = dial

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        scheme, name, port_text = split_target(name)
        if scheme == "https":
            raise errors.bad_request("the local cluster's proxy speaks plain HTTP only; "
                                     "use http: or no scheme")
        if rt.key == ("", "pods"):
            pod = api.get(rt, ns, name)
            port = _container_port(pod, port_text) if port_text else 80
            if port is None:
                raise errors.bad_request(f'pod {name} has no container port named "{port_text}"')
        elif rt.key == ("", "services"):
            pod, port = self._endpoint(api, ns, name, port_text)
        else:
            raise errors.method_not_allowed(f"{rt.plural} have no proxy subresource")
        if (pod.get("status") or {}).get("phase") != "Running":
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f"pod {pod['metadata']['name']} is not running")
        marker = "/proxy"
        rest = request.path[request.path.index(marker) + len(marker):] or "/"
        target = rest + (f"?{request.query_string}" if request.query_string else "")
        body = await request.read()
        if len(body) > MAX_BODY:
            raise errors.ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        try:
            reader, writer = await asyncio.wait_for(self.dial(pod, port), 10)
        except (OSError, TimeoutError) as exc:
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f"error trying to reach service: dial tcp "
                                  f"127.0.0.1:{port}: connect: {exc}") from None
        try:
            return await _exchange(request, reader, writer, target, body, port)
        finally:
            writer.close()

    @staticmethod
    def _endpoint(api: Any, ns: str, name: str, port_text: str) -> tuple[dict[str, Any], int]:
        """A ready pod behind Service ``name`` and the target port for ``port_text``."""
        svc = api.get(api.rt("", "services"), ns, name)
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if port_text:
            chosen = next((p for p in ports if p.get("name") == port_text
                           or str(p.get("port")) == port_text), None)
        else:
            chosen = ports[0] if len(ports) == 1 else None
        if chosen is None:
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f'no endpoints available for service "{name}"'
                                  + ("" if port_text else ": name a port (service:port)"))
        selector = spec.get("selector") or {}
        pods = [p for p in api.store.items(("", "pods"), ns)
                if selector and all((p["metadata"].get("labels") or {}).get(k) == v
                                    for k, v in selector.items()) and healthy(p)]
        for pod in pods:
            target = chosen.get("targetPort", chosen.get("port"))
            port = _container_port(pod, str(target))
            if port is not None:
                return pod, port
        raise errors.ApiError(503, "ServiceUnavailable",
                              f'no endpoints available for service "{name}"')


async def _exchange(request: web.Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, target: str, body: bytes,
                    port: int) -> web.StreamResponse:
    import h11  # loaded by the first proxied request, not at the server's start

    conn = h11.Connection(h11.CLIENT)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED]
    headers += [("Host", f"localhost:{port}"), ("Connection", "close")]
    if body:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    writer.write(conn.send(h11.Request(method=request.method, target=target,
                                       headers=headers)))
    if body:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    response: web.StreamResponse | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT_S)
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.Response):
            response = web.StreamResponse(status=event.status_code,
                                          reason=event.reason.decode(errors="replace"))
            for k, v in event.headers:
                if k.decode().lower() not in _DROPPED | {"content-length"}:
                    response.headers.add(k.decode(), v.decode(errors="replace"))
            await response.prepare(request)
        elif isinstance(event, h11.Data):
            assert response is not None
            await response.write(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if response is None:
        raise errors.ApiError(502, "BadGateway", "the pod closed the connection without "
                              "answering")
    await response.write_eof()
    return response
