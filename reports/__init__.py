"""Report builders: the conformance report, the end-of-run summary and pytest-html fragments.

The builders are pure functions of what the suite recorded (:mod:`reports.model`), so
the pytest plugin stays thin and every rule deciding ``success``/``partial``/``failure``
is tested without a cluster.
"""
