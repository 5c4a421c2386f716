"""KPI alerts: thresholds from the settings, checked on every window.

A window *crosses* a threshold when its KPI is strictly greater than it. Each
crossing becomes one entry of the KPI document's ``alerts`` list (empty when
nothing crossed) and one WARNING line in the consumer's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metrics_pipeline.kpis import WindowKpis

_LABELS = {
    "cpu_percent_avg": "CPU media",
    "memory_percent_avg": "memoria media",
    "error_count_sum": "suma de errores",
}


@dataclass(frozen=True)
class AlertThresholds:
    """Upper limits per window; None disables that alert."""

    cpu_percent_avg: float | None = 80.0
    memory_percent_avg: float | None = 90.0
    error_count_sum: float | None = 10.0


def evaluate_alerts(kpis: WindowKpis, thresholds: AlertThresholds) -> list[dict[str, Any]]:
    """The alerts a window raises, in a fixed order (CPU, memory, errors)."""
    alerts: list[dict[str, Any]] = []
    for kpi in ("cpu_percent_avg", "memory_percent_avg", "error_count_sum"):
        threshold = getattr(thresholds, kpi)
        value = getattr(kpis, kpi)
        if threshold is not None and value > threshold:
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            alerts.append({
                "kpi": kpi,
                "value": value,
                "threshold": threshold,
                "message": f"{_LABELS[kpi]} {shown} supera el umbral {threshold:g}",
            })
    return alerts
