"""Retrying MongoDB writes: what a stop request does to a write that waits."""

from __future__ import annotations

import logging
import threading

import pytest

from metrics_pipeline.retry import Stopped, retry_while_unavailable
from metrics_pipeline.storage import StorageUnavailable


class Flaky:
    """Fails ``failures`` times with StorageUnavailable, then returns "ok"."""

    def __init__(self, failures: int, stop: threading.Event | None = None) -> None:
        self.failures, self.calls, self.stop = failures, 0, stop

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            if self.stop is not None:
                self.stop.set()  # a signal arrives while this attempt waits for MongoDB
            raise StorageUnavailable("connection refused")
        return "ok"


def test_retries_until_mongodb_answers_then_marks_it_up() -> None:
    down = threading.Event()
    action = Flaky(2)
    assert retry_while_unavailable(action, "x", threading.Event(), initial=0.01, down=down) == "ok"
    assert action.calls == 3 and not down.is_set()


def test_a_stop_during_a_failed_attempt_does_not_wait_for_another() -> None:
    stop, down = threading.Event(), threading.Event()
    action = Flaky(5, stop)
    with pytest.raises(Stopped):
        retry_while_unavailable(action, "x", stop, initial=30, down=down)
    assert action.calls == 1 and down.is_set()


def test_while_mongodb_is_down_a_stop_skips_the_next_writes() -> None:
    stop, down = threading.Event(), threading.Event()
    down.set()
    stop.set()
    action = Flaky(0)
    with pytest.raises(Stopped):
        retry_while_unavailable(action, "x", stop, down=down)
    assert action.calls == 0
    # MongoDB up (as far as we know): a stop still lets the batch in hand be written.
    down.clear()
    assert retry_while_unavailable(action, "x", stop, down=down) == "ok"


def test_each_attempt_and_the_recovery_say_what_was_waiting(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.retry"):
        retry_while_unavailable(Flaky(1), "20 documentos raw", threading.Event(), initial=0.01)
        retry_while_unavailable(Flaky(1), "las ventanas KPI ya guardadas", threading.Event(), initial=0.01,
                                doing="leer")
    lines = [(r.levelname, r.getMessage().split(":")[0].split(",")[0]) for r in caplog.records]
    assert lines == [("WARNING", "MongoDB no disponible al guardar 20 documentos raw"),
                     ("INFO", "MongoDB responde de nuevo al guardar 20 documentos raw"),
                     ("WARNING", "MongoDB no disponible al leer las ventanas KPI ya guardadas"),
                     ("INFO", "MongoDB responde de nuevo al leer las ventanas KPI ya guardadas")]
    assert caplog.records[1].getMessage().startswith(
        "MongoDB responde de nuevo al guardar 20 documentos raw, tras 1 reintento (")


class _RecordedPauses:
    """A stop Event that is never set and records how long each retry would wait."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def is_set(self) -> bool:
        return False

    def wait(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return False


def test_the_pause_doubles_up_to_its_cap() -> None:
    stop = _RecordedPauses()
    assert retry_while_unavailable(Flaky(7), "lote", stop, initial=0.5, cap=10.0) == "ok"  # type: ignore[arg-type]
    assert stop.pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
