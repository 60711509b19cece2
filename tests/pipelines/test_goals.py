"""Bench goals are judged from lookups of figures, with no report object behind them."""

from __future__ import annotations

from pipelines.bench.goals import Goal, evaluate

SPEED = Goal("pyav >= 2x lintel", "h264", "reader:pyav", ("reader:lintel", "loader:lintel:2"), 2.0, "test")
CHEAPER = Goal("fast >= 1.3x, <= 1.3x bytes", "fast", "reader:pyav", ("reader:pyav",), 1.3, "test",
               against_encoding="slow", max_bytes_ratio=1.3)


def _runs(table: dict):
    return lambda encoding, kind, backend, workers: table.get((encoding, kind, backend, workers), [])


def test_a_goal_is_the_ratio_of_medians_against_the_fastest_reference():
    runs = _runs({("h264", "reader", "pyav", None): [30.0, 50.0, 40.0],
                  ("h264", "reader", "lintel", None): [10.0, 12.0, 11.0],
                  ("h264", "loader", "lintel", 2): [20.0]})
    [row] = evaluate(runs, lambda encoding: None, (SPEED,))
    assert row["value"] == 2.0 and row["met"] is True


def test_a_goal_without_figures_is_undecided():
    [row] = evaluate(_runs({}), lambda encoding: None, (SPEED,))
    assert row["value"] is None and row["met"] is None


def test_a_size_bound_goal_needs_both_speed_and_bytes():
    runs = _runs({("fast", "reader", "pyav", None): [140.0], ("slow", "reader", "pyav", None): [100.0]})
    [fits] = evaluate(runs, {"fast": 110.0, "slow": 100.0}.get, (CHEAPER,))
    [too_big] = evaluate(runs, {"fast": 140.0, "slow": 100.0}.get, (CHEAPER,))
    assert fits["met"] is True and fits["bytes_ratio"] == 1.1
    assert too_big["met"] is False and too_big["bytes_ratio"] == 1.4
