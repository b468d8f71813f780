"""The control plane's configuration for ztunnels and how it travels.

- ``types``: the resources (``Workload``, ``Service``; authorizations stay JSON).
- ``compute``: pure functions from Kubernetes objects to those resources.
- ``protocol``: the wire protocol (documented there), the server's ``ResourceStore`` and the
  client's ``ClientState``; no I/O.
- ``server``: the aiohttp WebSocket endpoint (``xds_handler``, ``install``).
- ``client``: ``XdsClient``, the ztunnel's reconnecting subscription.
"""
