"""KPI maths of one window (SPEC §3). Pure functions, no I/O.

* averages of cpu, memory, disk and network over the window's messages, summed with
  :func:`math.fsum` (correctly rounded, so any recomputation from the raw documents
  gives exactly the same float, whatever the order). Values near the largest float
  (valid: SPEC §2 sets no upper bound on disk and network) would overflow the sum;
  then each value is divided first, so the mean is still the right finite number,
  to within a few units in the last place;
* ``error_count_sum``: the integer sum (Python ints do not overflow; how a sum
  beyond 64 bits is stored is :mod:`metrics_pipeline.documents`' concern);
* ``tasa_procesamiento_msg_seg = message_count / window_duration_seconds``.

Window duration, on the consumer's clock: ``window_start`` is when the window's first
message was received from Kafka, ``window_end`` when its last message's raw write was
acknowledged by MongoDB (both measured on a steady clock and placed together on the
system clock, see :mod:`metrics_pipeline.clock`). Both are stored as BSON dates, which
hold milliseconds, so the start is rounded down and the end rounded up to the
millisecond (the interval is never shortened) and the duration is computed from those
stored values: anyone can recompute the rate exactly from the document, and it is
never a division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

from metrics_pipeline.clock import datetime_from_ms


class Measured(Protocol):
    """What a KPI needs of a message (read-only, so frozen dataclasses qualify)."""

    @property
    def cpu_percent(self) -> float: ...
    @property
    def memory_percent(self) -> float: ...
    @property
    def disk_io_mbps(self) -> float: ...
    @property
    def network_mbps(self) -> float: ...
    @property
    def error_count(self) -> int: ...


@dataclass(frozen=True)
class WindowKpis:
    cpu_percent_avg: float
    memory_percent_avg: float
    disk_io_mbps_avg: float
    network_mbps_avg: float
    error_count_sum: int
    tasa_procesamiento_msg_seg: float

    def as_document(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class WindowBounds:
    start: datetime
    end: datetime
    duration_seconds: float


def window_bounds(received_at: float, stored_at: float) -> WindowBounds:
    """Millisecond bounds of a window from two instants (epoch seconds, on one clock)."""
    start_ms = math.floor(received_at * 1000)
    end_ms = max(math.ceil(stored_at * 1000), start_ms + 1)
    return WindowBounds(start=datetime_from_ms(start_ms), end=datetime_from_ms(end_ms),
                        duration_seconds=(end_ms - start_ms) / 1000)


def mean(values: Sequence[float]) -> float:
    """The average of finite floats: correctly rounded sum / n, or per-value division if the sum overflows."""
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        return math.fsum(v / len(values) for v in values)


def compute_kpis(members: Sequence[Measured], duration_seconds: float) -> WindowKpis:
    """The KPIs of a window of messages lasting ``duration_seconds`` (> 0)."""
    if not members:
        raise ValueError("a window needs at least one message")
    if duration_seconds <= 0:
        raise ValueError("a window lasts more than zero seconds")
    n = len(members)
    return WindowKpis(
        cpu_percent_avg=mean([m.cpu_percent for m in members]),
        memory_percent_avg=mean([m.memory_percent for m in members]),
        disk_io_mbps_avg=mean([m.disk_io_mbps for m in members]),
        network_mbps_avg=mean([m.network_mbps for m in members]),
        error_count_sum=sum(m.error_count for m in members),
        tasa_procesamiento_msg_seg=n / duration_seconds,
    )
