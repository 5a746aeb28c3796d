"""The simulator's pacing and its report, without Kafka (simulator/schedule.py, simulator/report.py)."""

from __future__ import annotations

import json

import pytest

from simulator.report import Delivery, Totals, Window
from simulator.schedule import MAX_LAG_S, Schedule


def test_slots_are_due_on_a_fixed_grid_from_the_start_so_lateness_never_accumulates():
    schedule = Schedule(start=100.0, slot_s=0.001)
    assert schedule.due(0) == 100.0 and schedule.due(1000) == pytest.approx(101.0)
    lag, skipped = schedule.catch_up(500, now=100.9)  # 400 ms late: caught up by sending, not by moving the grid
    assert lag == pytest.approx(0.4) and not skipped
    assert schedule.due(1000) == pytest.approx(101.0)
    assert schedule.wait(1000, now=100.95) == pytest.approx(0.05)


def test_a_sender_more_than_two_seconds_behind_skips_ahead_instead_of_sending_stale_fixes():
    schedule = Schedule(start=0.0, slot_s=0.01)
    lag, skipped = schedule.catch_up(100, now=1.0 + MAX_LAG_S + 0.5)
    assert skipped and lag == pytest.approx(MAX_LAG_S + 0.5)
    assert schedule.wait(100, now=1.0 + MAX_LAG_S + 0.5) == pytest.approx(0.0), "the next slot is due now"
    assert schedule.skipped_s == pytest.approx(MAX_LAG_S + 0.5)


def test_a_window_counts_its_own_fixes_and_its_rate_against_the_target():
    delivery = Delivery()
    delivery.sent, delivery.acked = 100, 90
    window = Window(10.0, delivery)
    delivery.sent, delivery.acked = 600, 590
    window.max_lag = 0.012
    figures = window.figures(15.0, delivery, target_rate=100.0)
    assert figures == {
        "seconds": 5.0,
        "sent": 500,
        "acknowledged": 500,
        "failed": 0,
        "rate": 100.0,
        "target_rate": 100.0,
        "error_pct": 0.0,
        "max_lag_ms": 12,
    }
    assert "100.0 fixes/s against target 100.0/s (+0.0%), max lag 12 ms" in window.line(15.0, delivery, 100.0)


def test_the_totals_add_up_in_the_line_and_in_the_json_summary():
    windows = ({"seconds": 5.0, "max_lag_ms": 3}, {"seconds": 2.0, "max_lag_ms": 7})
    totals = Totals(sent=1400, acked=1398, failed=1, seconds=7.0, target_rate=200.0, windows=windows)
    assert totals.line().startswith("totals: sent 1400, acknowledged 1398, failed 1, unconfirmed 1")
    summary = json.loads(totals.summary_line())["summary"]
    assert summary["sent"] == summary["acknowledged"] + summary["failed"] + summary["unconfirmed"]
    assert (summary["rate"], summary["max_lag_ms"], len(summary["windows"])) == (200.0, 7, 2)
