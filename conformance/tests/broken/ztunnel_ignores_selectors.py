"""The reference ztunnel, except that a selector policy applies to every workload of its
namespace (and of every namespace, from the root namespace): bystanders are hit."""

import sys

from ambient_ref.policy import evaluate


def _applicable(self, workload_namespace, workload_labels):  # type: ignore[no-untyped-def]
    result = [*self._namespace.get(workload_namespace, ()), *self._global]
    for namespace in {workload_namespace, self.root_namespace}:
        result += self._selector.get(namespace, ())
    return result


evaluate.PolicyIndex.applicable = _applicable

from ambient_ref.ztunnel.main import main  # noqa: E402

sys.exit(main())
