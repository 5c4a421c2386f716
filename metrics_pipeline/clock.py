"""The consumer's clock: durations from a steady clock, dates from the system clock.

Window start and end are stamped on the consumer's clock (SPEC §3: not the
producers' timestamps), and the processing rate is the window's message count over
its duration. The system clock can be stepped (an NTP correction, a VM resumed, a
clock set by hand); a duration taken from it would then be wrong by the step: a
window spanning a step of an hour forward would last an hour, one spanning a step
back would last nothing.

So every instant the consumer records (a batch received, a raw write acknowledged) is
a reading of a steady clock (:func:`time.monotonic`, which NTP may slew but never
steps), expressed in epoch seconds: :meth:`Clock.now` equals the system clock at the
moment the :class:`Clock` was made. When an instant becomes a date in a document it
is placed on the system clock as it reads at that moment (:meth:`Clock.to_utc`): the
two bounds of a window are placed together, so its duration is the steady clock's,
to the millisecond, and its dates agree with the system clock of when it was written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Clock:
    """Steady instants in epoch seconds, and their place on the system clock."""

    def __init__(self, wall: Callable[[], float] = time.time, steady: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._steady = steady
        self._origin = wall() - steady()

    def now(self) -> float:
        """The steady clock, in epoch seconds as the system clock read at the start."""
        return self._steady() + self._origin

    def to_utc(self, *instants: float) -> tuple[float, ...]:
        """Instants of :meth:`now`, as epoch seconds of the system clock now: shifted
        by the steps it took since the start (none: unchanged)."""
        shift = self._wall() - self.now()
        return tuple(instant + shift for instant in instants)

    def utc_now(self) -> float:
        """The system clock, epoch seconds."""
        return self._wall()


def datetime_from_ms(milliseconds: int) -> datetime:
    """An exact UTC datetime for a count of milliseconds since the epoch."""
    return EPOCH + timedelta(milliseconds=milliseconds)


def utc_now_ms(clock: Clock) -> datetime:
    """The system clock's current time at BSON precision (milliseconds)."""
    return datetime_from_ms(int(clock.utc_now() * 1000))
