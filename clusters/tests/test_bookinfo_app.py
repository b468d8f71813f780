"""The project's Bookinfo: pure JSON/HTML/header functions, the four services wired
together on loopback, and the real entry point as a process.

The services run in one background event loop per module on ephemeral 127.0.0.1 ports,
pointed at each other through the same environment variables the cluster would set;
the tests talk to them with plain blocking http.client, as a curl in a pod would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from clusters.local.images.bookinfo import core, pages, services
from clusters.polling import poll

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
PODS = {v: f"reviews-{v}-5fd6d4f8f8-{v}abc" for v in ("v1", "v2", "v3")}
STAR = "glyphicon glyphicon-star"


# --------------------------------------------------------------------------- helpers


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def request(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
) -> Reply:
    """One request to 127.0.0.1:port, no proxies, no redirects followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read().decode())
    finally:
        conn.close()


class LoopThread:
    """An asyncio loop on its own thread, so blocking tests can drive aiohttp servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Seen:
    """What a server received: (path, lower-cased headers) per request."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def with_request_id(self, rid: str) -> list[tuple[str, dict[str, str]]]:
        return [r for r in self.requests if r[1].get("x-request-id") == rid]


def recording(app: web.Application) -> Seen:
    """Make ``app`` (before it starts) note every request's path and headers."""
    seen = Seen()

    @web.middleware
    async def record(
        req: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.requests.append((req.path_qs, {k.lower(): v for k, v in req.headers.items()}))
        return await handler(req)

    app.middlewares.append(record)
    return seen


def closed_port() -> tuple[socket.socket, int]:
    """A bound, never-listening socket: connecting to its port is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def upstream_env(**ports: int) -> dict[str, str]:
    env = {}
    for name, port in ports.items():
        env[f"{name.upper()}_HOSTNAME"] = "127.0.0.1"
        env[f"{name.upper()}_SERVICE_PORT"] = str(port)
    return env


class Stack:
    """Servers started on the loop thread, all stopped together."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}
        self.seen: dict[str, Seen] = {}
        self.sockets: list[socket.socket] = []

    def serve(self, name: str, app: web.Application, record: bool = False) -> int:
        if record:
            self.seen[name] = recording(app)
        runner, port = self.loop.run(services.start(app, "127.0.0.1", 0))
        self.runners.append(runner)
        self.ports[name] = port
        return port

    def service(
        self, name: str, service: str, version: str = "v1", record: bool = False, **env: str
    ) -> int:
        settings = services.Settings.from_env(service, version, env)
        return self.serve(name, services.make_app(settings), record)

    def dead_port(self) -> int:
        sock, port = closed_port()
        self.sockets.append(sock)
        return port

    def close(self) -> None:
        for runner in reversed(self.runners):
            self.loop.run(runner.cleanup())
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    loop = LoopThread()
    s = Stack(loop)
    try:
        ratings = s.service("ratings", "ratings", record=True)
        details = s.service("details", "details", record=True)
        for v in ("v1", "v2", "v3"):
            reviews = s.service(
                f"reviews-{v}",
                "reviews",
                v,
                record=True,
                HOSTNAME=PODS[v],
                **upstream_env(ratings=ratings),
            )
            s.service(
                f"productpage-{v}",
                "productpage",
                **upstream_env(details=details, reviews=reviews, ratings=ratings),
            )
        dead = s.dead_port()
        # reviews v2 whose ratings is gone; a productpage whose reviews and details are.
        s.service(
            "reviews-no-ratings", "reviews", "v2", HOSTNAME=PODS["v2"], **upstream_env(ratings=dead)
        )
        s.service(
            "productpage-no-ratings",
            "productpage",
            **upstream_env(details=details, reviews=s.ports["reviews-no-ratings"]),
        )
        s.service(
            "productpage-alone",
            "productpage",
            **upstream_env(details=dead, reviews=dead, ratings=dead),
        )
        yield s
    finally:
        s.close()
        loop.close()


# --------------------------------------------------------------------------- pure layer


def test_details_body_and_id_parsing_follow_ruby_integer() -> None:
    assert core.details_response("/details/0") == (200, core.details_body(0))
    assert core.details_body(3) == {
        "id": 3,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }
    assert core.details_response("/details/7/")[1]["id"] == 7
    assert core.details_response("/details/010")[1]["id"] == 8  # a leading 0 is octal
    assert core.details_response("/details/0x1f")[1]["id"] == 31
    for bad in ("/details", "/details/abc", "/details/08", "/details/1.5", "/details/"):
        assert core.details_response(bad) == (400, {"error": "please provide numeric product id"})


def test_ratings_ids_follow_parse_int() -> None:
    assert core.ratings_id("/ratings/0") == 0
    assert core.ratings_id("/ratings/7abc") == 7
    assert core.ratings_id("/ratings/3?user=x") == 3
    assert core.ratings_id("/ratings/a/12") == 12
    assert core.ratings_id("/ratings/abc") is None
    assert core.ratings_id("/ratings/") is None


def test_ratings_fault_variants() -> None:
    assert core.ratings_outcome("v1", 0.0, 0) == "ok"
    assert core.ratings_outcome("v-faulty", 0.2, 0) == "unavailable"
    assert core.ratings_outcome("v-faulty", 0.7, 0) == "ok"
    assert core.ratings_outcome("v-delayed", 0.2, 0) == "delay"
    assert core.ratings_outcome("v-unavailable", 0.0, 30) == "ok"
    assert core.ratings_outcome("v-unavailable", 0.0, 90) == "unavailable"
    assert core.ratings_healthy("v-unhealthy", 100) and not core.ratings_healthy(
        "v-unhealthy", 1000
    )
    store = core.RatingsStore()
    assert store.get(1) == {"id": 1, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    store.put(1, {"Reviewer1": 1})
    assert store.get(1) == {"id": 1, "ratings": {"Reviewer1": 1}}
    assert store.get(1, "v2")["ratings"] == {"Reviewer1": 5, "Reviewer2": 4}


def test_reviews_bodies_per_version() -> None:
    env: dict[str, str] = {}
    v1, v2, v3 = (core.ReviewsFlavour.for_version(v, env) for v in ("v1", "v2", "v3"))
    assert (v1.ratings_enabled, v2.star_color, v3.star_color) == (False, "black", "red")
    assert (v2.ratings_timeout, v3.ratings_timeout) == (10.0, 2.5)
    body = core.reviews_body(0, "reviews-v1-x", None, v1)
    assert body["id"] == "0" and body["clustername"] == "null"
    assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert all("rating" not in r for r in body["reviews"])
    body = core.reviews_body(0, "p", "east", v3, (5, 4))
    assert [r["rating"] for r in body["reviews"]] == [
        {"stars": 5, "color": "red"},
        {"stars": 4, "color": "red"},
    ]
    failed = core.reviews_body(0, "p", None, v2)
    assert {r["rating"]["error"] for r in failed["reviews"]} == {core.RATING_ERROR}
    # The Java-style spelling is the same JSON.
    assert json.loads(core.encode_reviews(body)) == body
    assert core.encode_reviews(body).startswith('{"id": "0","podname": "p",')
    assert core.ReviewsFlavour.for_version("v1", {"ENABLE_RATINGS": "TRUE"}).ratings_enabled
    assert core.ReviewsFlavour.for_version("v2", {"STAR_COLOR": "red"}).star_color == "red"
    assert core.parse_java_int("12") == 12 and core.parse_java_int("+3") == 3
    assert core.parse_java_int("1x") is None and core.parse_java_int(str(2**31)) is None
    assert core.stars_from_ratings({"ratings": {"Reviewer1": 2}}) == (2, -1)
    assert core.stars_from_ratings({"error": "x"}) == (-1, -1)


def test_b3_is_re_encoded_like_opentelemetry_b3_multi() -> None:
    short = {
        "x-b3-traceid": "463ac35c9f6413ad",
        "x-b3-spanid": "a2fb4a1d1a96d312",
        "x-b3-parentspanid": "0020000000000001",
        "x-b3-flags": "1",
    }
    assert core.b3_forward(short) == {
        "x-b3-traceid": "0000000000000000463ac35c9f6413ad",
        "x-b3-spanid": "a2fb4a1d1a96d312",
        "x-b3-sampled": "1",
    }
    single = {"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"}
    assert core.b3_forward(single)["x-b3-sampled"] == "0"
    assert core.b3_forward(single)["x-b3-spanid"] == "e457b5a2e4d86bd1"
    assert core.b3_forward({"x-b3-traceid": "zz", "x-b3-spanid": "a2fb4a1d1a96d312"}) == {}
    assert core.b3_forward({"x-b3-sampled": "1"}) == {}


def test_productpage_headers_take_end_user_from_the_session_only() -> None:
    incoming = {
        "x-request-id": "r1",
        "end-user": "mallory",
        "user-agent": "curl/8",
        "cookie": "a=b",
        "traceparent": "00-1-2-01",
        "x-b3-parentspanid": "1",
    }
    out = core.productpage_forward_headers(incoming, None)
    assert out == {
        "x-request-id": "r1",
        "user-agent": "curl/8",
        "cookie": "a=b",
        "traceparent": "00-1-2-01",
    }
    assert core.productpage_forward_headers(incoming, "jason")["end-user"] == "jason"
    assert set(core.TRACE_HEADERS) - set(core.PRODUCTPAGE_COPIED_HEADERS) == {
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "end-user",
    }


def test_session_cookie_rejects_tampering() -> None:
    value = core.sign_session({"user": "jason"}, b"k")
    assert core.load_session(value, b"k") == {"user": "jason"}
    assert core.load_session(value, b"other") == {}
    assert core.load_session(value[:-2] + "AA", b"k") == {}
    assert core.load_session("junk", b"k") == {} and core.load_session(None, b"k") == {}


def test_upstream_urls_from_env() -> None:
    assert core.upstream_from_env({}, "details") == "http://details:9080"
    env = {"REVIEWS_HOSTNAME": "rv", "REVIEWS_SERVICE_PORT": "1234", "SERVICES_DOMAIN": "ns.svc"}
    assert core.upstream_from_env(env, "reviews") == "http://rv.ns.svc:1234"
    settings = services.Settings.from_env("reviews", "v3", {"POD_NAME": "p", "HOSTNAME": "h"})
    assert settings.podname == "h" and settings.flavour.star_color == "red"
    assert services.Settings.from_env("reviews", "v1", {"POD_NAME": "p"}).podname == "p"


def test_rendered_page_markers() -> None:
    v2 = core.ReviewsFlavour.for_version("v2", {})
    html = pages.render_productpage(
        core.product(0),
        200,
        core.details_body(0),
        200,
        core.reviews_body(0, "reviews-v2-a-b", None, v2, (5, 4)),
    )
    assert "<title>Simple Bookstore App</title>" in html
    assert '<h1 class="text-5xl font-bold">The Comedy of Errors</h1>' in html
    assert html.count(STAR) == 9 and 'class="flex gap-x-1 text-black-500"' in html
    assert html.count("Reviews served by:\nreviews-v2-a-b\n") == 2
    assert "on cluster" not in html
    clustered = core.reviews_body(0, "p", "east", v2, (5, 4))
    assert "on cluster <div>east</div>" in pages.render_productpage(None, 200, {}, 200, clustered)
    failed = pages.render_productpage(
        core.product(0),
        503,
        core.unavailable_body("details"),
        500,
        core.unavailable_body("reviews"),
    )
    assert "Error fetching product details" in failed and "Error fetching product reviews" in failed
    assert "<strong>500</strong>: Sorry, product reviews are currently unavailable" in failed
    assert STAR not in failed and "Reviews served by:" not in failed
    index = pages.render_index(pages.service_tree("http://d:1", "http://r:2", "http://q:3"))
    assert "<title>" not in index and 'href="/productpage?u=normal"' in index
    assert "http://q:3" in index


def test_metrics_text() -> None:
    m = core.RequestResults()
    m.inc("details", 200, 1.0)
    m.inc("details", 200, 2.0)
    text = m.render()
    assert 'request_result_total{destination_app="details",response_code="200"} 2.0' in text
    assert "# TYPE request_result_total counter" in text


# --------------------------------------------------------------------------- services


def test_details_service(stack: Stack) -> None:
    port = stack.ports["details"]
    health = request(port, "/health")
    assert (health.status, health.json()) == (200, {"status": "Details is healthy"})
    ok = request(port, "/details/0")
    assert ok.status == 200 and ok.headers["Content-Type"].startswith("application/json")
    assert ok.json() == core.details_body(0)
    bad = request(port, "/details/abc")
    assert (bad.status, bad.json()) == (400, {"error": "please provide numeric product id"})


def test_ratings_service(stack: Stack) -> None:
    port = stack.ports["ratings"]
    assert request(port, "/health").json() == {"status": "Ratings is healthy"}
    got = request(port, "/ratings/0")
    assert (got.status, got.text) == (200, '{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}')
    bad = request(port, "/ratings/x")
    assert (bad.status, bad.json()) == (400, {"error": "please provide numeric product ID"})
    posted = request(port, "/ratings/42", method="POST", body='{"Reviewer1": 1}')
    assert posted.json() == {"id": 42, "ratings": {"Reviewer1": 1}}
    assert request(port, "/ratings/42").json() == {"id": 42, "ratings": {"Reviewer1": 1}}
    assert request(port, "/ratings/42", method="POST", body="{nope").status == 400


def test_ratings_fault_variants_on_the_wire(stack: Stack) -> None:
    faulty = services.Settings.from_env("ratings", "v-faulty", {})
    port = stack.serve("ratings-faulty", services.make_ratings_app(faulty, draw=lambda: 0.25))
    got = request(port, "/ratings/0")
    assert (got.status, got.json()) == (503, {"error": "Service unavailable"})
    now = [0.0]
    flaky = services.Settings.from_env("ratings", "v-unhealthy", {})
    port = stack.serve("ratings-unhealthy", services.make_ratings_app(flaky, clock=lambda: now[0]))
    assert request(port, "/ratings/0").status == 200 and request(port, "/health").status == 200
    now[0] = 901.0
    assert request(port, "/ratings/0").status == 503
    assert request(port, "/health").json() == {"status": "Ratings is not healthy"}


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_reviews_service_json(stack: Stack, version: str) -> None:
    port = stack.ports[f"reviews-{version}"]
    assert request(port, "/health").json() == {"status": "Reviews is healthy"}
    body = request(port, "/reviews/0").json()
    assert body["id"] == "0" and body["podname"] == PODS[version]
    assert body["clustername"] == "null"
    ratings = [r.get("rating") for r in body["reviews"]]
    if version == "v1":
        assert ratings == [None, None]
    else:
        color = "black" if version == "v2" else "red"
        assert ratings == [{"stars": 5, "color": color}, {"stars": 4, "color": color}]
    assert request(port, "/reviews/abc").status == 404


@pytest.mark.parametrize(
    ("version", "color", "stars"), [("v1", None, 0), ("v2", "black", 9), ("v3", "red", 9)]
)
def test_productpage_shows_which_reviews_answered(
    stack: Stack, version: str, color: str | None, stars: int
) -> None:
    page = request(stack.ports[f"productpage-{version}"], "/productpage?u=normal")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<title>Simple Bookstore App</title>" in page.text
    assert "Book Details" in page.text and "Book Reviews" in page.text
    assert page.text.count(STAR) == stars
    if color:
        assert f'<div class="flex gap-x-1 text-{color}-500">' in page.text
    # What `grep reviews-v.-` prints from the page: the pod name on its own line, twice.
    served = [line for line in page.text.splitlines() if f"reviews-{version}-" in line]
    assert served == [PODS[version], PODS[version]]
    assert page.text.count("Reviews served by:") == 2


def test_productpage_api(stack: Stack) -> None:
    port = stack.ports["productpage-v3"]
    listing = request(port, "/api/v1/products")
    assert listing.json() == core.products()
    assert listing.text.startswith('[{"id": 0, "title": "The Comedy of Errors", ')
    assert request(port, "/api/v1/products/0").json() == core.details_body(0)
    reviews = request(port, "/api/v1/products/0/reviews")
    assert reviews.status == 200 and reviews.headers["Content-Type"].startswith("application/json")
    body = reviews.json()
    assert set(body) == {"id", "podname", "clustername", "reviews"}
    assert body["podname"] == PODS["v3"] and body["reviews"][1]["rating"]["stars"] == 4
    assert request(port, "/api/v1/products/0/ratings").json() == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
    }
    bad = request(port, "/api/v1/products/abc")
    assert bad.status == 400
    assert bad.json() == {
        "error": "Sorry, product details are currently unavailable for this book."
    }
    assert request(port, "/api/v1/products/abc/reviews").status == 404
    assert request(port, "/health").text == "Product page is healthy"
    index = request(port, "/")
    assert index.status == 200 and "Normal user" in index.text
    metrics = request(port, "/metrics").text
    assert 'request_result_total{destination_app="reviews",response_code="200"}' in metrics


def test_headers_propagate_to_details_reviews_and_ratings(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    sent = {
        "x-request-id": rid,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
        "x-b3-spanid": "e457b5a2e4d86bd1",
        "x-b3-sampled": "1",
        "user-agent": "curl/8.16.0",
        "authorization": "Bearer abc",
        "end-user": "mallory",
    }
    assert request(stack.ports["productpage-v2"], "/productpage", sent).status == 200
    ((details_path, at_details),) = stack.seen["details"].with_request_id(rid)
    ((reviews_path, at_reviews),) = stack.seen["reviews-v2"].with_request_id(rid)
    ((_, at_ratings),) = stack.seen["ratings"].with_request_id(rid)
    assert (details_path, reviews_path) == ("/details/0", "/reviews/0")
    for seen in (at_details, at_reviews, at_ratings):
        for name in (
            "x-request-id",
            "traceparent",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "user-agent",
            "authorization",
        ):
            assert seen[name] == sent[name], (name, seen)
        # productpage does not pass on a caller's end-user: only its own login does.
        assert "end-user" not in seen


def test_login_sets_end_user_for_the_routing_rules(stack: Stack) -> None:
    port = stack.ports["productpage-v2"]
    referer = f"http://127.0.0.1:{port}/productpage"
    login = request(
        port,
        "/login",
        {"Referer": referer, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
        body="username=jason&passwd=x",
    )
    assert login.status == 302 and login.headers["Location"] == referer
    cookie = login.headers["Set-Cookie"].split(";", 1)[0]
    rid = str(uuid.uuid4())
    page = request(port, "/productpage", {"Cookie": cookie, "x-request-id": rid})
    assert '<span class="user">jason</span>' in page.text and "Sign out" in page.text
    ((_, at_reviews),) = stack.seen["reviews-v2"].with_request_id(rid)
    ((_, at_ratings),) = stack.seen["ratings"].with_request_id(rid)
    assert at_reviews["end-user"] == "jason" and at_ratings["end-user"] == "jason"
    assert at_reviews["cookie"] == cookie
    logout = request(port, "/logout", {"Cookie": cookie, "Referer": referer})
    assert logout.status == 302 and "Max-Age=0" in logout.headers["Set-Cookie"]
    assert request(port, "/login").status == 405


def test_productpage_degrades_when_upstreams_are_down(stack: Stack) -> None:
    port = stack.ports["productpage-alone"]
    page = request(port, "/productpage")
    assert page.status == 200  # upstream always serves the page
    assert "<title>Simple Bookstore App</title>" in page.text
    assert "Error fetching product details" in page.text
    assert "Error fetching product reviews" in page.text
    assert "Sorry, product reviews are currently unavailable for this book." in page.text
    assert "Reviews served by:" not in page.text and STAR not in page.text
    reviews = request(port, "/api/v1/products/0/reviews")
    assert reviews.status == 500
    assert reviews.json() == {
        "error": "Sorry, product reviews are currently unavailable for this book."
    }
    ratings = request(port, "/api/v1/products/0/ratings")
    assert ratings.status == 500 and "product ratings" in ratings.json()["error"]


def test_productpage_asks_reviews_twice_and_passes_its_status_on(stack: Stack) -> None:
    calls: list[str] = []

    async def unavailable(req: web.Request) -> web.Response:
        calls.append(req.path)
        return web.json_response({"error": "overloaded"}, status=503)

    stub = web.Application()
    stub.router.add_get("/reviews/{id}", unavailable)
    stub_port = stack.serve("reviews-503", stub)
    settings = services.Settings.from_env(
        "productpage", "v1", upstream_env(details=stack.ports["details"], reviews=stub_port)
    )
    port = stack.serve("productpage-503", services.make_productpage_app(settings))
    got = request(port, "/api/v1/products/0/reviews")
    assert got.status == 503 and calls == ["/reviews/0", "/reviews/0"]
    page = request(port, "/productpage")
    assert page.status == 200 and "<strong>503</strong>" in page.text
    assert "Book Details" in page.text


def test_productpage_times_out_slow_reviews_twice(stack: Stack) -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def stalled(req: web.Request) -> web.Response:
        calls.append(req.path)
        await release.wait()
        return web.json_response({})

    stub = web.Application()
    stub.router.add_get("/reviews/{id}", stalled)
    stub_port = stack.serve("reviews-stalled", stub)
    settings = services.Settings.from_env(
        "productpage", "v1", upstream_env(details=stack.ports["details"], reviews=stub_port)
    )
    quick = dataclasses.replace(settings, upstream_timeout=0.2)
    port = stack.serve("productpage-quick", services.make_productpage_app(quick))
    try:
        got = request(port, "/api/v1/products/0/reviews")
        assert got.status == 500 and calls == ["/reviews/0", "/reviews/0"]
    finally:
        stack.loop.loop.call_soon_threadsafe(release.set)


def test_each_upstream_request_gets_its_own_connection(stack: Stack) -> None:
    """No pooling, as upstream: per-connection L4 balancing must see every request."""
    peers: list[tuple[str, int]] = []

    async def details(req: web.Request) -> web.Response:
        peers.append(req.transport.get_extra_info("peername") if req.transport else None)
        return web.json_response(core.details_body(0))

    stub = web.Application()
    stub.router.add_get("/details/{id}", details)
    stub_port = stack.serve("details-peers", stub)
    settings = services.Settings.from_env("productpage", "v1", upstream_env(details=stub_port))
    port = stack.serve("productpage-peers", services.make_productpage_app(settings))
    for _ in range(3):
        assert request(port, "/api/v1/products/0").status == 200
    assert len(peers) == 3 and len(set(peers)) == 3


def test_ratings_outage_shows_in_the_reviews(stack: Stack) -> None:
    body = request(stack.ports["reviews-no-ratings"], "/reviews/0").json()
    assert [r["rating"] for r in body["reviews"]] == [{"error": core.RATING_ERROR}] * 2
    page = request(stack.ports["productpage-no-ratings"], "/productpage").text
    assert page.count('<p class="text-red-500">Ratings service is currently unavailable</p>') == 2
    assert STAR not in page and "Book Reviews" in page


# --------------------------------------------------------------------------- the process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_listener(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    polled = poll(lambda: (proc.poll(), listening()),
                  lambda seen: seen[0] is not None or seen[1], timeout=timeout, interval=0.02)
    if polled.value[0] is not None:
        raise AssertionError(f"exited early with {proc.returncode}")
    assert polled.held, f"nothing listening on {port} within {timeout:g}s"


@pytest.mark.slow
def test_entry_point_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clusters.local.images.bookinfo",
            "details",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_listener(port, proc, 15)
        assert request(port, "/health").json() == {"status": "Details is healthy"}
        assert request(port, "/details/0").json()["ISBN-13"] == "123-1234567890"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert " GET /health 200 " in out and " GET /details/0 200 " in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
