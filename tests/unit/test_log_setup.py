"""Kafka outage logging: one WARNING per outage, reminders, one INFO when back."""

from __future__ import annotations

import logging

import pytest

from metrics_pipeline.log_setup import KafkaLogBridge, KafkaStatus


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(msg: str, level: int = logging.ERROR, name: str = "kafka.net.connection") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_an_outage_is_one_warning_then_reminders_then_one_info(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    status = KafkaStatus(clock=clock)
    status.bootstrap = "localhost:29092"
    bridge = KafkaLogBridge(status, clock=clock)
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        for _ in range(50):
            bridge.emit(record("<KafkaConnection node_id=1>: Connection lost: KafkaConnectionError: 111 ECONNREFUSED"))
            clock.t += 0.1
        clock.t = 31
        bridge.emit(record("No node available for metadata refresh", logging.WARNING, "kafka.cluster"))
        status.mark_up()
        status.mark_up()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0][0] == "WARNING" and "no responde" in lines[0][1] and "ECONNREFUSED" in lines[0][1]
    assert lines[1][0] == "WARNING" and "sigue sin responder" in lines[1][1]
    assert lines[2][0] == "INFO" and "restablecida" in lines[2][1]
    assert len(lines) == 3 and status.outages == 1 and not status.is_down


def test_other_library_warnings_pass_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    bridge = KafkaLogBridge(KafkaStatus(clock=clock), clock=clock)
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        for _ in range(5):
            bridge.emit(record("Failed to produce messages: %s", logging.WARNING, "kafka.producer"))
        clock.t = 61
        bridge.emit(record("Failed to produce messages: %s", logging.WARNING, "kafka.producer"))
    assert [r.getMessage().startswith("kafka-python:") for r in caplog.records] == [True, True]
