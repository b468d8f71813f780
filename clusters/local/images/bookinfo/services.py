"""The four Bookinfo services as aiohttp applications, and how a process serves one.

Everything observable is decided in ``core``/``pages``; this module does the I/O:
routing, calling the upstream services, the access log and start/stop.

Upstream connections are *not* reused by default.  The upstream productpage says why
("we intentionally do not pool so that we can easily test load distribution across many
versions of our backends"): with ambient's L4 load balancing, and with a ClusterIP's
per-connection DNAT, a kept-alive connection would pin every request to one reviews pod
and the v1/v2/v3 mix the docs show would vanish.  So one shared ClientSession is used
(one resolver cache, one place to close), whose connector closes each connection after
its request.  ``BOOKINFO_UPSTREAM_KEEPALIVE=true`` turns reuse on for experiments.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from . import core, pages

JSON = "application/json"
HTML = "text/html"
# How long in-flight requests may run on after SIGTERM.  aiohttp waits this long for
# them, then as long again after cancelling, so a stop takes at most about 2 s.
SHUTDOWN_GRACE_SECONDS = 1.0
# productpage's per-request timeout towards details, reviews and ratings (connect, and
# then between bytes), as upstream's ``requests.get(timeout=3.0)``.
PRODUCTPAGE_TIMEOUT = 3.0
# Outbound connections one process may hold open at once; upstream productpage runs 8
# gevent workers, so this is generous rather than a throttle.
CONNECTION_LIMIT = 1024
DEFAULT_SESSION_KEY = "bookinfo-productpage-session"
SESSION_COOKIE = "session"

_INVALID = object()  # an upstream answer that was not JSON
_NO_RATINGS = core.ReviewsFlavour(ratings_enabled=False, star_color="black")


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Everything a service reads from its environment, resolved once at start.

    Tests build one with :meth:`from_env` and a plain dict, or directly, to point
    services at each other on loopback ports.
    """

    service: str
    version: str = "v1"
    podname: str = "localhost"
    clustername: str | None = None
    details_url: str = "http://details:9080"
    reviews_url: str = "http://reviews:9080"
    ratings_url: str = "http://ratings:9080"
    flavour: core.ReviewsFlavour = _NO_RATINGS
    flood_factor: int = 0
    session_key: bytes = DEFAULT_SESSION_KEY.encode()
    keepalive: bool = False
    upstream_timeout: float = PRODUCTPAGE_TIMEOUT

    @classmethod
    def from_env(cls, service: str, version: str, env: Mapping[str, str]) -> Settings:
        """Read the variables the upstream images honour (``*_HOSTNAME``,
        ``*_SERVICE_PORT``, SERVICES_DOMAIN, HOSTNAME, CLUSTER_NAME, ENABLE_RATINGS,
        STAR_COLOR, FLOOD_FACTOR) plus this implementation's own (POD_NAME,
        PRODUCTPAGE_SESSION_KEY, BOOKINFO_UPSTREAM_KEEPALIVE)."""
        if service not in core.SERVICES:
            raise ValueError(f"unknown Bookinfo service {service!r}")
        flood = env.get("FLOOD_FACTOR", "0").strip() or "0"
        return cls(
            service=service,
            version=version,
            podname=env.get("HOSTNAME") or env.get("POD_NAME") or socket.gethostname(),
            clustername=env.get("CLUSTER_NAME"),
            details_url=core.upstream_from_env(env, "details"),
            reviews_url=core.upstream_from_env(env, "reviews"),
            ratings_url=core.upstream_from_env(env, "ratings"),
            flavour=core.ReviewsFlavour.for_version(version, env),
            flood_factor=max(0, int(flood)),
            session_key=env.get("PRODUCTPAGE_SESSION_KEY", DEFAULT_SESSION_KEY).encode(),
            keepalive=_truthy(env.get("BOOKINFO_UPSTREAM_KEEPALIVE")),
        )


# --------------------------------------------------------------------------- plumbing


def _log(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # nobody is reading the log any more; keep serving regardless


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@web.middleware
async def access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One flushed stdout line per request, so ``kubectl logs`` shows traffic as it
    happens: time, peer, method, path, status, duration (499: client went away)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        took = (time.perf_counter() - started) * 1000
        _log(
            f"{_timestamp()} {request.remote} {request.method} {request.path_qs} "
            f"{status} {took:.1f}ms"
        )


def _json(
    body: Any, status: int = 200, dumps: Callable[[Any], str] = core.dumps_compact
) -> web.Response:
    return web.Response(text=dumps(body), status=status, content_type=JSON)


class Upstream:
    """The process's one HTTP client: a ClientSession made on start, closed on stop."""

    def __init__(self, keepalive: bool) -> None:
        self.keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            force_close=not self.keepalive,
            limit=CONNECTION_LIMIT,
            # libc's resolver, explicitly: it honours the pod's resolv.conf search list
            # and /etc/hosts exactly as the upstream images' runtimes do.
            resolver=aiohttp.ThreadedResolver(),
        )
        # Cookies travel only as the forwarded header, never via a shared jar.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_json(
        self, url: str, headers: Mapping[str, str], timeout: float
    ) -> tuple[int | None, Any]:
        """GET ``url``: (status, parsed JSON or ``_INVALID``), or (None, None) when no
        answer came (refused, reset, timed out)."""
        assert self._session is not None, "Upstream.start() not awaited"
        limits = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        try:
            async with self._session.get(url, headers=dict(headers), timeout=limits) as resp:
                status, raw = resp.status, await resp.read()
        except Exception:
            return None, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, _INVALID


def _with_upstream(app: web.Application, upstream: Upstream) -> None:
    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    app.cleanup_ctx.append(lifecycle)


def _new_app() -> web.Application:
    return web.Application(middlewares=[access_log])


# --------------------------------------------------------------------------- details


def make_details_app(settings: Settings) -> web.Application:
    """details: ``/health`` and the book details under the ``/details`` prefix.
    (Upstream's optional external book service, ENABLE_EXTERNAL_BOOK_SERVICE, needs the
    Internet and is not offered.)"""
    app = _new_app()

    async def health(_: web.Request) -> web.Response:
        return _json(core.DETAILS_HEALTH)

    async def details(request: web.Request) -> web.Response:
        status, body = core.details_response(request.path)
        return _json(body, status)

    app.router.add_route("*", "/health", health)
    app.router.add_route("*", "/details", details)
    app.router.add_route("*", "/details/{rest:.*}", details)
    return app


# --------------------------------------------------------------------------- ratings


def make_ratings_app(
    settings: Settings,
    *,
    draw: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """ratings: GET/POST ``/ratings/<id>`` and ``/health``, with the fault-injection
    variants chosen by version (v-faulty, v-delayed, v-unavailable, v-unhealthy)."""
    app = _new_app()
    store = core.RatingsStore()
    started = clock()
    version = settings.version

    async def health(_: web.Request) -> web.Response:
        if core.ratings_healthy(version, clock() - started):
            return _json(core.RATINGS_HEALTHY)
        return _json(core.RATINGS_UNHEALTHY, 500)

    async def get(request: web.Request) -> web.Response:
        product_id = core.ratings_id(request.raw_path)
        if product_id is None:
            return _json(core.RATINGS_BAD_ID, 400)
        outcome = core.ratings_outcome(version, draw(), clock() - started)
        if outcome == "unavailable":
            return _json(core.RATINGS_UNAVAILABLE, 503)
        if outcome == "delay":
            await asyncio.sleep(core.RATINGS_DELAY_SECONDS)
        return _json(store.get(product_id, version))

    async def post(request: web.Request) -> web.Response:
        product_id = core.ratings_id(request.raw_path)
        if product_id is None:
            return _json(core.RATINGS_BAD_ID, 400)
        try:
            ratings = json.loads(await request.text())
        except ValueError:
            return _json(core.RATINGS_BAD_JSON, 400)
        if version == "v2":
            return _json(core.RATINGS_POST_NOT_IMPLEMENTED, 501)
        return _json(store.put(product_id, ratings))

    app.router.add_get("/health", health)
    app.router.add_get("/ratings/{rest:.*}", get)
    app.router.add_post("/ratings/{rest:.*}", post)
    return app


# --------------------------------------------------------------------------- reviews


def make_reviews_app(settings: Settings) -> web.Application:
    """reviews: ``/reviews/<int>`` (ratings fetched when the flavour enables them) and
    ``/health``.  It answers 200 even when ratings failed, marking each rating instead."""
    app = _new_app()
    upstream = Upstream(settings.keepalive)
    _with_upstream(app, upstream)
    flavour = settings.flavour

    async def health(_: web.Request) -> web.Response:
        return web.Response(text=core.REVIEWS_HEALTH_TEXT, content_type=JSON)

    async def reviews(request: web.Request) -> web.Response:
        product_id = core.parse_java_int(request.match_info["product_id"])
        if product_id is None:
            raise web.HTTPNotFound()
        stars = (-1, -1)
        if flavour.ratings_enabled:
            headers = core.copy_headers(request.headers, core.TRACE_HEADERS)
            headers["Accept"] = JSON
            url = f"{settings.ratings_url}/ratings/{product_id}"
            status, payload = await upstream.get_json(url, headers, flavour.ratings_timeout)
            if status == 200:
                stars = core.stars_from_ratings(payload)
            else:
                what = f"got status of {status}" if status else "got no answer"
                _log(f"Error: unable to contact {settings.ratings_url}/ratings {what}")
        body = core.reviews_body(product_id, settings.podname, settings.clustername, flavour, stars)
        return web.Response(text=core.encode_reviews(body), content_type=JSON)

    app.router.add_get("/health", health)
    app.router.add_get("/reviews/{product_id}", reviews)
    return app


# --------------------------------------------------------------------------- productpage


@dataclass
class ProductPage:
    """productpage's calls to its upstreams, with upstream's status and error rules:
    a non-200 or missing answer becomes (its status or 500, the "Sorry, ..." body);
    reviews is asked twice before giving up, a quirk the fault-injection task uses."""

    settings: Settings
    upstream: Upstream
    metrics: core.RequestResults = field(default_factory=core.RequestResults)

    async def _fetch(
        self, app: str, url: str, headers: Mapping[str, str], attempts: int = 1
    ) -> tuple[int, Any]:
        status: int | None = None
        for _ in range(attempts):
            status, payload = await self.upstream.get_json(
                url, headers, self.settings.upstream_timeout
            )
            if status == 200 and payload is not _INVALID:
                self.metrics.inc(app, 200, time.time())
                return 200, payload
        code = status if status and status != 200 else 500
        self.metrics.inc(app, code, time.time())
        return code, core.unavailable_body(app)

    async def details(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return await self._fetch("details", self._url("details", product_id), headers)

    async def reviews(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return await self._fetch("reviews", self._url("reviews", product_id), headers, 2)

    async def ratings(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return await self._fetch("ratings", self._url("ratings", product_id), headers)

    def _url(self, service: str, product_id: str) -> str:
        base = {
            "details": self.settings.details_url,
            "reviews": self.settings.reviews_url,
            "ratings": self.settings.ratings_url,
        }[service]
        return f"{base}/{service}/{quote(product_id, safe='')}"


def make_productpage_app(settings: Settings) -> web.Application:
    """productpage: the HTML pages, the JSON API, login/logout, /health and /metrics."""
    app = _new_app()
    upstream = Upstream(settings.keepalive)
    _with_upstream(app, upstream)
    page = ProductPage(settings, upstream)
    tree = pages.service_tree(settings.details_url, settings.reviews_url, settings.ratings_url)
    index_html = pages.render_index(tree)

    def session(request: web.Request) -> dict[str, Any]:
        return core.load_session(request.cookies.get(SESSION_COOKIE), settings.session_key)

    def forward(request: web.Request) -> dict[str, str]:
        user = session(request).get("user")
        return core.productpage_forward_headers(
            request.headers, user if isinstance(user, str) else None
        )

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=index_html, content_type=HTML)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="Product page is healthy", content_type=HTML)

    async def front(request: web.Request) -> web.Response:
        headers = forward(request)
        user = session(request).get("user")
        details_status, details = await page.details("0", headers)
        if settings.flood_factor > 0:
            await asyncio.gather(
                *(page.reviews("0", headers) for _ in range(settings.flood_factor))
            )
        reviews_status, reviews = await page.reviews("0", headers)
        html = pages.render_productpage(
            core.product(0),
            details_status,
            details,
            reviews_status,
            reviews,
            user if isinstance(user, str) else None,
        )
        return web.Response(text=html, content_type=HTML)

    async def api_products(_: web.Request) -> web.Response:
        return _json(core.products(), dumps=core.dumps_python)

    def api(
        call: Callable[[str, Mapping[str, str]], Awaitable[tuple[int, Any]]],
    ) -> Callable[..., Any]:
        async def handler(request: web.Request) -> web.Response:
            status, body = await call(request.match_info["product_id"], forward(request))
            return _json(body, status, dumps=core.dumps_python)

        return handler

    def back(request: web.Request, data: Mapping[str, Any] | None) -> web.Response:
        # Upstream redirects to the Referer; without one it would fail, so go home.
        location = request.headers.get("Referer") or "/productpage"
        response = web.Response(status=302, headers={"Location": location}, text="Redirecting")
        if data:
            value = core.sign_session(data, settings.session_key)
            response.set_cookie(SESSION_COOKIE, value, path="/", httponly=True)
        else:
            response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        # Flask's request.values: the query string first, then the form.
        user = request.query.get("username", form.get("username"))
        data = session(request)
        if isinstance(user, str):
            data["user"] = user
        else:
            data.pop("user", None)
        return back(request, data)

    async def logout(request: web.Request) -> web.Response:
        data = session(request)
        data.pop("user", None)
        return back(request, data)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            text=page.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def stylesheet(_: web.Request) -> web.Response:
        return web.Response(text=pages.STYLESHEET, content_type="text/css")

    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/health", health)
    app.router.add_get("/productpage", front)
    app.router.add_get("/api/v1/products", api_products)
    app.router.add_get("/api/v1/products/{product_id}", api(page.details))
    app.router.add_get("/api/v1/products/{product_id}/reviews", api(page.reviews))
    app.router.add_get("/api/v1/products/{product_id}/ratings", api(page.ratings))
    app.router.add_post("/login", login)
    app.router.add_get("/logout", logout)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/static/tailwind/tailwind.css", stylesheet)
    return app


# --------------------------------------------------------------------------- serving

FACTORIES: dict[str, Callable[[Settings], web.Application]] = {
    "productpage": make_productpage_app,
    "details": make_details_app,
    "reviews": make_reviews_app,
    "ratings": make_ratings_app,
}


def make_app(settings: Settings) -> web.Application:
    """The application for ``settings.service``."""
    return FACTORIES[settings.service](settings)


async def start(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = SHUTDOWN_GRACE_SECONDS,
) -> tuple[web.AppRunner, int]:
    """Listen on ``host:port`` (0 picks a free port); returns the runner, to stop with
    ``await runner.cleanup()``, and the port actually bound."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


async def serve(settings: Settings, host: str, port: int) -> None:
    """Run one service until SIGTERM or SIGINT, then close listeners, give in-flight
    requests :data:`SHUTDOWN_GRACE_SECONDS`, and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await start(make_app(settings), host, port)
    _log(
        f"{_timestamp()} {settings.service} {settings.version} listening on {host}:{bound} "
        f"(pid {os.getpid()})"
    )
    try:
        await stop.wait()
    finally:
        _log(f"{_timestamp()} {settings.service} stopping")
        await runner.cleanup()
