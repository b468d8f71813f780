"""Performance of ambient implementations: Locust load through the mesh, with a no-mesh baseline.

The pieces the test process imports (plans, histograms, results, reports, gates)
never import Locust: gevent monkey-patches the interpreter it is imported into, so
the load generator lives in :mod:`perf.loadgen` and only ever runs in a pod's own
process.
"""
