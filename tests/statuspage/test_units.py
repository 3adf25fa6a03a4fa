"""The page's pure parts: relative times on a given clock, durations, and the charts' geometry."""

from __future__ import annotations

import pytest

from audsync.statuspage import charts
from audsync.statuspage.timefmt import duration, relative, utc

NOW = 1_780_000_000.0


@pytest.mark.parametrize(("ago", "said"), [
    (0.4, "just now"), (42, "42 s ago"), (180, "3 min ago"), (3599, "59 min ago"), (5 * 3600 + 10, "5 h ago"),
    (3 * 86400, "3 days ago"), (-300, "in 5 min"), (-7200, "in 2 h"),
])
def test_relative_times_are_words_on_the_given_clock(ago, said):
    assert relative(NOW - ago, NOW) == said


def test_times_are_utc():
    assert utc(0) == "1970-01-01 00:00:00 UTC"


@pytest.mark.parametrize(("seconds", "said"), [(0.04, "0.04 s"), (12.34, "12.3 s"), (185, "3 min 5 s"),
                                               (7440, "2 h 4 min")])
def test_durations(seconds, said):
    assert duration(seconds) == said


def test_bars_scale_from_zero_to_the_largest_value_one_bar_per_value():
    chart = charts.bars("entered", [0, 5, 10], ["a", "b", "c"], height=44)
    assert [m.title for m in chart.marks] == ["a", "b", "c"]
    assert (chart.low, chart.high) == (0, 10)
    assert chart.marks[0].height == 0 and chart.marks[2].height == 43 and chart.marks[1].height == 21.5
    assert all(m.y + m.height == 44 for m in chart.marks)  # standing on the bottom edge
    assert [m.x + m.width / 2 for m in chart.marks] == [100, 300, 500]  # centred in their slots


def test_a_line_skips_unknown_values_and_spans_its_lowest_to_highest():
    chart = charts.line("members", [10, None, 20, 15], ["a", "b", "c", "d"], height=90)
    assert [m.title for m in chart.marks] == ["a", "c", "d"]
    assert (chart.low, chart.high) == (10, 20)
    ys = [m.y for m in chart.marks]
    assert ys[0] == 90 - charts.PAD and ys[1] == charts.PAD and ys[2] == 45
    assert chart.line == " ".join(f"{m.x},{m.y}" for m in chart.marks)
    assert chart.summary == "members: 3 points, axis from 10 to 20"


def test_a_flat_line_sits_in_the_middle():
    chart = charts.line("members", [7, 7], ["a", "b"], height=90)
    assert {m.y for m in chart.marks} == {45}
