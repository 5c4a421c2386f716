"""KPI maths and window bounds (SPEC §3)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from metrics_pipeline.kpis import compute_kpis, mean, window_bounds


@dataclass
class M:
    cpu_percent: float
    memory_percent: float
    disk_io_mbps: float
    network_mbps: float
    error_count: int


def test_averages_sum_and_rate() -> None:
    members = [M(10, 20, 1, 100, 0), M(30, 40, 3, 50, 2), M(20, 60, 2, 0, 1), M(40, 80, 4, 10, 0)]
    kpis = compute_kpis(members, 2.0)
    assert kpis.cpu_percent_avg == 25
    assert kpis.memory_percent_avg == 50
    assert kpis.disk_io_mbps_avg == 2.5
    assert kpis.network_mbps_avg == 40
    assert kpis.error_count_sum == 3 and isinstance(kpis.error_count_sum, int)
    assert kpis.tasa_procesamiento_msg_seg == 2.0


def test_averages_are_exact_whatever_the_order() -> None:
    rng = random.Random(5)
    members = [M(round(rng.uniform(0, 100), 2), 1, 1, 1, 0) for _ in range(20)]
    forward = compute_kpis(members, 1).cpu_percent_avg
    backward = compute_kpis(members[::-1], 1).cpu_percent_avg
    assert forward == backward == math.fsum(m.cpu_percent for m in members) / 20


def test_full_precision_is_kept() -> None:
    kpis = compute_kpis([M(1, 1, 1, 1, 0), M(2, 1, 1, 1, 0), M(2, 1, 1, 1, 0)], 0.003)
    assert kpis.cpu_percent_avg == 5 / 3
    assert kpis.tasa_procesamiento_msg_seg == 3 / 0.003


def test_values_near_the_largest_float_do_not_overflow_the_average() -> None:
    # Valid by SPEC §2 (no upper bound on rates); their exact sum is beyond a float.
    huge = [1.7e308] * 19 + [1.6e308]
    assert mean(huge) == pytest.approx(1.695e308, rel=1e-15) and math.isfinite(mean(huge))
    kpis = compute_kpis([M(50, 50, v, v, 2**63 - 1) for v in huge], 1.0)
    assert kpis.disk_io_mbps_avg == kpis.network_mbps_avg == mean(huge)
    assert kpis.error_count_sum == 20 * (2**63 - 1)  # an exact int; documents.py stores it


def test_empty_window_or_zero_duration_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_kpis([], 1)
    with pytest.raises(ValueError):
        compute_kpis([M(1, 1, 1, 1, 0)], 0)


def test_bounds_round_outwards_to_the_millisecond() -> None:
    bounds = window_bounds(1000.0004, 1000.0125)
    assert bounds.start == datetime(1970, 1, 1, 0, 16, 40, tzinfo=timezone.utc)
    assert bounds.end.microsecond == 13000
    assert bounds.duration_seconds == 0.013
    assert (bounds.end - bounds.start).total_seconds() == bounds.duration_seconds


def test_bounds_are_never_empty() -> None:
    same = window_bounds(1764169445.5, 1764169445.5)
    assert same.duration_seconds == 0.001
    backwards = window_bounds(1764169445.9, 1764169445.1)
    assert backwards.duration_seconds == 0.001 and backwards.end > backwards.start
