"""--source psutil: the rates and counts computed from psutil's counters.

psutil is replaced by fixed counters here, so every value is known exactly; that the
real psutil gives valid, plausible messages end to end is
tests/integration/test_host_metrics.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from metrics_pipeline import host_metrics
from metrics_pipeline.host_metrics import HostMetricsSource
from metrics_pipeline.message import validate

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


class _Machine:
    """psutil's counters and readings, set by the test."""

    def __init__(self) -> None:
        self.at = 100.0
        self.disk = SimpleNamespace(read_bytes=0, write_bytes=0)
        self.net = SimpleNamespace(bytes_sent=0, bytes_recv=0, errin=0, errout=0, dropin=0, dropout=0)
        self.cpu = 0.0
        self.memory = 50.0

    def psutil(self) -> SimpleNamespace:
        return SimpleNamespace(disk_io_counters=lambda: self.disk, net_io_counters=lambda: self.net,
                               cpu_percent=lambda interval: self.cpu,
                               virtual_memory=lambda: SimpleNamespace(percent=self.memory))


@pytest.fixture
def machine(monkeypatch) -> _Machine:
    fake = _Machine()
    monkeypatch.setattr(host_metrics, "psutil", fake.psutil())
    return fake


def source(machine: _Machine) -> HostMetricsSource:
    """A source whose first reading (start) is taken now."""
    src = HostMetricsSource("mi-portatil", clock=lambda: machine.at, now=lambda: NOW)
    src.start()
    return src


def test_the_first_reading_is_taken_at_start_not_when_the_source_is_built(machine: _Machine) -> None:
    # Between the two the producer starts up (imports, waiting for Kafka): that is not
    # the host's activity over an interval.
    src = HostMetricsSource("mi-portatil", clock=lambda: machine.at, now=lambda: NOW)
    machine.at, machine.disk.write_bytes = 130.0, 90_000_000  # 30 s waiting for Kafka
    src.start()
    machine.at, machine.disk.write_bytes = 140.0, 100_000_000  # 10 MB in the 10 s since start
    assert src.sample()["disk_io_mbps"] == 1.0


def test_rates_are_per_second_since_the_previous_sample(machine: _Machine) -> None:
    src = source(machine)  # the first reading: counters at 0, t = 100 s
    machine.at = 102.0
    machine.disk.read_bytes, machine.disk.write_bytes = 6_000_000, 4_000_000  # 10 MB in 2 s
    machine.net.bytes_sent, machine.net.bytes_recv = 1_000_000, 1_500_000   # 20 Mbit in 2 s
    machine.net.errin, machine.net.errout, machine.net.dropin, machine.net.dropout = 1, 0, 2, 1
    machine.cpu, machine.memory = 37.456, 61.2
    [message] = src.next_round()
    assert message["server_id"] == "mi-portatil" and message["timestamp_utc"] == NOW.isoformat()
    assert message["metrics"] == {"cpu_percent": 37.46, "memory_percent": 61.2, "disk_io_mbps": 5.0,
                                  "network_mbps": 10.0, "error_count": 4}
    validate(message)  # the schema the consumer accepts

    machine.at = 106.0  # the next sample counts only what happened since this one
    machine.disk.write_bytes += 2_000_000
    machine.net.dropin += 3
    assert src.sample() == {"cpu_percent": 37.46, "memory_percent": 61.2, "disk_io_mbps": 0.5,
                            "network_mbps": 0.0, "error_count": 3}


def test_counters_that_go_backwards_count_as_nothing(machine: _Machine) -> None:
    machine.disk.read_bytes, machine.net.bytes_recv, machine.net.errin = 10**9, 10**9, 50
    src = source(machine)
    machine.at = 101.0
    machine.disk.read_bytes, machine.net.bytes_recv, machine.net.errin = 0, 0, 0  # a device gone, a wrap
    sample = src.sample()
    assert (sample["disk_io_mbps"], sample["network_mbps"], sample["error_count"]) == (0.0, 0.0, 0)


def test_a_machine_without_disk_or_network_counters_reports_zero(machine: _Machine, monkeypatch) -> None:
    fake = machine.psutil()
    fake.disk_io_counters = fake.net_io_counters = lambda: None  # e.g. some containers
    monkeypatch.setattr(host_metrics, "psutil", fake)
    src = source(machine)
    machine.at = 101.0
    sample = src.sample()
    assert (sample["disk_io_mbps"], sample["network_mbps"], sample["error_count"]) == (0.0, 0.0, 0)
