"""Real metrics of the machine the producer runs on (``--source psutil``).

The same message schema as the simulation, measured with psutil:

* ``cpu_percent``: CPU use since the previous sample (all cores);
* ``memory_percent``: memory in use now;
* ``disk_io_mbps``: bytes read + written per second since the previous sample, in MB/s
  (1 MB = 10^6 bytes);
* ``network_mbps``: bytes sent + received per second since the previous sample, in
  megabits per second;
* ``error_count``: network errors and dropped packets (in and out) since the
  previous sample.

Every value but memory is a difference between two readings, so the first one is
taken by :meth:`HostMetricsSource.start`, when the producer loop begins (Kafka
reached, topic ready), and the first round comes one interval later
(``first_round_waits``): it measures this host over a full interval, not the
producer's own start-up (imports, waiting for Kafka), which on an idle machine read as
a CPU spike.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psutil

from metrics_pipeline.simulation import build_message


@dataclass(frozen=True)
class _Counters:
    at: float
    disk_bytes: int
    net_bytes: int
    net_errors: int


def _read_counters(clock: Callable[[], float]) -> _Counters:
    disk = psutil.disk_io_counters()
    net = psutil.net_io_counters()
    return _Counters(
        at=clock(),
        disk_bytes=(disk.read_bytes + disk.write_bytes) if disk else 0,
        net_bytes=(net.bytes_sent + net.bytes_recv) if net else 0,
        net_errors=(net.errin + net.errout + net.dropin + net.dropout) if net else 0,
    )


def default_server_id() -> str:
    """The host name, as the server id of a real machine."""
    return socket.gethostname() or "localhost"


class HostMetricsSource:
    """Produces one message per round with this host's real metrics."""

    first_round_waits = True  # see the module doc

    def __init__(self, server_id: str, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.server_ids: tuple[str, ...] = (server_id,)
        self._clock = clock
        self._now = now
        self._previous: _Counters | None = None

    def start(self) -> None:
        """Take the first reading: the next sample measures from here."""
        psutil.cpu_percent(interval=None)  # starts the CPU measurement interval
        self._previous = _read_counters(self._clock)

    def sample(self) -> dict[str, Any]:
        if self._previous is None:
            self.start()
        assert self._previous is not None
        current = _read_counters(self._clock)
        previous, self._previous = self._previous, current
        elapsed = max(current.at - previous.at, 1e-3)
        # Counters can go backwards (a device removed, a wrap): count that as 0.
        disk = max(current.disk_bytes - previous.disk_bytes, 0)
        net = max(current.net_bytes - previous.net_bytes, 0)
        errors = max(current.net_errors - previous.net_errors, 0)
        return {
            "cpu_percent": round(min(max(psutil.cpu_percent(interval=None), 0.0), 100.0), 2),
            "memory_percent": round(min(max(psutil.virtual_memory().percent, 0.0), 100.0), 2),
            "disk_io_mbps": round(disk / elapsed / 1e6, 2),
            "network_mbps": round(net * 8 / elapsed / 1e6, 2),
            "error_count": int(errors),
        }

    def next_round(self) -> list[dict[str, Any]]:
        return [build_message(self.server_ids[0], self.sample(), self._now())]

    def close(self) -> None:
        """Nothing to release."""
