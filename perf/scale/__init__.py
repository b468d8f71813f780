"""Control-plane scale benchmark (issue 7, item 5): how long an AuthorizationPolicy change
takes to be enforced by every ztunnel, and what the control plane and ztunnels hold in
memory, as the cluster grows to 100, 500 and 1,000 pods.

``python -m perf.scale`` runs it (see ``__main__.py``); ``runner.ScaleRun`` is the run,
``population`` makes the pods that need no process, ``probe`` observes from inside the
cluster, ``stats`` and ``report`` summarize; memory and CPU of its processes are read by
:mod:`perf.process_usage`.
"""

from .population import Layout
from .runner import Config, ScaleRun

__all__ = ["Config", "Layout", "ScaleRun"]
