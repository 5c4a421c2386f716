"""Simulated server metrics, with the course's value ranges (SPEC §2).

Per server and round:

* ``cpu_percent``: uniform 5-75, with a 10 % chance of a spike uniform 85-98;
* ``memory_percent``: uniform 20-85, with a 5 % chance of a spike uniform 90-99;
* ``disk_io_mbps``: uniform 0.1-50; ``network_mbps``: uniform 1-100;
* ``error_count``: 0, with an 8 % chance of an integer 1-3;
* floats rounded to 2 decimals.

The random generator is passed in, so ``--seed`` repeats the values of a run. The
message id is always a fresh UUID4 from the operating system, never from the seed:
a repeated run must not look like a replay of the first one.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

CPU_RANGE = (5.0, 75.0)
CPU_SPIKE_RANGE = (85.0, 98.0)
CPU_SPIKE_PROBABILITY = 0.10
MEMORY_RANGE = (20.0, 85.0)
MEMORY_SPIKE_RANGE = (90.0, 99.0)
MEMORY_SPIKE_PROBABILITY = 0.05
DISK_RANGE = (0.1, 50.0)
NETWORK_RANGE = (1.0, 100.0)
ERROR_PROBABILITY = 0.08
ERROR_RANGE = (1, 3)


def simulate_metrics(rng: random.Random) -> dict[str, Any]:
    """One server's metrics for one round."""
    if rng.random() < CPU_SPIKE_PROBABILITY:
        cpu = rng.uniform(*CPU_SPIKE_RANGE)
    else:
        cpu = rng.uniform(*CPU_RANGE)
    if rng.random() < MEMORY_SPIKE_PROBABILITY:
        memory = rng.uniform(*MEMORY_SPIKE_RANGE)
    else:
        memory = rng.uniform(*MEMORY_RANGE)
    disk = rng.uniform(*DISK_RANGE)
    network = rng.uniform(*NETWORK_RANGE)
    errors = rng.randint(*ERROR_RANGE) if rng.random() < ERROR_PROBABILITY else 0
    return {
        "cpu_percent": round(cpu, 2),
        "memory_percent": round(memory, 2),
        "disk_io_mbps": round(disk, 2),
        "network_mbps": round(network, 2),
        "error_count": errors,
    }


def build_message(server_id: str, metrics: dict[str, Any], now: datetime,
                  message_id: str | None = None) -> dict[str, Any]:
    """The message of SPEC §2 for one server."""
    return {
        "server_id": server_id,
        "timestamp_utc": now.astimezone(timezone.utc).isoformat(),
        "metrics": metrics,
        "message_uuid": message_id or str(uuid.uuid4()),
    }


class SimulatedSource:
    """Produces one round of simulated messages, one per server id."""

    def __init__(self, server_ids: Sequence[str], rng: random.Random,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.server_ids = tuple(server_ids)
        self._rng = rng
        self._now = now

    first_round_waits = False  # nothing to measure: the first round goes at once

    def start(self) -> None:
        """Nothing to prepare; here for symmetry with the host source."""

    def next_round(self) -> list[dict[str, Any]]:
        # One call to the OS for the whole round's random ids (a call per id is
        # measurable at thousands of messages per second).
        entropy = os.urandom(16 * len(self.server_ids))
        return [build_message(server_id, simulate_metrics(self._rng), self._now(),
                              str(uuid.UUID(bytes=entropy[16 * i:16 * i + 16], version=4)))
                for i, server_id in enumerate(self.server_ids)]

    def close(self) -> None:
        """Nothing to release; here for symmetry with the host source."""
