"""Simulation of SPEC §2, seeded: ranges, rounding, spike and error frequencies."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone

from metrics_pipeline.message import parse_message
from metrics_pipeline.simulation import SimulatedSource, build_message, simulate_metrics

N = 40_000


def samples(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [simulate_metrics(rng) for _ in range(N)]


def within(fraction: float, expected: float, tolerance: float = 0.01) -> bool:
    return abs(fraction - expected) <= tolerance


def test_values_stay_in_the_course_ranges_and_are_rounded() -> None:
    for m in samples():
        cpu, mem = m["cpu_percent"], m["memory_percent"]
        assert 5 <= cpu <= 75 or 85 <= cpu <= 98
        assert 20 <= mem <= 85 or 90 <= mem <= 99
        assert 0.1 <= m["disk_io_mbps"] <= 50
        assert 1 <= m["network_mbps"] <= 100
        assert m["error_count"] in (0, 1, 2, 3) and isinstance(m["error_count"], int)
        for key in ("cpu_percent", "memory_percent", "disk_io_mbps", "network_mbps"):
            assert round(m[key], 2) == m[key]


def test_spike_and_error_frequencies() -> None:
    data = samples()
    cpu_spikes = sum(m["cpu_percent"] >= 85 for m in data) / N
    mem_spikes = sum(m["memory_percent"] >= 90 for m in data) / N
    errors = sum(m["error_count"] > 0 for m in data) / N
    assert within(cpu_spikes, 0.10), cpu_spikes
    assert within(mem_spikes, 0.05), mem_spikes
    assert within(errors, 0.08), errors
    nonzero = [m["error_count"] for m in data if m["error_count"]]
    for value in (1, 2, 3):
        assert within(nonzero.count(value) / len(nonzero), 1 / 3, 0.03)
    normal_cpu = [m["cpu_percent"] for m in data if m["cpu_percent"] < 85]
    assert within(sum(normal_cpu) / len(normal_cpu), 40.0, 0.5)


def test_the_seed_repeats_the_values() -> None:
    assert samples(3)[:100] == samples(3)[:100]
    assert samples(3)[:100] != samples(4)[:100]


def test_a_round_has_one_valid_message_per_server_with_fresh_uuids() -> None:
    now = datetime(2026, 11, 26, 15, 4, 5, 123456, tzinfo=timezone.utc)
    source = SimulatedSource(["web01", "db01"], random.Random(1), now=lambda: now)
    first, second = source.next_round(), source.next_round()
    assert [m["server_id"] for m in first] == ["web01", "db01"]
    for message in first + second:
        assert set(message) == {"server_id", "timestamp_utc", "metrics", "message_uuid"}
        assert message["timestamp_utc"] == "2026-11-26T15:04:05.123456+00:00"
        assert uuid.UUID(message["message_uuid"]).version == 4
        parse_message(__import__("json").dumps(message).encode())  # valid by the consumer's rules
    again = SimulatedSource(["web01", "db01"], random.Random(1), now=lambda: now).next_round()
    assert [m["metrics"] for m in again] == [m["metrics"] for m in first]
    assert {m["message_uuid"] for m in again}.isdisjoint(m["message_uuid"] for m in first)


def test_timestamps_are_utc_even_from_another_zone() -> None:
    from datetime import timedelta

    local = datetime(2026, 11, 26, 16, 0, tzinfo=timezone(timedelta(hours=1)))
    assert build_message("x", {}, local)["timestamp_utc"] == "2026-11-26T15:00:00+00:00"
