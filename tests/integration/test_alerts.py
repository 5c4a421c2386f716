"""Alerts fire exactly for the windows that cross a threshold, and nowhere else."""

from __future__ import annotations

import re

from tests.support.audit import KPIS, audit
from tests.support.pipeline import CONSUMER, Pipeline, encode, valid_message


def _window(cpu: float, memory: float, errors: list[int]) -> list[dict]:
    return [valid_message("web01", metrics={"cpu_percent": cpu, "memory_percent": memory, "disk_io_mbps": 1.0,
                                            "network_mbps": 2.0, "error_count": e}) for e in errors]


def test_alerts_mark_exactly_the_windows_that_cross_a_threshold(pipeline: Pipeline) -> None:
    pipeline.window_size = 5
    pipeline.create_topic()
    windows = [
        _window(50.0, 50.0, [0, 0, 0, 0, 0]),      # nothing
        _window(80.0, 90.0, [2, 2, 2, 2, 2]),      # exactly at every threshold: not above
        _window(85.0, 40.0, [3, 3, 3, 1, 1]),      # CPU 85 > 80 and errors 11 > 10
        _window(10.0, 95.5, [0, 0, 0, 0, 0]),      # memory 95.5 > 90
        _window(99.0, 99.0, [9, 9, 9, 9, 9]),      # all three
    ]
    messages = [m for w in windows for m in w]
    pipeline.send_raw([(b"web01", encode(m)) for m in messages])

    done = pipeline.run(CONSUMER, "--idle-timeout", "3",
                        env=pipeline.env(ALERT_CPU_AVG="80", ALERT_MEMORY_AVG="90", ALERT_ERROR_SUM="10"))
    assert done.returncode == 0, done.stderr
    audit(pipeline.db, valid=25, window_size=5)

    kinds = {doc["kafka"]["first_offset"]: [a["kpi"] for a in doc["alerts"]]
             for doc in pipeline.db[KPIS].find()}
    assert kinds == {
        0: [],
        5: [],
        10: ["cpu_percent_avg", "error_count_sum"],
        15: ["memory_percent_avg"],
        20: ["cpu_percent_avg", "memory_percent_avg", "error_count_sum"],
    }
    third = pipeline.db[KPIS].find_one({"kafka.first_offset": 10})
    assert third["alerts"][0] == {"kpi": "cpu_percent_avg", "value": 85.0, "threshold": 80.0,
                                  "message": "CPU media 85.00 supera el umbral 80"}
    warnings = re.findall(r"WARNING \S+: Alerta en la ventana \S+:0:(\d+): (.+)", done.stderr)
    assert warnings == [("10", "CPU media 85.00 supera el umbral 80"),
                        ("10", "suma de errores 11 supera el umbral 10"),
                        ("15", "memoria media 95.50 supera el umbral 90"),
                        ("20", "CPU media 99.00 supera el umbral 80"),
                        ("20", "memoria media 99.00 supera el umbral 90"),
                        ("20", "suma de errores 45 supera el umbral 10")]


def test_thresholds_can_be_switched_off(pipeline: Pipeline) -> None:
    pipeline.window_size = 5
    pipeline.create_topic()
    pipeline.send_raw([(b"web01", encode(m)) for m in _window(99.0, 99.0, [9, 9, 9, 9, 9])])
    done = pipeline.run(CONSUMER, "--idle-timeout", "3", "--alert-cpu-avg", "off",
                        env=pipeline.env(ALERT_MEMORY_AVG="off", ALERT_ERROR_SUM="50"))
    assert done.returncode == 0, done.stderr
    assert pipeline.db[KPIS].find_one()["alerts"] == []
    assert "Alerta" not in done.stderr
