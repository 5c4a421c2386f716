"""The producer loop's retry bookkeeping, with a scripted stand-in for KafkaProducer.

What reaches Kafka is tested against a real broker in tests/integration; here only
the loop's decisions are checked: resend a failed message (same bytes, same
message_uuid) up to MAX_ATTEMPTS, count and log what still fails, create the topic
again when sends fail for lack of it, keep the round schedule.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kafka.errors as kafka_errors
import pytest

from metrics_pipeline import producer_loop
from metrics_pipeline.log_setup import KafkaStatus
from metrics_pipeline.producer_loop import MAX_ATTEMPTS, MetricsProducer
from metrics_pipeline.settings import KafkaSettings

SETTINGS = KafkaSettings("localhost:1", "t", 1)


class Future:
    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable, tuple]] = []
        self.errbacks: list[tuple[Callable, tuple]] = []

    def add_callback(self, fn: Callable, *args: Any) -> None:
        self.callbacks.append((fn, args))

    def add_errback(self, fn: Callable, *args: Any) -> None:
        self.errbacks.append((fn, args))


class ScriptedProducer:
    """Answers each send with the next outcome of a script (default: success)."""

    def __init__(self, outcomes: list[BaseException | None] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.sent: list[tuple[bytes, bytes]] = []
        self.pending: list[tuple[Future, BaseException | None]] = []
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        self.sent.append((key, value))
        future = Future()
        self.pending.append((future, self.outcomes.pop(0) if self.outcomes else None))
        return future

    def flush(self, timeout: float | None = None) -> None:
        pending, self.pending = self.pending, []
        for future, error in pending:
            if error is None:
                metadata = type("M", (), {"partition": 0, "offset": len(self.sent)})()
                for fn, args in future.callbacks:
                    fn(*args, metadata)
            else:
                for fn, args in future.errbacks:
                    fn(*args, error)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class OneServer:
    server_ids = ("web01",)
    first_round_waits = False

    def start(self) -> None:
        pass

    def next_round(self) -> list[dict[str, Any]]:
        return [{"server_id": "web01", "message_uuid": f"uuid-{time.monotonic_ns()}", "metrics": {}}]

    def close(self) -> None:
        pass


def run(producer: ScriptedProducer, rounds: int = 1, interval: float = 0.0) -> MetricsProducer:
    loop = MetricsProducer(producer, SETTINGS, OneServer(), threading.Event(), KafkaStatus(), interval, rounds)  # type: ignore[arg-type]
    loop.run()
    return loop


@pytest.fixture(autouse=True)
def no_topic_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record topic checks instead of contacting a broker."""
    calls: list[str] = []
    monkeypatch.setattr(producer_loop, "recreate_topic_if_missing",
                        lambda settings, client: calls.append(settings.topic))
    return calls


def test_every_send_confirmed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        loop = run(ScriptedProducer(), rounds=3)
    assert (loop.stats.sent, loop.stats.failed, loop.stats.rounds) == (3, 0, 3)
    assert sum("Enviada métrica de web01 a Kafka (partición 0, offset" in r.getMessage() for r in caplog.records) == 3


def test_a_failed_send_is_resent_with_the_same_bytes() -> None:
    producer = ScriptedProducer([kafka_errors.KafkaTimeoutError("expired")])
    loop = run(producer)
    assert (loop.stats.sent, loop.stats.resent, loop.stats.failed) == (1, 1, 0)
    assert producer.sent[0] == producer.sent[1]


def test_a_message_that_fails_every_attempt_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    producer = ScriptedProducer([kafka_errors.KafkaConnectionError("down")] * MAX_ATTEMPTS)
    with caplog.at_level(logging.INFO):
        loop = run(producer)
    assert (loop.stats.sent, loop.stats.failed) == (0, 1)
    assert len(producer.sent) == MAX_ATTEMPTS
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "No se pudo enviar la métrica de web01" in errors[0].getMessage()
    assert json.loads(producer.sent[0][1])["server_id"] == "web01"


def test_errors_not_worth_retrying_fail_at_once() -> None:
    producer = ScriptedProducer([kafka_errors.MessageSizeTooLargeError("too big")])
    loop = run(producer)
    assert (loop.stats.failed, len(producer.sent)) == (1, 1)


def test_a_missing_topic_is_created_again(no_topic_checks: list[str]) -> None:
    loop = run(ScriptedProducer([kafka_errors.UnknownTopicOrPartitionError("t")]))
    assert no_topic_checks == ["t"] and loop.stats.sent == 1


def test_an_outage_does_not_look_like_a_missing_topic(no_topic_checks: list[str]) -> None:
    run(ScriptedProducer([kafka_errors.KafkaTimeoutError("batch expired")]))
    assert no_topic_checks == []


class SilentProducer(ScriptedProducer):
    """A Kafka that never answers: each flush waits out its timeout."""

    def flush(self, timeout: float | None = None) -> None:
        if timeout is None:
            raise AssertionError("a flush without a timeout cannot notice a stop")
        time.sleep(timeout)
        raise kafka_errors.KafkaTimeoutError("Timeout waiting for future")


def test_a_stop_during_the_final_flush_still_ends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # All rounds sent, the producer waits for Kafka's answers, then a stop comes: it
    # gets STOP_FLUSH_SECONDS like any stop, not kafka-python's delivery timeout.
    monkeypatch.setattr(producer_loop, "STOP_FLUSH_SECONDS", 0.3)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        loop = MetricsProducer(SilentProducer(), SETTINGS, OneServer(), stop, KafkaStatus(), 0.0, 2)  # type: ignore[arg-type]
        stats = loop.run()
    finally:
        timer.cancel()
    assert stop.is_set(), "the flush must have lasted until the stop"
    assert (stats.rounds, stats.sent, stats.failed) == (2, 0, 2), "both unanswered sends reported failed"


class FakeTime:
    """A clock that only moves when the loop waits (or when a round 'takes' time)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now


class WaitingStop(threading.Event):
    def __init__(self, clock: FakeTime) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.waits.append(round(timeout or 0.0, 6))
        self.clock.now += timeout or 0.0
        return self.is_set()


def run_timed(monkeypatch: pytest.MonkeyPatch, round_seconds: float, interval: float,
              rounds: int) -> tuple[MetricsProducer, FakeTime]:
    """Run the loop on a FakeTime clock, each round taking ``round_seconds``."""
    clock = FakeTime()
    monkeypatch.setattr(producer_loop.time, "monotonic", clock.monotonic)

    class TimedRound(OneServer):
        def next_round(self) -> list[dict[str, Any]]:
            clock.now += round_seconds
            return super().next_round()

    loop = MetricsProducer(ScriptedProducer(), SETTINGS, TimedRound(), WaitingStop(clock), KafkaStatus(),  # type: ignore[arg-type]
                           interval, rounds)
    loop.run()
    return loop, clock


def test_rounds_start_on_schedule_without_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    loop, clock = run_timed(monkeypatch, round_seconds=0.3, interval=10.0, rounds=4)
    # Start to start: 10 s minus the round's own 0.3 s; no wait after the last round.
    assert clock.waits == [9.7, 9.7, 9.7]
    assert loop.stats.rounds == 4


def test_rounds_slower_than_the_interval_start_at_once_and_say_so_once_a_minute(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.producer_loop"):
        _, clock = run_timed(monkeypatch, round_seconds=25.0, interval=10.0, rounds=6)
    assert clock.waits == [0.0] * 5  # no catching up, no drift: the next round starts at once
    # Rounds end at 125, 150, 175, 200, 225 (the sixth is the last): WARNINGs at 125 and 200.
    assert [r.getMessage() for r in caplog.records] == [
        "Una ronda de 1 métrica tardó 25.00 s, más que --interval 10 s: la siguiente empieza ya y el productor va "
        "más despacio de lo pedido",
        "Una ronda de 1 métrica tardó 25.00 s, más que --interval 10 s: la siguiente empieza ya y el productor va "
        "más despacio de lo pedido (3 rondas así desde el aviso anterior)"]


def test_a_source_that_measures_between_rounds_sends_its_first_round_one_interval_after_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The host's real metrics (--source psutil): the first round must cover a full
    # interval, measured from start(), like every later one.
    clock = FakeTime()
    monkeypatch.setattr(producer_loop.time, "monotonic", clock.monotonic)
    rounds_at: list[float] = []

    class HostLike(OneServer):
        first_round_waits = True

        def start(self) -> None:
            rounds_at.append(-clock.now)  # negative: when start() ran

        def next_round(self) -> list[dict[str, Any]]:
            rounds_at.append(clock.now)
            clock.now += 0.3
            return super().next_round()

    clock.now = 100.0
    MetricsProducer(ScriptedProducer(), SETTINGS, HostLike(), WaitingStop(clock), KafkaStatus(),  # type: ignore[arg-type]
                    10.0, 3).run()
    assert rounds_at == [-100.0, 110.0, 120.0, 130.0]
    assert clock.waits == [10.0, 9.7, 9.7]


def test_an_overrunning_round_starts_the_next_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _, clock = run_timed(monkeypatch, round_seconds=12.0, interval=10.0, rounds=3)
    assert clock.waits == [0.0, 0.0]


def test_a_round_held_up_by_a_paused_process_is_no_overrun_and_starts_no_burst(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The process is frozen (SIGSTOP, a stalled VM) for 35 s during its second wait:
    # the round after it starts 35 s late, took 0.3 s like every other, and the
    # rounds go on every 10 s from it, with no round at once to catch up and no
    # "tardó 0.30 s, más que --interval 10 s".
    clock = FakeTime()
    monkeypatch.setattr(producer_loop.time, "monotonic", clock.monotonic)
    starts: list[float] = []

    class Round(OneServer):
        def next_round(self) -> list[dict[str, Any]]:
            starts.append(round(clock.now - 100.0, 6))
            clock.now += 0.3
            return super().next_round()

    class PausedOnce(WaitingStop):
        def wait(self, timeout: float | None = None) -> bool:
            if len(self.clock.waits) == 1:
                self.clock.now += 35.0
            return super().wait(timeout)

    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.producer_loop"):
        MetricsProducer(ScriptedProducer(), SETTINGS, Round(), PausedOnce(clock), KafkaStatus(),  # type: ignore[arg-type]
                        10.0, 5).run()
    assert starts == [0.0, 10.0, 55.0, 65.0, 75.0]
    assert [r.getMessage() for r in caplog.records] == [
        "La ronda empezó 35.0 s más tarde de lo previsto (¿el proceso o su máquina estuvieron parados?): las rondas "
        "siguen cada 10 s desde esa, sin recuperar las que faltan"]
