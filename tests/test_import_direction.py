"""Dependencies point one way: a forbidden import anywhere in the tree fails here.

The layers of the harness, lowest first: ``profiles`` (the feature and profile model,
a leaf), ``reports`` (may use profiles), ``clusters`` (uses none of the others),
``conformance`` (clusters, reports, profiles) and ``perf`` (all of them).  The
reference implementation (``reference-impl/``) is a distribution of its own: it and
the harness never import each other, so either can be replaced without the other.
No production module imports test code.

Imports are read with ``ast`` (so a function-local import counts too), and so are the
module names given as strings to ``importlib.import_module`` and
``pytest.importorskip``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS = ("profiles", "reports", "clusters", "conformance", "perf")
REFERENCE = "ambient_ref"
# What each harness package may import of the project (besides itself).
ALLOWED: dict[str, set[str]] = {
    "profiles": set(),
    "reports": {"profiles"},
    "clusters": set(),
    "conformance": {"clusters", "reports", "profiles"},
    "perf": {"clusters", "conformance", "reports", "profiles"},
}
# Test files that use both sides on purpose, each with the reason.
CROSSING_TESTS = {
    # Deliberately broken builds of the reference for the suite's self-test: each one
    # is the reference's own component with one behaviour patched, so it imports it.
    "conformance/tests/broken/": REFERENCE,
    # The reference's own tests on the harness's local cluster; skipped without it.
    "reference-impl/tests/test_on_local_cluster.py": "clusters",
}
SKIP_DIRS = {".git", ".tox", ".venv", "__pycache__", "build", "node_modules"}


def python_files() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if SKIP_DIRS.isdisjoint(rel.parts) and not any(p.endswith(".egg-info")
                                                       for p in rel.parts):
            yield path


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Absolute module names a file imports, with their line numbers."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and isinstance(node.func, ast.Attribute)
              and node.func.attr in {"import_module", "importorskip"}):
            yield node.lineno, node.args[0].value


def is_test_file(rel: Path) -> bool:
    return "tests" in rel.parts or rel.name.startswith("test_") or rel.name == "conftest.py"


def owner(rel: Path) -> str:
    """The package (or distribution) a file belongs to."""
    if rel.parts[0] == "reference-impl":
        return REFERENCE
    return rel.parts[0]


def violations(rel: Path, tree: ast.AST) -> list[str]:
    found = []
    mine, test = owner(rel), is_test_file(rel)
    exempt = next((target for prefix, target in CROSSING_TESTS.items()
                   if rel.as_posix().startswith(prefix)), None)
    for line, module in imported_modules(tree):
        parts = module.split(".")
        top = parts[0]
        where = f"{rel}:{line} imports {module}"
        if not test and "tests" in parts:
            found.append(f"{where}: production code never imports test code")
        if top == mine or top not in (*HARNESS, REFERENCE) or exempt == top:
            continue
        if mine == REFERENCE or top == REFERENCE:
            found.append(f"{where}: the harness and the reference implementation are "
                         "separate distributions and never import each other")
        elif mine in ALLOWED and top not in ALLOWED[mine]:
            found.append(f"{where}: {mine} may import only "
                         f"{', '.join(sorted(ALLOWED[mine])) or 'nothing of the project'}")
    return found


def test_every_import_points_the_allowed_way() -> None:
    found = []
    for path in python_files():
        rel = path.relative_to(REPO)
        found += violations(rel, ast.parse(path.read_text(), filename=str(rel)))
    assert not found, "forbidden imports:\n" + "\n".join(found)


@pytest.mark.parametrize(("rel", "source", "why"), [
    ("reports/html.py", "from conformance.plugin import x", "reports may import only profiles"),
    ("clusters/local/demo.py", "def f():\n    import ambient_ref", "never import each other"),
    ("reference-impl/benchmarks/b.py", "from clusters.local import provider",
     "never import each other"),
    ("profiles/features.py", "import reports.model", "nothing of the project"),
    ("perf/runner.py", "from conformance.tests.broken import x", "never imports test code"),
    ("conformance/plugin.py", "importlib.import_module('ambient_ref.ztunnel')",
     "never import each other"),
    ("clusters/provider.py", "import conformance", "clusters may import only nothing"),
    ("reports/tests/test_x.py", "from conformance.plugin import x", "reports may import"),
])
def test_a_forbidden_import_is_caught(rel: str, source: str, why: str) -> None:
    """The checker itself: each kind of forbidden import is reported with its reason."""
    found = violations(Path(rel), ast.parse(source))
    assert found, f"{source!r} in {rel} was not caught"
    assert any(why in f for f in found), found


def test_allowed_imports_pass() -> None:
    assert not violations(Path("conformance/plugin.py"),
                          ast.parse("from reports.gate import decide\nfrom profiles import f"))
    assert not violations(Path("conformance/tests/broken/x.py"),
                          ast.parse("from ambient_ref.policy import evaluate"))
