"""metrics_pipeline/clock.py: the consumer's window clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from metrics_pipeline.clock import Clock, datetime_from_ms, utc_now_ms


class Clocks:
    """A system clock and a steady clock that the test moves."""

    def __init__(self) -> None:
        self.wall = 1_000.0
        self.steady = 5.0

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.wall, steady=lambda: self.steady)

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.steady += seconds


@pytest.mark.parametrize("step", [-3600.0, -0.5, 0.0, 0.5, 3600.0])
def test_a_step_of_the_system_clock_changes_no_duration_only_the_dates(step: float) -> None:
    # A window received at 1,000 s and stored 2.5 s later, with the system clock
    # stepped (NTP, a VM resumed) in between: it lasted 2.5 s, whatever the step, and
    # its dates are where the system clock puts them when the document is written.
    clocks = Clocks()
    clock = clocks.clock()
    received = clock.now()
    clocks.tick(1.0)
    clocks.wall += step
    clocks.tick(1.5)
    stored = clock.now()
    assert stored - received == 2.5
    start, end = clock.to_utc(received, stored)
    assert (start, end) == (1_000.0 + step, 1_002.5 + step)
    assert clock.utc_now() == 1_002.5 + step


def test_without_a_step_the_steady_instants_are_the_system_clocks_readings() -> None:
    clocks = Clocks()
    clock = clocks.clock()
    clocks.tick(7.25)
    assert clock.now() == clock.utc_now() == 1_007.25
    assert clock.to_utc(1_003.0) == (1_003.0,)


def test_milliseconds_become_exact_utc_datetimes() -> None:
    moment = datetime(2026, 11, 26, 15, 4, 5, 123000, tzinfo=timezone.utc)
    milliseconds = int(moment.timestamp()) * 1000 + 123
    assert datetime_from_ms(milliseconds) == moment
    assert datetime_from_ms(milliseconds).tzinfo is timezone.utc


def test_now_is_cut_to_bson_precision() -> None:
    # BSON dates hold milliseconds: the reading is truncated, never rounded up.
    assert utc_now_ms(Clock(wall=lambda: 1.2349)) == datetime_from_ms(1234)
