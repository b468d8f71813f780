"""productpage's HTML, rendered by pure functions (no template engine to import).

The markup is this project's own; what it keeps from the upstream sample are the
markers people and the istio.io tests look for:

- ``<title>Simple Bookstore App</title>`` on ``/productpage`` (the 1.20-era index page at
  ``/`` has no title, and neither does this one);
- per review a ``<section>``; rated reviews get ``<div class="flex gap-x-1 text-COLOR-500">``
  holding one ``<svg id="glyphicon glyphicon-star" ...>`` per full star, then outline
  stars that do *not* carry that id, so a v2/v3 page has exactly 9 matches and v1 none;
- ``Reviews served by:`` followed by the reviews pod name alone on the next line, inside
  each review, which is what ``grep reviews-v.-`` prints;
- "Error fetching product details" / "Error fetching product reviews" with the status and
  error text when an upstream failed, and the ratings error in ``text-red-500``.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

TITLE = "Simple Bookstore App"
STAR_MARKER = 'id="glyphicon glyphicon-star"'

# A five-pointed star drawn for this project (not upstream's icon path).
_STAR_POINTS = "10,1.5 12.6,7.2 18.8,7.8 14.1,12 15.5,18.2 10,15 4.5,18.2 5.9,12 1.2,7.8 7.4,7.2"
_FULL_STAR = (
    f'<svg {STAR_MARKER} class="h-5 w-5 flex-none" viewBox="0 0 20 20" '
    f'fill="currentColor" aria-hidden="true"><polygon points="{_STAR_POINTS}"/></svg>'
)
_EMPTY_STAR = (
    '<svg class="h-5 w-5 flex-none" viewBox="0 0 20 20" fill="none" stroke="currentColor" '
    f'stroke-width="1.2" aria-hidden="true"><polygon points="{_STAR_POINTS}"/></svg>'
)

# Served at /static/tailwind/tailwind.css: just enough of the utility classes the page
# uses for it to be readable in a browser.
STYLESHEET = """\
body { margin: 0; font-family: system-ui, sans-serif; color: #111827; }
nav { background: #1f2937; color: #fff; padding: 1rem 2rem; display: flex;
      justify-content: space-between; align-items: center; }
nav a { color: #fff; text-decoration: none; }
.container { margin: 2rem auto; padding: 0 2rem; max-width: 72rem; }
.flex { display: flex; } .flex-col { flex-direction: column; } .gap-x-1 { gap: 0.25rem; }
.h-5 { height: 1.25rem; } .w-5 { width: 1.25rem; }
.text-black-500 { color: #000; } .text-red-500 { color: #ef4444; }
.text-gray-600 { color: #4b5563; } .text-5xl { font-size: 3rem; }
.text-3xl { font-size: 1.875rem; } .text-2xl { font-size: 1.5rem; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 0.3rem 0.6rem;
  border-bottom: 1px solid #e5e7eb; }
section { padding: 1.5rem; }
"""

_HEAD = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{TITLE}</title>
<link rel="stylesheet" href="static/tailwind/tailwind.css">
</head>
<body>"""


def _nav(user: str | None) -> list[str]:
    out = ['<nav class="bg-gray-800">', '<a href="#" class="text-lg">BookInfo Sample</a>']
    if user:
        out += [
            '<div class="flex gap-x-1">',
            f'<span class="user">{escape(user)}</span>',
            '<a href="/logout" class="text-xs">Sign out</a>',
            "</div>",
        ]
    else:
        out += [
            '<button type="button" id="sign-in-button"'
            " onclick=\"document.getElementById('login-dialog').showModal()\">Sign in</button>",
            '<dialog id="login-dialog">',
            '<form method="post" action="login" name="login_form">',
            '<p><input type="text" name="username" id="username" placeholder="User Name"></p>',
            '<p><input type="password" name="passwd" placeholder="Password"></p>',
            '<p><button type="submit">Sign in</button>',
            '<button type="button" formmethod="dialog"'
            " onclick=\"this.closest('dialog').close()\">Cancel</button></p>",
            "</form>",
            "</dialog>",
        ]
    out.append("</nav>")
    return out


def _failure(what: str, status: int, body: Any) -> list[str]:
    out = [f'<p class="text-2xl text-red-500">Error fetching product {what}</p>']
    if isinstance(body, Mapping) and body:
        error = escape(str(body.get("error", "")))
        out.append(f'<p class="text-lg text-gray-600"><strong>{status}</strong>: {error}</p>')
    return out


def _details(status: int, details: Any) -> list[str]:
    if status != 200 or not isinstance(details, Mapping):
        return _failure("details", status, details)
    columns = (
        ("ISBN-10", "ISBN-10"),
        ("Publisher", "publisher"),
        ("Pages", "pages"),
        ("Type", "type"),
        ("Language", "language"),
    )
    head = "".join(f"<th>{label}</th>" for label, _ in columns)
    cells = "".join(f"<td>{escape(str(details.get(key, '')))}</td>" for _, key in columns)
    return [
        '<h4 class="text-3xl font-semibold">Book Details</h4>',
        "<table>",
        f"<thead><tr>{head}</tr></thead>",
        f"<tbody><tr>{cells}</tr></tbody>",
        "</table>",
    ]


def _rating(rating: Any) -> list[str]:
    if not isinstance(rating, Mapping):
        return []
    stars = rating.get("stars")
    if isinstance(stars, int) and not isinstance(stars, bool) and stars:
        color = escape(str(rating.get("color", "")))
        return [
            f'<div class="flex gap-x-1 text-{color}-500">',
            *([_FULL_STAR] * stars),
            *([_EMPTY_STAR] * max(0, 5 - stars)),
            "</div>",
        ]
    if rating.get("error"):
        return [f'<p class="text-red-500">{escape(str(rating["error"]))}</p>']
    return []


def _reviews(status: int, reviews: Any) -> list[str]:
    if status != 200 or not isinstance(reviews, Mapping):
        return _failure("reviews", status, reviews)
    podname = escape(str(reviews.get("podname", "")))
    clustername = reviews.get("clustername", "null")
    out = ['<h4 class="text-3xl font-semibold">Book Reviews</h4>', '<div class="flex flex-col">']
    items = reviews.get("reviews")
    for review in items if isinstance(items, list) else []:
        if not isinstance(review, Mapping):
            continue
        out += ['<section class="review">', *_rating(review.get("rating"))]
        out += [
            f"<blockquote><p>&quot;{escape(str(review.get('text', '')))}&quot;</p></blockquote>",
            f'<div class="font-semibold">{escape(str(review.get("reviewer", "")))}</div>',
            '<div class="text-gray-600 font-mono">Reviews served by:',
            podname,
        ]
        if clustername != "null":
            out.append(f"on cluster <div>{escape(str(clustername))}</div>")
        out += ["</div>", "</section>"]
    out.append("</div>")
    return out


def render_productpage(
    product: Mapping[str, Any] | None,
    details_status: int,
    details: Any,
    reviews_status: int,
    reviews: Any,
    user: str | None = None,
) -> str:
    """The ``/productpage`` document: book, details and reviews, or error sections where
    an upstream failed.  The page itself is always served with 200, as upstream."""
    lines = [_HEAD, *_nav(user)]
    if product is not None:
        lines += [
            '<div class="container">',
            f'<h1 class="text-5xl font-bold">{escape(str(product["title"]))}</h1>',
            # Trusted HTML from the catalogue, inserted unescaped as upstream does.
            f'<p class="text-gray-600">{product["descriptionHtml"]}</p>',
            "</div>",
        ]
    lines += ['<div class="container">', *_details(details_status, details), "</div>"]
    lines += ['<div class="container">', *_reviews(reviews_status, reviews), "</div>"]
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def service_tree(details: str, reviews: str, ratings: str) -> dict[str, Any]:
    """The call graph the index page shows.  Upstream labels the root with the details
    URL (a quirk of its sample data), kept so the table reads the same."""
    ratings_node = {"name": ratings, "endpoint": "ratings", "children": []}
    return {
        "name": details,
        "endpoint": "details",
        "children": [
            {"name": details, "endpoint": "details", "children": []},
            {"name": reviews, "endpoint": "reviews", "children": [ratings_node]},
        ],
    }


_TABLE = '<table class="table table-condensed table-bordered table-hover">'


def _html_value(value: Any) -> str:
    """JSON to nested tables: an object is a two-column table, a list of objects one row
    per object, a list of scalars a bullet list, and an empty list nothing."""
    if isinstance(value, Mapping):
        rows = "".join(
            f"<tr><th>{escape(str(k))}</th><td>{_html_value(v)}</td></tr>" for k, v in value.items()
        )
        return f"{_TABLE}{rows}</table>"
    if isinstance(value, list):
        if not value:
            return ""
        if all(isinstance(v, Mapping) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{_html_value(v.get(k, ''))}</td>" for k in keys) + "</tr>"
                for v in value
            )
            return f"{_TABLE}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return "<ul>" + "".join(f"<li>{_html_value(v)}</li>" for v in value) + "</ul>"
    return escape(str(value))


def render_index(tree: Mapping[str, Any]) -> str:
    """The landing page at ``/``: the service table and the two user links."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1.0">',
            '<link rel="stylesheet" href="static/tailwind/tailwind.css">',
            "</head>",
            "<body>",
            '<div class="container">',
            '<h3 class="text-2xl">Hello! This is a simple bookstore application consisting '
            "of three services as shown below</h3>",
            _html_value(tree),
            "<p>Click on one of the links below to auto generate a request to the backend "
            "as a real user or a tester</p>",
            "<ul>",
            '<li><a href="/productpage?u=normal">Normal user</a></li>',
            '<li><a href="/productpage?u=test">Test user</a></li>',
            "</ul>",
            "</div>",
            "</body>",
            "</html>",
            "",
        ]
    )
