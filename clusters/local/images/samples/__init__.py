"""Istio's common samples, as the local cluster runs them for their upstream images.

Each module is run as ``python -m clusters.local.images.samples.<name>`` by the image
catalog (``../catalog.py``) when a pod names the sample's image:

- ``httpbin``: ``mccutchen/go-httpbin`` (Istio's ``samples/httpbin``), the endpoints
  Istio's tasks use, in go-httpbin's JSON shapes;
- ``helloworld``: ``examples-helloworld-v1``/``-v2`` (``samples/helloworld``);
- ``tcp_echo``: ``tcp-echo-server`` (``samples/tcp-echo``).

Kept free of imports so that starting a pod costs only what the chosen sample needs.
"""
