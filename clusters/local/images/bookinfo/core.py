"""The sans-IO half of Bookinfo: data, id parsing, JSON bodies, header choice, sessions.

Nothing here touches a socket or the clock, so every observable detail of the upstream
sample that the conformance suite may depend on (the exact JSON, which id strings each
service accepts, which headers travel where) can be checked by plain unit tests.  The
aiohttp side (``services.py``) only moves bytes between these functions and the wire.

Each service was written upstream in a different language, and each language parses
the product id in the URL its own way; the parsers below keep those differences,
because a request such as ``/details/010`` or ``/ratings/7abc`` answers differently
per service in the real sample.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("productpage", "details", "reviews", "ratings")
DEFAULT_PORT = 9080

# --------------------------------------------------------------------------- products

PRODUCT_TITLE = "The Comedy of Errors"
_DESCRIPTION_HTML = (
    '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
    "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his "
    "shortest and one of his most farcical comedies, with a major part of the humour coming "
    "from slapstick and mistaken identity, in addition to puns and word play."
)


def products() -> list[dict[str, Any]]:
    """The catalogue productpage serves at ``/api/v1/products``: one book, as upstream."""
    return [{"id": 0, "title": PRODUCT_TITLE, "descriptionHtml": _DESCRIPTION_HTML}]


def product(product_id: int) -> dict[str, Any] | None:
    """One catalogue entry, or None past the end (upstream only ever asks for id 0)."""
    catalogue = products()
    return catalogue[product_id] if 0 <= product_id < len(catalogue) else None


def unavailable_body(what: str) -> dict[str, str]:
    """productpage's body when an upstream failed; ``what`` is details/reviews/ratings."""
    return {"error": f"Sorry, product {what} are currently unavailable for this book."}


def dumps_python(value: Any) -> str:
    """productpage's JSON spelling: Python's default separators (``", "``, ``": "``)."""
    return json.dumps(value)


def dumps_compact(value: Any) -> str:
    """details' (Ruby ``to_json``) and ratings' (``JSON.stringify``) spelling: no spaces."""
    return json.dumps(value, separators=(",", ":"))


# --------------------------------------------------------------------------- details

DETAILS_HEALTH = {"status": "Details is healthy"}
DETAILS_BAD_ID = {"error": "please provide numeric product id"}

_RUBY_INTEGER = re.compile(
    r"\s*(?P<sign>[+-]?)(?:"
    r"0[xX](?P<hex>[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)"
    r"|0[bB](?P<bin>[01]+(?:_[01]+)*)"
    r"|0[dD](?P<dec0>[0-9]+(?:_[0-9]+)*)"
    r"|0[oO_]?(?P<oct>[0-7]+(?:_[0-7]+)*)"
    r"|(?P<dec>0|[1-9][0-9]*(?:_[0-9]+)*)"
    r")\s*"
)


def parse_ruby_integer(text: str) -> int | None:
    """Ruby's strict ``Integer(str)``, which details uses: prefixes 0x/0b/0o, a leading 0
    meaning octal, underscores between digits, surrounding blanks; anything else fails."""
    m = _RUBY_INTEGER.fullmatch(text)
    if m is None:
        return None
    for group, base in (("hex", 16), ("bin", 2), ("dec0", 10), ("oct", 8), ("dec", 10)):
        digits = m.group(group)
        if digits is not None:
            value = int(digits.replace("_", ""), base)
            return -value if m.group("sign") == "-" else value
    return None  # pragma: no cover - the pattern always sets one group


def details_body(product_id: int) -> dict[str, Any]:
    """The book details; the same for every id, as in the upstream sample."""
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def details_response(path: str) -> tuple[int, dict[str, Any]]:
    """Status and body for a path under ``/details``.

    Upstream mounts one handler on the ``/details`` prefix and reads the id from the
    last non-empty path segment, so ``/details/0/`` works and bare ``/details`` is a 400.
    """
    segments = path.split("/")
    while segments and segments[-1] == "":
        segments.pop()
    product_id = parse_ruby_integer(segments[-1]) if segments else None
    if product_id is None:
        return 400, dict(DETAILS_BAD_ID)
    return 200, details_body(product_id)


# --------------------------------------------------------------------------- ratings

RATINGS_HEALTHY = {"status": "Ratings is healthy"}
RATINGS_UNHEALTHY = {"status": "Ratings is not healthy"}
RATINGS_BAD_ID = {"error": "please provide numeric product ID"}
RATINGS_BAD_JSON = {"error": "please provide valid ratings JSON"}
RATINGS_UNAVAILABLE = {"error": "Service unavailable"}
RATINGS_POST_NOT_IMPLEMENTED = {"error": "Post not implemented for database backed ratings"}
DEFAULT_RATINGS = {"Reviewer1": 5, "Reviewer2": 4}

# v-delayed: how long the slow half of the answers waits.
RATINGS_DELAY_SECONDS = 7.0
# v-unavailable flips between serving and 503 every minute; v-unhealthy every 15 minutes
# and also fails its health check while "down".
_FLIP_PERIOD = {"v-unavailable": 60.0, "v-unhealthy": 900.0}

_JS_INT = re.compile(r"[\s\ufeff]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|([0-9]+))")


def parse_js_int(text: str) -> int | None:
    """JavaScript ``parseInt(str)`` (ratings is Node): the longest numeric prefix after
    blanks, ``0x`` meaning hex; None where JavaScript gives NaN."""
    m = _JS_INT.match(text)
    if m is None:
        return None
    value = int(m.group(2), 16) if m.group(2) is not None else int(m.group(3))
    return -value if m.group(1) == "-" else value


def ratings_id(raw_url: str) -> int | None:
    """The id ratings reads: ``parseInt`` of the text after the last ``/`` of the raw
    request URL, query string included (``/ratings/3?x=1`` is 3, ``/ratings/a`` is NaN)."""
    return parse_js_int(raw_url.rsplit("/", 1)[-1])


def ratings_outcome(version: str, random_value: float, elapsed: float) -> str:
    """What a ratings GET does for a service version: ``"ok"``, ``"unavailable"`` (503)
    or ``"delay"`` (answer after :data:`RATINGS_DELAY_SECONDS`).

    ``random_value`` is a uniform draw in [0, 1) and ``elapsed`` the seconds since the
    process started; passing them in keeps the fault variants testable.
    """
    if version == "v-faulty":
        return "unavailable" if random_value <= 0.5 else "ok"
    if version == "v-delayed":
        return "delay" if random_value <= 0.5 else "ok"
    period = _FLIP_PERIOD.get(version)
    if period is not None and int(elapsed // period) % 2 == 1:
        return "unavailable"
    return "ok"


def ratings_healthy(version: str, elapsed: float) -> bool:
    """Only v-unhealthy ever fails ``/health``, during its "down" quarter hours."""
    if version != "v-unhealthy":
        return True
    return int(elapsed // _FLIP_PERIOD[version]) % 2 == 0


@dataclass
class RatingsStore:
    """ratings v1 keeps POSTed ratings in memory, per product, for the process's life.

    Version v2 is the database-backed one upstream; its database always holds 5 and 4
    stars, so here it answers the defaults and refuses POST with 501, as upstream does.
    """

    added: dict[int, dict[str, Any]] = field(default_factory=dict)

    def get(self, product_id: int, version: str = "v1") -> dict[str, Any]:
        if version != "v2" and product_id in self.added:
            return self.added[product_id]
        return {"id": product_id, "ratings": dict(DEFAULT_RATINGS)}

    def put(self, product_id: int, ratings: Any) -> dict[str, Any]:
        self.added[product_id] = {"id": product_id, "ratings": ratings}
        return self.added[product_id]


# --------------------------------------------------------------------------- reviews

REVIEWS_HEALTH_TEXT = '{"status": "Reviews is healthy"}'
RATING_ERROR = "Ratings service is currently unavailable"
REVIEW_TEXTS = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to "
        "other plays by Shakespeare.",
    ),
)
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class ReviewsFlavour:
    """What distinguishes reviews v1/v2/v3: whether ratings are fetched, and star colour.

    Upstream bakes these into each image as ENABLE_RATINGS and STAR_COLOR; the colour
    also picks the ratings timeout (10 s for black, 2.5 s otherwise).
    """

    ratings_enabled: bool
    star_color: str

    @property
    def ratings_timeout(self) -> float:
        return 10.0 if self.star_color == "black" else 2.5

    @classmethod
    def for_version(cls, version: str, env: Mapping[str, str]) -> ReviewsFlavour:
        """Image defaults per version, then ENABLE_RATINGS/STAR_COLOR from the pod env
        (Java's ``Boolean.valueOf``: only "true", any case, is true)."""
        enabled, color = {"v1": (False, "black"), "v2": (True, "black"), "v3": (True, "red")}.get(
            version, (False, "black")
        )
        if "ENABLE_RATINGS" in env:
            enabled = env["ENABLE_RATINGS"].lower() == "true"
        return cls(enabled, env.get("STAR_COLOR", color))


def parse_java_int(text: str) -> int | None:
    """JAX-RS converting the ``{productId}`` path parameter to a Java ``int``; reviews
    answers 404 where this fails (not a number, or outside 32 bits)."""
    if _JAVA_INT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None


def stars_from_ratings(payload: Any) -> tuple[int, int]:
    """Stars for Reviewer1 and Reviewer2 from a ratings answer; -1 means "no rating",
    which the review then shows as the ratings error."""
    if not isinstance(payload, Mapping):
        return -1, -1
    ratings = payload.get("ratings")
    if not isinstance(ratings, Mapping):
        return -1, -1

    def stars(name: str) -> int:
        value = ratings.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return -1
        return int(value)

    return stars("Reviewer1"), stars("Reviewer2")


def reviews_body(
    product_id: int,
    podname: str,
    clustername: str | None,
    flavour: ReviewsFlavour,
    stars: tuple[int, int] = (-1, -1),
) -> dict[str, Any]:
    """The reviews answer.  The id is a *string* and clustername the literal "null" when
    unset, as upstream; v1 (ratings disabled) has no ``rating`` key at all."""
    reviews = []
    for (reviewer, text), count in zip(REVIEW_TEXTS, stars, strict=True):
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if flavour.ratings_enabled:
            if count != -1:
                review["rating"] = {"stars": count, "color": flavour.star_color}
            else:
                review["rating"] = {"error": RATING_ERROR}
        reviews.append(review)
    return {
        "id": str(product_id),
        "podname": podname,
        "clustername": clustername if clustername is not None else "null",
        "reviews": reviews,
    }


def encode_reviews(body: Mapping[str, Any]) -> str:
    """Spell a reviews body the way the Java service concatenates it, so a client that
    greps reviews' raw output sees the same spacing as with the real image."""
    q = json.dumps
    items = []
    for review in body["reviews"]:
        text = f'{{  "reviewer": {q(review["reviewer"])},  "text": {q(review["text"])}'
        rating = review.get("rating")
        if rating is not None and "stars" in rating:
            text += f', "rating": {{"stars": {rating["stars"]}, "color": {q(rating["color"])}}}'
        elif rating is not None:
            text += f', "rating": {{"error": {q(rating["error"])}}}'
        items.append(text + "}")
    return (
        f'{{"id": {q(body["id"])},"podname": {q(body["podname"])},'
        f'"clustername": {q(body["clustername"])},"reviews": [{",".join(items)}]}}'
    )


# --------------------------------------------------------------------------- headers

# What details and reviews copy from the request they serve onto the requests they make
# (tracing context, the user identity the routing rules match on, credentials).
TRACE_HEADERS = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)
# productpage copies the same list except B3 (re-encoded by :func:`b3_forward`) and
# end-user, which it sets from its own login session instead of trusting the caller.
PRODUCTPAGE_COPIED_HEADERS = tuple(
    h for h in TRACE_HEADERS if not h.startswith("x-b3-") and h != "end-user"
)


def copy_headers(incoming: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The subset of ``incoming`` (any case-insensitive mapping) named in ``names``."""
    out: dict[str, str] = {}
    for name in names:
        value = incoming.get(name)
        if value is not None:
            out[name] = value
    return out


_B3_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_B3_SAMPLED = {"1", "True", "true", "d"}


def b3_forward(incoming: Mapping[str, str]) -> dict[str, str]:
    """B3 as productpage passes it on: extracted from the request (the single ``b3``
    header first, else the ``x-b3-*`` set) and written back as ``x-b3-traceid`` (32 hex),
    ``x-b3-spanid`` and ``x-b3-sampled`` ("1"/"0"), as an OpenTelemetry
    ``B3MultiFormat`` extract-then-inject does.  Parent span id and flags are dropped;
    an invalid or partial context gives nothing."""
    sampled = "0"
    flags = None
    single = incoming.get("b3")
    if single:
        sampled = "1"
        fields = single.split("-", 4)
        trace_id = span_id = ""
        if len(fields) == 1:
            sampled = fields[0]
        elif len(fields) == 2:
            trace_id, span_id = fields
        elif len(fields) in (3, 4):
            trace_id, span_id, sampled = fields[0], fields[1], fields[2]
    else:
        trace_id = incoming.get("x-b3-traceid") or ""
        span_id = incoming.get("x-b3-spanid") or ""
        sampled = incoming.get("x-b3-sampled") or sampled
        flags = incoming.get("x-b3-flags")
    if not (_B3_ID.fullmatch(trace_id) and _B3_ID.fullmatch(span_id)):
        return {}
    trace_value, span_value = int(trace_id, 16), int(span_id, 16)
    if trace_value == 0 or span_value == 0 or len(span_id) != 16:
        return {}
    on = sampled in _B3_SAMPLED or flags == "1"
    return {
        "x-b3-traceid": f"{trace_value:032x}",
        "x-b3-spanid": f"{span_value:016x}",
        "x-b3-sampled": "1" if on else "0",
    }


def productpage_forward_headers(incoming: Mapping[str, str], user: str | None) -> dict[str, str]:
    """Headers productpage sends to details, reviews and ratings for one request."""
    headers = b3_forward(incoming)
    if user is not None:
        headers["end-user"] = user
    headers.update(copy_headers(incoming, PRODUCTPAGE_COPIED_HEADERS))
    return headers


# --------------------------------------------------------------------------- upstreams


def upstream_base(hostname: str, services_domain: str | None, port: str | int) -> str:
    """``http://<host>[.<SERVICES_DOMAIN>]:<port>``, the way every upstream caller in the
    sample builds its target from the environment."""
    domain = f".{services_domain}" if services_domain is not None else ""
    return f"http://{hostname}{domain}:{port}"


def upstream_from_env(env: Mapping[str, str], service: str) -> str:
    """Base URL for ``service`` (details/reviews/ratings): ``<SERVICE>_HOSTNAME`` (default
    the service name), ``<SERVICE>_SERVICE_PORT`` (default 9080) and SERVICES_DOMAIN."""
    prefix = service.upper()
    return upstream_base(
        env.get(f"{prefix}_HOSTNAME", service),
        env.get("SERVICES_DOMAIN"),
        env.get(f"{prefix}_SERVICE_PORT", str(DEFAULT_PORT)),
    )


# --------------------------------------------------------------------------- session


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(data: Mapping[str, Any], key: bytes) -> str:
    """A tamper-evident cookie value holding productpage's session (the signed-in user).

    Upstream keeps the session in a signed cookie under a fixed key, so any replica
    accepts a login made at another; the same holds here.
    """
    payload = _b64(dumps_compact(dict(data)).encode())
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def load_session(value: str | None, key: bytes) -> dict[str, Any]:
    """The session in a cookie value, or an empty one if absent, forged or malformed."""
    if not value or "." not in value:
        return {}
    payload, _, mac = value.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, expected):
        return {}
    try:
        data = json.loads(_unb64(payload))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- metrics


@dataclass
class RequestResults:
    """productpage's one Prometheus counter, ``request_result``, labelled by
    destination_app and response_code, in the text format prometheus_client writes."""

    counts: dict[tuple[str, str], float] = field(default_factory=dict)
    created: dict[tuple[str, str], float] = field(default_factory=dict)

    def inc(self, app: str, code: int, now: float) -> None:
        key = (app, str(code))
        self.counts[key] = self.counts.get(key, 0.0) + 1.0
        self.created.setdefault(key, now)

    def render(self) -> str:
        def series(name: str, values: Mapping[tuple[str, str], float]) -> list[str]:
            return [
                f'{name}{{destination_app="{app}",response_code="{code}"}} {value!r}'
                for (app, code), value in sorted(values.items())
            ]

        lines = [
            "# HELP request_result_total Results of requests",
            "# TYPE request_result_total counter",
            *series("request_result_total", self.counts),
            "# HELP request_result_created Results of requests",
            "# TYPE request_result_created gauge",
            *series("request_result_created", self.created),
        ]
        return "\n".join(lines) + "\n"
