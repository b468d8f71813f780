"""Bad input gets a clear message and exit code 2, before any cluster is started."""

from __future__ import annotations

import pytest

from perf.cli import main, parse_faults
from perf.plan import PlanError


def test_unknown_adapter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--profile", "short", "--adapter", "nosuchmesh"]) == 2
    err = capsys.readouterr().err
    assert "unknown mesh adapter 'nosuchmesh'" in err and "reference" in err


def test_unknown_profile_and_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    assert main(["run", "--profile", "short", "--modes", "none,sidecar"]) == 2
    assert "unknown modes" in capsys.readouterr().err


def test_bad_component_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--profile", "short", "--component", "ztunnel=oops"]) == 2
    assert "name=namespace/kind/workload" in capsys.readouterr().err


def test_fault_syntax() -> None:
    assert parse_faults(["l4=20"]).by_mode["l4"].delay_ms == 20
    with pytest.raises(PlanError, match="MODE=MS"):
        parse_faults(["sidecar=3"])
    with pytest.raises(PlanError, match="not a number"):
        parse_faults(["l4=fast"])
