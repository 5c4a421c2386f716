"""metrics_pipeline/clock.py: the consumer's window clock."""

from __future__ import annotations

from datetime import datetime, timezone

from metrics_pipeline.clock import Clock, datetime_from_ms, utc_now_ms


def test_the_clock_holds_still_when_the_system_clock_is_stepped_back() -> None:
    readings = iter([100.0, 100.5, 99.0, 100.2, 100.7])  # an NTP step back after 100.5
    clock = Clock(wall=lambda: next(readings))
    assert [clock.now() for _ in range(5)] == [100.0, 100.5, 100.5, 100.5, 100.7]


def test_milliseconds_become_exact_utc_datetimes() -> None:
    moment = datetime(2026, 11, 26, 15, 4, 5, 123000, tzinfo=timezone.utc)
    milliseconds = int(moment.timestamp()) * 1000 + 123
    assert datetime_from_ms(milliseconds) == moment
    assert datetime_from_ms(milliseconds).tzinfo is timezone.utc


def test_now_is_cut_to_bson_precision() -> None:
    # BSON dates hold milliseconds: the reading is truncated, never rounded up.
    assert utc_now_ms(Clock(wall=lambda: 1.2349)) == datetime_from_ms(1234)
