"""Alerts: strictly above the threshold, in a fixed order, switchable off."""

from __future__ import annotations

from metrics_pipeline.alerts import AlertThresholds, evaluate_alerts
from metrics_pipeline.kpis import WindowKpis


def kpis(cpu: float = 50, mem: float = 50, errors: int = 0) -> WindowKpis:
    return WindowKpis(cpu, mem, 1.0, 1.0, errors, 10.0)


def test_no_alert_at_or_below_the_threshold() -> None:
    assert evaluate_alerts(kpis(80, 90, 10), AlertThresholds(80, 90, 10)) == []


def test_each_crossing_is_one_alert() -> None:
    alerts = evaluate_alerts(kpis(80.01, 95, 11), AlertThresholds(80, 90, 10))
    assert [a["kpi"] for a in alerts] == ["cpu_percent_avg", "memory_percent_avg", "error_count_sum"]
    assert alerts[0]["value"] == 80.01 and alerts[0]["threshold"] == 80
    assert "CPU media 80.01 supera el umbral 80" == alerts[0]["message"]


def test_a_threshold_set_to_none_is_off() -> None:
    assert evaluate_alerts(kpis(99, 99, 99), AlertThresholds(None, None, None)) == []
    assert [a["kpi"] for a in evaluate_alerts(kpis(99, 99, 99), AlertThresholds(None, 50, None))] == \
        ["memory_percent_avg"]
