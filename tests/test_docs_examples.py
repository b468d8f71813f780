"""The implementer's guide and its CI example say only what is true of this repository.

``docs/examples/github-actions-conformance.yml`` is validated against GitHub's workflow
schema, the copy of SchemaStore's that check-jsonschema vendors (``--builtin-schema
vendor.github-workflows``; the network is closed while it runs, so nothing is
downloaded), plus check-jsonschema's own rule that every job sets ``timeout-minutes``.
Broken copies of it must be rejected, so the check is known to bite.

``docs/implementers.md`` and the workflow are read as a person would use them: every
repository path the guide links to (or names in code) exists, every heading it links
to exists, every ``./run`` environment is one of tox.ini's, and every ``--option``
given to the suite is one that ``conformance/plugin.py`` adds (or pytest's own, for
``-k``-like options), to ``python -m perf`` one of ``perf/cli.py``'s, to the flake
runner one of ``conformance/flake.py``'s.
"""

from __future__ import annotations

import ast
import configparser
import copy
import json
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from check_jsonschema import main as check_jsonschema
from click.testing import CliRunner
from ruamel.yaml import YAML

from profiles.features import ALL_FEATURES, PROFILES

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "implementers.md"
WORKFLOW = REPO / "docs" / "examples" / "github-actions-conformance.yml"
# Where the example workflow checks the harness out (its commands run from there).
HARNESS_CHECKOUT = "ambient-harness"
WORKFLOW_SCHEMA = "vendor.github-workflows"
TIMEOUT_SCHEMA = "custom.github-workflows-require-timeout"


# -- reading the files ---------------------------------------------------------------------


def _option_names(tree: ast.AST) -> set[str]:
    """The ``--long`` names given as arguments to any call under ``tree``."""
    return {a.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            for a in node.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str)
            and re.fullmatch(r"--[a-z][a-z0-9-]*", a.value)}


def _module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def suite_options() -> set[str]:
    """The long options ``pytest_addoption`` of conformance/plugin.py adds."""
    (hook,) = [node for node in _module(REPO / "conformance" / "plugin.py").body
               if isinstance(node, ast.FunctionDef) and node.name == "pytest_addoption"]
    return _option_names(hook)


def perf_options() -> set[str]:
    return _option_names(_module(REPO / "perf" / "cli.py"))


def flake_options() -> set[str]:
    return _option_names(_module(REPO / "conformance" / "flake.py"))


def tox_envs() -> set[str]:
    """The environments ``./run <env>`` can run: tox.ini's ``[testenv:<env>]`` sections."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(REPO / "tox.ini")
    return {s.split(":", 1)[1] for s in ini.sections() if s.startswith("testenv:")}


@pytest.fixture(scope="module")
def pytest_options(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """pytest's own long options and its plugins' (xdist's ``--dist``, pytest-html's...),
    as ``pytest --help`` lists them in a folder with no configuration of its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider", "-p", "no:locust"],
        cwd=tmp_path_factory.mktemp("help"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", proc.stdout))


def suite_test_names() -> set[str]:
    """The test functions of the conformance suite (what ``--skip-tests`` matches)."""
    names = set()
    for path in (REPO / "conformance" / "suite").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    node.name.startswith("test"):
                names.add(node.name)
    return names


@dataclass
class Markdown:
    """A Markdown file's fenced code blocks, inline code spans, links and headings."""

    blocks: list[tuple[str, str]]  # (info string, text)
    spans: list[str]
    links: list[str]
    headings: list[str]

    @classmethod
    def read(cls, path: Path) -> Markdown:
        return cls.parse(path.read_text())

    @classmethod
    def parse(cls, markdown: str) -> Markdown:
        blocks: list[tuple[str, str]] = []
        prose: list[str] = []
        headings: list[str] = []
        fence: str | None = None
        info, body = "", []
        for line in markdown.splitlines():
            stripped = line.strip()
            if fence is None and stripped.startswith("```"):
                fence, info, body = "```", stripped[3:].strip(), []
            elif fence is not None and stripped.startswith(fence):
                blocks.append((info, "\n".join(body)))
                fence = None
            elif fence is not None:
                body.append(line)
            else:
                prose.append(line)
                if re.match(r"#{1,6} ", line):
                    headings.append(line.lstrip("#").strip())
        text = "\n".join(prose)
        spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]
        without_code = re.sub(r"`[^`]*`", "", text)
        links = re.findall(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)", without_code)
        return cls(blocks, spans, links, headings)

    def anchors(self) -> set[str]:
        return {github_slug(h) for h in self.headings}


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def yaml_rt() -> YAML:
    """A YAML 1.2 round-trip loader, as GitHub reads workflows: ``on`` is a string, not
    the boolean PyYAML (YAML 1.1) makes of it."""
    yaml = YAML(typ="rt")
    yaml.width = 4096
    return yaml


def load_workflow(path: Path = WORKFLOW) -> Any:
    return yaml_rt().load(path.read_text())


def workflow_steps(doc: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


# -- shell commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One simple command of the project's (./run, pytest, python -m perf, ...), with
    the options it passes and the set of options each must belong to."""

    where: str
    argv: tuple[str, ...]
    checks: tuple[tuple[str, tuple[str, ...]], ...]  # (kind of option, options given)
    run_env: str | None = None


def logical_lines(text: str) -> Iterator[str]:
    """Shell text as commands: continuations joined, blank and comment lines dropped."""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def simple_commands(line: str) -> Iterator[list[str]]:
    """The words of each simple command of a line (split at ; && || | and redirections)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in a heredoc body and the like: not a command
        return
    current: list[str] = []
    for token in tokens:
        if token and set(token) <= set("();<>|&"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def long_options(words: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2)


def split_at_dashdash(words: list[str]) -> tuple[list[str], list[str]]:
    if "--" in words:
        i = words.index("--")
        return words[:i], words[i + 1:]
    return words, []


def classify(words: list[str], where: str) -> Invocation | None:
    """What a command of the project is and which option sets its options must be in;
    None for any other program (kind, kubectl, apt-get...), whose options are not ours."""
    while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])
                     or words[0] in ("sudo", "exec", "time")):
        words = words[1:]
    if not words:
        return None
    program, args = words[0], words[1:]
    name = program.rsplit("/", 1)[-1]
    if program == "./run":
        if not args:  # the entry point named on its own
            return None
        env, rest = args[0], args[1:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        if env in ("conformance", "kind"):
            checks = (("suite", long_options(rest)),)
        elif env == "flake":
            own, pytest_args = split_at_dashdash(rest)
            checks = (("flake", long_options(own)), ("suite", long_options(pytest_args)))
        elif env == "perf":
            checks = (("perf", long_options(rest)),)
        elif env == "tests":
            checks = (("pytest", long_options(rest)),)
        else:
            checks = ()
        return Invocation(where, tuple(words), checks, run_env=env)
    if name.startswith("python") and args[:2] == ["-m", "pytest"]:
        args, name = args[2:], "pytest"
    if name == "pytest":
        kind = "suite" if any(a.startswith("conformance/suite") for a in args) else "pytest"
        return Invocation(where, tuple(words), ((kind, long_options(args)),))
    if name.startswith("python") and args[:2] == ["-m", "perf"]:
        return Invocation(where, tuple(words), (("perf", long_options(args[2:])),))
    if name.startswith("python") and args[:2] == ["-m", "conformance.flake"]:
        own, pytest_args = split_at_dashdash(args[2:])
        return Invocation(where, tuple(words),
                          (("flake", long_options(own)), ("suite", long_options(pytest_args))))
    return None


def invocations(text: str, where: str) -> list[Invocation]:
    found = []
    for line in logical_lines(text):
        for words in simple_commands(line):
            inv = classify(words, where)
            if inv is not None:
                found.append(inv)
    return found


def guide_invocations(md: Markdown) -> list[Invocation]:
    found = []
    for info, body in md.blocks:
        if info in ("sh", "bash", "shell", "console", ""):
            found += invocations(body, f"{GUIDE.name} code block")
    for span in md.spans:
        if span.startswith("--"):  # an option named on its own is the suite's
            found.append(Invocation(f"{GUIDE.name} `{span}`", (span,),
                                    (("suite", long_options(span.split()[:1])),)))
        else:
            found += invocations(span, f"{GUIDE.name} `{span}`")
    return found


def workflow_invocations(doc: Any) -> list[Invocation]:
    found = []
    for job_id, step in workflow_steps(doc):
        if "run" in step:
            found += invocations(str(step["run"]), f"job {job_id}, step {step.get('name')!r}")
    return found


@pytest.fixture(scope="module")
def allowed(pytest_options: set[str]) -> dict[str, set[str]]:
    suite = suite_options()
    return {"suite": suite | pytest_options, "pytest": pytest_options,
            "perf": perf_options(), "flake": flake_options()}


def unknown_options(found: list[Invocation], allowed: dict[str, set[str]]) -> list[str]:
    bad = []
    for inv in found:
        for kind, options in inv.checks:
            bad += [f"{inv.where}: {opt} is not a {kind} option ({shlex.join(inv.argv)})"
                    for opt in options if opt not in allowed[kind]]
    return bad


# -- the workflow: GitHub's schema, offline ---------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: the schemas must come from the package."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def check(path: Path, schema: str = WORKFLOW_SCHEMA) -> tuple[int, str]:
    """check-jsonschema's verdict on ``path`` against a builtin schema: (exit code, output)."""
    result = CliRunner().invoke(
        check_jsonschema, ["--builtin-schema", schema, "--color", "never", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_the_builtin_schema_is_schemastores_github_workflow_schema() -> None:
    vendored = files("check_jsonschema.builtin_schemas.vendor") / "github-workflows.json"
    schema = json.loads(vendored.read_text())
    assert schema["$id"] == "https://json.schemastore.org/github-workflow.json"
    assert {"on", "jobs"} <= set(schema["required"])


@pytest.mark.parametrize("schema", [WORKFLOW_SCHEMA, TIMEOUT_SCHEMA])
def test_the_workflow_is_valid(no_network: None, schema: str) -> None:
    code, output = check(WORKFLOW, schema)
    assert code == 0, output


def _job(doc: Any) -> dict[str, Any]:
    return next(iter(doc["jobs"].values()))


def _step(doc: Any, uses_prefix: str) -> dict[str, Any]:
    return next(s for _, s in workflow_steps(doc) if str(s.get("uses", "")).startswith(uses_prefix))


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


BROKEN: dict[str, tuple[Callable[[Any], None], str]] = {
    "runs-on removed": (lambda d: _job(d).pop("runs-on"), WORKFLOW_SCHEMA),
    "unknown job key (runs_on)": (lambda d: _rename(_job(d), "runs-on", "runs_on"),
                                  WORKFLOW_SCHEMA),
    "unknown event (pull_requests)": (lambda d: _rename(d["on"], "pull_request",
                                                        "pull_requests"), WORKFLOW_SCHEMA),
    "no jobs": (lambda d: d.pop("jobs"), WORKFLOW_SCHEMA),
    "step key misspelt (use:)": (lambda d: _rename(_step(d, "actions/upload-artifact"),
                                                   "uses", "use"), WORKFLOW_SCHEMA),
    "steps not a list": (lambda d: _job(d).__setitem__("steps", {"run": "true"}),
                         WORKFLOW_SCHEMA),
    "timeout-minutes not a number": (lambda d: _job(d).__setitem__("timeout-minutes", "an hour"),
                                     WORKFLOW_SCHEMA),
    "timeout-minutes removed": (lambda d: _job(d).pop("timeout-minutes"), TIMEOUT_SCHEMA),
}


def _write(doc: Any, path: Path) -> Path:
    with path.open("w") as f:
        yaml_rt().dump(doc, f)
    return path


def test_a_round_tripped_copy_is_still_valid(no_network: None, tmp_path: Path) -> None:
    """The negative cases below edit a round-tripped copy; unedited, it passes."""
    path = _write(load_workflow(), tmp_path / "copy.yml")
    assert check(path)[0] == 0
    assert check(path, TIMEOUT_SCHEMA)[0] == 0


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_workflow_is_rejected(no_network: None, tmp_path: Path, case: str) -> None:
    breaker, schema = BROKEN[case]
    doc = load_workflow()
    original = copy.deepcopy(doc)
    breaker(doc)
    assert doc != original
    code, output = check(_write(doc, tmp_path / "broken.yml"), schema)
    assert code != 0, f"{case}: accepted by {schema}:\n{output}"
    assert "Schema validation errors" in output, output


def test_bad_yaml_is_rejected(no_network: None, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(WORKFLOW.read_text().replace("jobs:\n", "jobs:\n  - [\n", 1))
    assert check(path)[0] != 0


# -- the workflow does what the guide says ------------------------------------------------


def test_the_workflow_gates_pull_requests_on_kind_with_pinned_actions() -> None:
    doc = load_workflow()
    assert "pull_request" in doc["on"]
    uses = [str(s["uses"]) for _, s in workflow_steps(doc) if "uses" in s]
    for ref in uses:
        _, _, version = ref.partition("@")
        assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", version), \
            f"{ref}: pin a release tag or a commit, never a branch"
    assert any(u.startswith("helm/kind-action@") for u in uses)
    assert any(re.fullmatch(r"actions/upload-artifact@v\d+", u) for u in uses)


def test_the_workflow_kind_pins_match_the_kind_provider() -> None:
    """The kind release and node image are the pair the harness's kind provider pins
    (skipped if the provider no longer names them)."""
    from clusters.kind import provider

    version = getattr(provider, "KIND_VERSION", None)
    image = getattr(provider, "DEFAULT_NODE_IMAGE", None)
    if version is None or image is None:
        pytest.skip("the kind provider pins no KIND_VERSION/DEFAULT_NODE_IMAGE any more")
    env = load_workflow()["env"]
    assert (env["KIND_VERSION"], env["KIND_NODE_IMAGE"]) == (version, image)


def test_the_workflow_runs_the_main_job_and_uploads_its_reports() -> None:
    doc = load_workflow()
    job = _job(doc)
    steps = [s for _, s in workflow_steps(doc)]
    harness = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")
                   and "repository" in s.get("with", {}))
    assert harness["with"]["path"] == HARNESS_CHECKOUT
    suite_steps = [s for s in steps if "run" in s
                   and any(i.run_env == "conformance" for i in invocations(str(s["run"]), ""))]
    assert len(suite_steps) == 1
    suite = suite_steps[0]
    assert suite.get("working-directory") == HARNESS_CHECKOUT  # ./run from its checkout
    (main_job,) = [i for i in invocations(str(suite["run"]), "") if i.run_env == "conformance"]
    given = dict(main_job.checks)["suite"]
    assert {"--cluster", "--implementation", "--report-dir", "--skip-tests"} <= set(given)
    argv = list(main_job.argv)
    assert argv[argv.index("--cluster") + 1] == "existing"
    assert argv[argv.index("--report-dir") + 1] == "$REPORT_DIR"
    assert "REPORT_DIR" in job["env"]
    # the status is recorded for the gate, which comes after the upload
    assert "$GITHUB_OUTPUT" in str(suite["run"]) and "set +e" in str(suite["run"])
    upload = _step(doc, "actions/upload-artifact@")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == "${{ env.REPORT_DIR }}"
    gate = steps[-1]
    assert steps.index(upload) < len(steps) - 1
    assert f"steps.{suite['id']}.outputs.status" in " ".join(map(str, gate["env"].values()))
    assert 'exit "$STATUS"' in str(gate["run"])


def test_the_workflow_names_only_harness_files_that_exist() -> None:
    doc = load_workflow()
    for _, step in workflow_steps(doc):
        for value in (step.get("with") or {}).values():
            if str(value).startswith(f"{HARNESS_CHECKOUT}/"):
                relative = str(value).removeprefix(f"{HARNESS_CHECKOUT}/")
                assert (REPO / relative).exists(), value
    comments = "\n".join(line for line in WORKFLOW.read_text().splitlines()
                         if line.lstrip().startswith("#"))
    for path in re.findall(r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.(?:md|py|yaml|yml|toml|ini))",
                           comments):
        if (REPO / path.split("/")[0]).is_dir():
            assert (REPO / path).exists(), f"the workflow's comments name {path}"



# -- options, environments and tests named ---------------------------------------------------


def run_env_problems(found: list[Invocation]) -> list[str]:
    envs = tox_envs()
    return [f"{inv.where}: ./run {inv.run_env}: no such environment in tox.ini"
            for inv in found if inv.run_env is not None and inv.run_env not in envs]


def guide_problems(md: Markdown, allowed: dict[str, set[str]]) -> list[str]:
    found = guide_invocations(md)
    return unknown_options(found, allowed) + run_env_problems(found)


def test_every_option_the_workflow_passes_exists(allowed: dict[str, set[str]]) -> None:
    found = workflow_invocations(load_workflow())
    assert any(inv.run_env == "conformance" for inv in found)
    assert unknown_options(found, allowed) + run_env_problems(found) == []
    # Options named in comments (e.g. the --cluster kind alternative) are the suite's.
    comments = " ".join(line for line in WORKFLOW.read_text().splitlines()
                        if line.lstrip().startswith("#"))
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", comments))
    assert named - allowed["suite"] == set()


def test_a_misspelt_option_in_the_workflow_is_caught(allowed: dict[str, set[str]]) -> None:
    doc = load_workflow()
    (step,) = [s for _, s in workflow_steps(doc) if "./run conformance" in str(s.get("run"))]
    step["run"] = str(step["run"]).replace("--report-dir", "--report-dirr")
    assert [p for p in unknown_options(workflow_invocations(doc), allowed)
            if "--report-dirr is not a suite option" in p]


def test_every_option_and_environment_the_guide_names_exists(
        allowed: dict[str, set[str]]) -> None:
    md = Markdown.read(GUIDE)
    found = guide_invocations(md)
    assert sum(1 for inv in found if inv.run_env == "conformance") >= 5
    assert any(inv.run_env == "kind" for inv in found)
    assert guide_problems(md, allowed) == []


GUIDE_MISTAKES = {
    "suite option in prose": ("Pass `--clutser kind`.", "--clutser is not a suite option"),
    "suite option in a block": ("```sh\n./run conformance -- --cluster kind \\\n"
                                "    --report-dirr /tmp/r\n```", "--report-dirr"),
    "pytest option": ("`.tox/conformance/bin/pytest conformance/suite --dsit loadgroup`",
                      "--dsit"),
    "perf option": ("`python -m perf run --profiles short`", "--profiles is not a perf option"),
    "flake option": ("`./run flake --rusn 3 -- --cluster kind`", "--rusn is not a flake option"),
    "option after flake's --": ("`./run flake --runs 3 -- --clustr kind`",
                                "--clustr is not a suite option"),
    "run environment": ("`./run conformence -- --cluster kind`", "./run conformence"),
}


@pytest.mark.parametrize("case", sorted(GUIDE_MISTAKES))
def test_a_mistake_in_the_guide_is_caught(allowed: dict[str, set[str]], case: str) -> None:
    text, expected = GUIDE_MISTAKES[case]
    problems = guide_problems(Markdown.parse(text), allowed)
    assert any(expected in p for p in problems), problems


def test_correct_commands_pass_the_guide_check(allowed: dict[str, set[str]]) -> None:
    text = ("`./run conformance -- --cluster kind -k walk --dist loadgroup --adapter x.yaml`\n"
            "```sh\nsudo apt-get install -y --no-install-recommends nftables\n"
            "kind load docker-image img:dev --name x\n"
            "./run flake --runs 3 -- --cluster existing --collect-only\n"
            "python -m perf run --profile short --adapter reference\n```")
    md = Markdown.parse(text)
    assert len(guide_invocations(md)) == 3
    assert guide_problems(md, allowed) == []


def test_the_guide_names_every_suite_option() -> None:
    """A new suite option shows here until the guide says what it is for."""
    md = Markdown.read(GUIDE)
    named = {w for span in md.spans for w in span.split() if w.startswith("--")}
    named |= {w for _, body in md.blocks for w in body.split() if w.startswith("--")}
    assert suite_options() - named == set()


def test_the_tests_named_in_skip_tests_exist() -> None:
    names = suite_test_names()
    given: list[str] = [load_workflow()["env"]["SKIP_TESTS"]]
    for inv in guide_invocations(Markdown.read(GUIDE)):
        argv = list(inv.argv)
        if "--skip-tests" in argv and argv.index("--skip-tests") + 1 < len(argv):
            given.append(argv[argv.index("--skip-tests") + 1])
    prefixes = [p.strip() for text in given for p in text.split(",") if p.strip()]
    prefixes = [p for p in prefixes if not p.startswith("$")]
    assert prefixes
    for prefix in prefixes:
        assert any(n == prefix or n.startswith(prefix) for n in names), \
            f"--skip-tests {prefix}: no test of conformance/suite has that name"


def test_the_guide_names_every_feature_and_profile() -> None:
    spans = set(Markdown.read(GUIDE).spans)
    assert ALL_FEATURES - spans == set()
    assert set(PROFILES) - spans == set()


# -- links and paths ------------------------------------------------------------------------


def link_problems(md: Markdown, base: Path = GUIDE.parent) -> list[str]:
    """Links that lead nowhere: to a missing file or heading, or out of the repository
    (``base``: the folder relative links start from)."""
    problems = []
    for link in md.links:
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # a URL: allowed, not a repository file
            if not link.startswith("https://"):
                problems.append(f"{link}: only https URLs")
            continue
        target, _, anchor = link.partition("#")
        if not target:
            if anchor not in md.anchors():
                problems.append(f"{link}: no such heading in the guide")
            continue
        path = (base / target).resolve()
        if target.startswith("/") or not path.is_relative_to(REPO):
            problems.append(f"{link}: outside the repository (use a path relative to docs/)")
        elif not path.exists():
            problems.append(f"{link}: {path.relative_to(REPO)} does not exist")
        elif anchor and path.suffix == ".md" and anchor not in Markdown.read(path).anchors():
            problems.append(f"{link}: no heading #{anchor} in {path.relative_to(REPO)}")
    return problems


def path_problems(md: Markdown) -> list[str]:
    """Repository paths written as code (``conformance/plugin.py``) that do not exist;
    output folders aside."""
    outputs = ("reports/out",)
    problems = []
    for span in md.spans:
        if not re.fullmatch(r"\.?[\w-][\w.-]*(/[\w.-]+)+/?", span):
            continue
        if not (REPO / span.split("/")[0]).exists() or span.startswith(outputs):
            continue
        if not (REPO / span).exists():
            problems.append(f"the guide names {span}, which does not exist")
    return problems


def test_every_link_of_the_guide_leads_somewhere_in_the_repository() -> None:
    md = Markdown.read(GUIDE)
    assert len(md.links) >= 10
    assert link_problems(md) == []


def test_the_repository_paths_the_guide_names_exist() -> None:
    assert path_problems(Markdown.read(GUIDE)) == []


LINK_MISTAKES = {
    "missing file": "[x](../conformance/no-such-file.py)",
    "missing heading": "[x](../README.md#no-such-heading)",
    "missing own heading": "[x](#nowhere)",
    "outside the repository": "[x](../../elsewhere.md)",
    "absolute path": "[x](/etc/hosts)",
    "file URL": "[x](file:///etc/hosts)",
}


@pytest.mark.parametrize("case", sorted(LINK_MISTAKES))
def test_a_broken_link_is_caught(case: str) -> None:
    assert link_problems(Markdown.parse(LINK_MISTAKES[case]))


def test_a_missing_path_named_in_code_is_caught() -> None:
    md = Markdown.parse("See `conformance/no_such_module.py` and `reports/out/junit.xml`.")
    assert path_problems(md) == [
        "the guide names conformance/no_such_module.py, which does not exist"]


def test_the_guide_links_the_companion_documents() -> None:
    links = {link.partition("#")[0] for link in Markdown.read(GUIDE).links}
    assert {"declarative-adapter.md",
            "../conformance/adapters/examples/reference-declarative.yaml",
            "examples/github-actions-conformance.yml"} <= links
