"""Locust users: what a client of each scenario does.

Every user is abstract and pace-less: the worker subclasses it per step with the
host, the path and a ``constant_throughput`` wait time, so the same behaviour runs
at every load level and the pacing is the plan's, not the class's.  Each task is
exactly one request, so tasks per second are requests per second.
"""

from __future__ import annotations

from locust import FastHttpUser, task


class DirectUser(FastHttpUser):
    """One service, one keep-alive connection per user, a fixed-size response."""

    abstract = True
    path = "/"

    @task
    def get(self) -> None:
        self.client.get(self.path, name="GET /")


class BookinfoUser(FastHttpUser):
    """A reader of Bookinfo: mostly the product page (which fans out to details,
    reviews and ratings), plus the JSON APIs and direct calls to details and reviews
    as another service in the mesh would make them."""

    abstract = True
    path = "/"
    details_url = "http://details:9080"
    reviews_url = "http://reviews:9080"

    @task(6)
    def productpage(self) -> None:
        self.client.get("/productpage", name="GET /productpage")

    @task(1)
    def products(self) -> None:
        self.client.get("/api/v1/products", name="GET /api/v1/products")

    @task(1)
    def product_reviews(self) -> None:
        self.client.get("/api/v1/products/0/reviews", name="GET /api/v1/products/0/reviews")

    @task(1)
    def details(self) -> None:
        self.client.get(f"{self.details_url}/details/0", name="GET details/details/0")

    @task(1)
    def reviews(self) -> None:
        self.client.get(f"{self.reviews_url}/reviews/0", name="GET reviews/reviews/0")


USERS: dict[str, type[FastHttpUser]] = {"direct": DirectUser, "bookinfo": BookinfoUser}
