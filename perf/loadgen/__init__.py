"""The load generator: the ``ambient-harness/locust`` image's program.

It runs as a pod inside the cluster, so its traffic is enrolled, captured and
routed exactly like any client's.  ``python -m perf.loadgen`` starts the agent (a
small control server; the runner submits plans to it), ``worker`` is one Locust
process the agent starts per run, and ``echo`` is a fortio-style server with a
``?delay_ms=`` knob for fault injection.

Only :mod:`perf.loadgen.worker` and :mod:`perf.loadgen.scenarios` import Locust
(and so gevent); nothing here imports them eagerly.
"""
