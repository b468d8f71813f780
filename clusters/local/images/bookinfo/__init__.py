"""The project's own Python implementation of Istio's Bookinfo sample.

The local cluster's image catalog maps the upstream Bookinfo images to
``python -m clusters.local.images.bookinfo <service> [--version vN]``, so pods run the
same four services (productpage, details, reviews v1/v2/v3, ratings) with the same
endpoints, JSON, status codes, header propagation and HTML markers as the upstream
sample, without Docker.  ``core`` and ``pages`` hold the behaviour as pure functions;
``services`` wires them to aiohttp.

Kept free of imports so that starting a pod costs only what the chosen service needs.
"""
