"""The soak benchmark's arithmetic and its command line; the run itself is ./run soak."""

from __future__ import annotations

import pytest

from perf.component_samplers import ComponentUsage
from perf.soak import Growth, growths, parse_args


def usage(rss: int, fds: int | None) -> ComponentUsage:
    return ComponentUsage(cpu_s=1.0, rss_bytes=rss, pods=1, processes=1, open_fds=fds)


def test_growth_over_ten_percent_is_called_out() -> None:
    found = {(g.component, g.figure): g for g in growths(
        {"ztunnel": usage(100 << 20, 50), "waypoint": usage(100 << 20, None)},
        {"ztunnel": usage(111 << 20, 55), "waypoint": usage(109 << 20, None),
         "control_plane": usage(1, 1)})}
    assert set(found) == {("ztunnel", "rss"), ("ztunnel", "open_fds"), ("waypoint", "rss")}
    assert found[("ztunnel", "rss")].called_out  # +11 %
    assert not found[("ztunnel", "open_fds")].called_out  # +10 % exactly
    assert not found[("waypoint", "rss")].called_out
    assert "grew more than 10 %" in found[("ztunnel", "rss")].line()
    assert "MiB" in found[("ztunnel", "rss")].line()
    assert Growth("x", "open_fds", 0, 5).ratio is None  # nothing to grow from: not a ratio


@pytest.mark.parametrize(("argv", "message"), [
    (["--minutes", "0"], "--minutes must be above 0"),
    (["--minutes", "1000"], "at most 240"),
    (["--rate", "0"], "--rate must be between 1 and 50"),
])
def test_bad_arguments_name_the_option(argv: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
