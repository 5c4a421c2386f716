"""The consumer's clock: UTC wall time that never goes backwards within a run.

Window start and end are stamped with this clock (SPEC §3: consumer clock, not the
producers' timestamps). If the system clock is stepped back (NTP), the clock holds
its last reading instead of producing a negative window duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Clock:
    """Seconds since the epoch, monotonic non-decreasing."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._last = 0.0

    def now(self) -> float:
        self._last = max(self._wall(), self._last)
        return self._last


def datetime_from_ms(milliseconds: int) -> datetime:
    """An exact UTC datetime for a count of milliseconds since the epoch."""
    return EPOCH + timedelta(milliseconds=milliseconds)


def utc_now_ms(clock: Clock) -> datetime:
    """The clock's current time at BSON precision (milliseconds)."""
    return datetime_from_ms(int(clock.now() * 1000))
