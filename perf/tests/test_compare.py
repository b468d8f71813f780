"""Regression comparison: function and CLI."""

from __future__ import annotations

import json
from pathlib import Path

from perf.cli import main
from perf.compare import compare
from perf.tests.helpers import three_modes


def test_same_run_has_no_regression() -> None:
    doc = three_modes()
    result = compare(doc, doc)
    assert not result.regressed and result.compared > 20 and not result.unmatched


def test_slower_mode_is_flagged_and_named() -> None:
    before, after = three_modes(), three_modes(extra_ms={"l7": 2.0})
    result = compare(after, before, threshold=0.10)
    assert result.regressed
    assert {c.where.split("/")[1] for c in result.regressions} == {"l7"}
    assert any("latency p99 ms" in c.metric for c in result.regressions)
    assert "REGRESSION direct/l7/50rps" in result.text()


def test_small_absolute_jitter_is_not_a_regression() -> None:
    before, after = three_modes(), three_modes(extra_ms={"l4": 0.1})
    assert not [c for c in compare(after, before).regressions if "latency" in c.metric]


def test_lower_max_throughput_is_a_regression_higher_is_an_improvement() -> None:
    before = three_modes(peaks={"none": 5000, "l4": 3000, "l7": 1000})
    after = three_modes(peaks={"none": 5000, "l4": 2000, "l7": 1500})
    result = compare(after, before)
    assert [c.where for c in result.regressions if "throughput" in c.metric] == ["direct/l4/max"]
    assert [c.where for c in result.improvements if "throughput" in c.metric] == ["direct/l7/max"]


def test_cli_exit_codes(tmp_path: Path, capsys: object) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(three_modes()))
    b.write_text(json.dumps(three_modes(extra_ms={"l4": 5.0})))
    assert main(["compare", str(a), str(a)]) == 0
    assert main(["compare", str(b), str(a), "--threshold", "0.2"]) == 1
    assert main(["check", str(b), "--max-p99-overhead-ms", "2"]) == 1
    assert main(["check", str(a), "--max-p99-overhead-ms", "2"]) == 0


def test_cli_rejects_what_is_not_a_result(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    try:
        main(["compare", str(bad), str(bad)])
    except SystemExit as exc:
        assert "not a perf result document" in str(exc)
    else:
        raise AssertionError("expected SystemExit")
