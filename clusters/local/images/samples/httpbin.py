"""Istio's httpbin sample: the endpoints its tasks use, as ``mccutchen/go-httpbin`` answers.

Istio's ``samples/httpbin/httpbin.yaml`` runs ``docker.io/mccutchen/go-httpbin``
(port 8080).  The Python ``httpbin`` package would be the natural choice, but on
Python 3.11 it requires ``greenlet<3``, which Locust's gevent (the perf extra) cannot
share an environment with; and its JSON differs from go-httpbin's (headers and args
there are lists).  So this is go-httpbin's behaviour (``httpbin/handlers.go``,
``responses.go``, v2.15.0) for the endpoints Istio's documentation and tasks call:

``/get`` ``/head`` ``/post`` ``/put`` ``/patch`` ``/delete`` ``/anything[/...]``
``/headers`` ``/ip`` ``/user-agent`` ``/uuid`` ``/hostname`` ``/status/<code>`` (its
special bodies and headers, 418 included; no weighted choices) ``/delay/<seconds>``
(at most 10) ``/response-headers`` ``/bytes/<n>`` (at most 100 KiB) ``/json``
``/robots.txt`` ``/``.  Anything else is a 404 like go-httpbin's.

JSON is indented by two spaces with a final newline, headers are Go-canonical names
with lists of values, and the origin is the client address unless a proxy header
(``X-Forwarded-For`` and the CDN ones go-httpbin reads) names another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import uuid
from typing import Any

from aiohttp import web

MAX_DELAY_S = 10.0
MAX_BYTES = 100 * 1024
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
_CLIENT_IP_HEADERS = ("Fly-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
                      "True-Client-IP")
_REDIRECT = {"Location": "/redirect/1"}
# go-httpbin's createSpecialCases (without the HTML bodies of 300 and 308)
_STATUS_CASES: dict[int, tuple[bytes, dict[str, str]]] = {
    301: (b"", _REDIRECT), 302: (b"", _REDIRECT), 303: (b"", _REDIRECT),
    305: (b"", _REDIRECT), 307: (b"", _REDIRECT),
    401: (b"", {"WWW-Authenticate": 'Basic realm="Fake Realm"'}),
    402: (b"Fuck you, pay me!", {"X-More-Info": "http://vimeo.com/22053820"}),
    407: (b"", {"Proxy-Authenticate": 'Basic realm="Fake Realm"'}),
    418: (b"I'm a teapot!", {"X-More-Info": "http://tools.ietf.org/html/rfc2324"}),
}


def canonical(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-request-id`` -> ``X-Request-Id``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    body = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    return web.Response(body=body.encode(), status=status,
                        headers={"Content-Type": JSON_TYPE, **(headers or {})})


def _error(status: int, message: str) -> web.Response:
    from http import HTTPStatus

    return _json({"status_code": status, "error": HTTPStatus(status).phrase,
                  "detail": message}, status)


def headers_of(request: web.Request) -> dict[str, list[str]]:
    """Go's ``http.Header``, keys sorted as Go's JSON writes a map."""
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        out.setdefault(canonical(name), []).append(value)
    out.setdefault("Host", [request.host])
    return dict(sorted(out.items()))


def origin(request: web.Request) -> str:
    for name in _CLIENT_IP_HEADERS:
        if request.headers.get(name):
            return request.headers[name]
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else ""


def args_of(request: web.Request) -> dict[str, list[str]]:
    """Go's ``url.Values``, keys sorted."""
    out: dict[str, list[str]] = {}
    for key, value in request.query.items():
        out.setdefault(key, []).append(value)
    return dict(sorted(out.items()))


def _url(request: web.Request) -> str:
    scheme = request.headers.get("X-Forwarded-Proto") or request.scheme
    return f"{scheme}://{request.host}{request.path_qs}"


def no_body(request: web.Request) -> dict[str, Any]:
    return {"args": args_of(request), "headers": headers_of(request),
            "method": request.method, "origin": origin(request), "url": _url(request)}


async def with_body(request: web.Request) -> dict[str, Any]:
    out = no_body(request)
    raw = await request.read()
    out.update(data=raw.decode(errors="replace"), files={}, form={}, json=None)
    ctype = request.content_type
    if ctype == "application/x-www-form-urlencoded":
        form = await request.post()
        out["form"] = {k: form.getall(k) for k in set(form.keys())}
        out["data"] = ""
    elif ctype == "application/json" and raw:
        try:
            out["json"] = json.loads(raw)
        except ValueError:
            return {"error": "invalid JSON"}
    return out


async def get(request: web.Request) -> web.Response:
    return _json(no_body(request))


async def body_methods(request: web.Request) -> web.Response:
    data = await with_body(request)
    if "error" in data:
        return _error(400, "failed to parse request body: invalid JSON")
    return _json(data)


async def anything(request: web.Request) -> web.Response:
    return await body_methods(request)


async def headers(request: web.Request) -> web.Response:
    return _json({"headers": headers_of(request)})


async def ip(request: web.Request) -> web.Response:
    return _json({"origin": origin(request)})


async def user_agent(request: web.Request) -> web.Response:
    return _json({"user-agent": request.headers.get("User-Agent", "")})


async def uuid4(_: web.Request) -> web.Response:
    return _json({"uuid": str(uuid.uuid4())})


async def hostname(_: web.Request) -> web.Response:
    return _json({"hostname": os.environ.get("HOSTNAME", "go-httpbin")})


async def status(request: web.Request) -> web.Response:
    text = request.match_info["code"]
    if not text.isdigit() or not 100 <= int(text) <= 599:
        return _error(400, f"invalid status code: {text!r}")
    code = int(text)
    body, extra = _STATUS_CASES.get(code, (b"", {}))
    return web.Response(body=body, status=code,
                        headers={"Content-Type": TEXT_TYPE, **extra})


async def delay(request: web.Request) -> web.Response:
    try:
        seconds = float(request.match_info["duration"].removesuffix("s"))
    except ValueError:
        return _error(400, "invalid duration")
    if not 0 <= seconds <= MAX_DELAY_S:
        return _error(400, f"invalid duration: must be between 0s and {MAX_DELAY_S:g}s")
    await asyncio.sleep(seconds)  # the endpoint's whole purpose: answer this much later
    response = await body_methods(request)
    response.headers["Server-Timing"] = (
        f'initial_delay;dur={seconds * 1000:.2f};desc="initial delay"')
    return response


async def response_headers(request: web.Request) -> web.Response:
    args = args_of(request)
    response = _json(args)
    for key in args:  # the query's values replace the header, then all are added
        response.headers.popall(canonical(key), None)
    for key, values in args.items():
        for value in values:
            response.headers.add(canonical(key), value)
    return response


async def random_bytes(request: web.Request) -> web.Response:
    text = request.match_info["n"]
    if not text.isdigit() or int(text) > MAX_BYTES:
        return _error(400, f"invalid count: must be 0 to {MAX_BYTES}")
    seed = request.query.get("seed")
    rng = random.Random(int(seed)) if seed and seed.lstrip("-").isdigit() else random.Random()
    return web.Response(body=rng.randbytes(int(text)),
                        headers={"Content-Type": "application/octet-stream"})


async def sample_json(_: web.Request) -> web.Response:
    return _json({"slideshow": {"author": "Yours Truly", "date": "date of publication",
                                "slides": [{"title": "Wake up to WonderWidgets!",
                                            "type": "all"}],
                                "title": "Sample Slide Show"}})


async def robots(_: web.Request) -> web.Response:
    return web.Response(text="User-agent: *\nDisallow: /deny\n", content_type="text/plain")


async def index(_: web.Request) -> web.Response:
    return web.Response(text="go-httpbin (the local cluster's; see "
                             "clusters/local/images/samples/httpbin.py)\n",
                        content_type="text/html")


async def not_found(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "not found")
    except web.HTTPMethodNotAllowed:
        return _error(405, "method not allowed")


def app() -> web.Application:
    application = web.Application(middlewares=[web.middleware(not_found)])
    r = application.router
    r.add_get("/", index)
    r.add_get("/get", get)
    r.add_route("HEAD", "/head", get)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r.add_route(method, f"/{method.lower()}", body_methods)
    r.add_route("*", "/anything", anything)
    r.add_route("*", "/anything/{rest:.*}", anything)
    r.add_get("/headers", headers)
    r.add_get("/ip", ip)
    r.add_get("/user-agent", user_agent)
    r.add_get("/uuid", uuid4)
    r.add_get("/hostname", hostname)
    r.add_route("*", "/status/{code}", status)
    r.add_route("*", "/delay/{duration}", delay)
    r.add_route("*", "/response-headers", response_headers)
    r.add_get("/bytes/{n}", random_bytes)
    r.add_get("/json", sample_json)
    r.add_get("/robots.txt", robots)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    # both families, as Go's ":8080" listens (asyncio makes a "::" socket IPv6-only)
    web.run_app(app(), host=["0.0.0.0", "::"], port=parser.parse_args().port, print=None)


if __name__ == "__main__":
    main()
