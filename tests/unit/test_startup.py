"""The start-up wait shared by the Kafka and MongoDB sides (no server needed: the
attempts are plain functions; tests/integration/test_fault_startup.py drives the
same wait against real servers that are missing, refuse a login, or appear late)."""

import logging
import threading
import time

import pytest

from metrics_pipeline import startup
from metrics_pipeline.errors import StartupError, StartupStopped
from metrics_pipeline.startup import NotReady, wait_for_server


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    monkeypatch.setattr(startup, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(startup, "MAX_DELAY", 0.04)


def test_returns_what_the_first_successful_attempt_returns_after_one_warning_per_failure(caplog):
    answers = iter([NotReady("conexión rechazada"), NotReady("tiempo agotado"), 7])
    seen_budgets = []

    def attempt(seconds_left):
        seen_budgets.append(seconds_left)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.startup"):
        assert wait_for_server("Kafka (h:1)", attempt, threading.Event(), 30, "nada") == 7
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "Kafka (h:1) no responde: conexión rechazada", "Kafka (h:1) no responde: tiempo agotado"]
    assert len(seen_budgets) == 3 and 29 < seen_budgets[0] <= 30
    assert seen_budgets[0] > seen_budgets[1] > seen_budgets[2]  # each attempt gets what is left


def test_gives_up_after_the_timeout_naming_the_server_and_the_last_reason():
    calls = []

    def attempt(_seconds_left):
        calls.append(1)
        raise NotReady(f"intento {len(calls)}")

    started = time.monotonic()
    with pytest.raises(StartupError) as caught:
        wait_for_server("MongoDB (mongodb://db:27017/)", attempt, threading.Event(), 0.3, "nada")
    assert 0.3 <= time.monotonic() - started < 2
    assert str(caught.value) == f"No se pudo conectar a MongoDB (mongodb://db:27017/) en 0.3 s: intento {len(calls)}"
    assert len(calls) >= 3


def test_an_error_that_is_not_notready_ends_the_wait_at_once():
    calls = []

    def attempt(_seconds_left):
        calls.append(1)
        raise StartupError("Kafka (h:1) rechazó la autenticación: SASL")

    with pytest.raises(StartupError, match="rechazó la autenticación"):
        wait_for_server("Kafka (h:1)", attempt, threading.Event(), 30, "nada")
    assert len(calls) == 1


def test_a_refusal_known_while_an_attempt_blocks_ends_the_wait_at_once():
    # kafka-python logs a refused login and keeps retrying until the attempt's own
    # timeout: give_up sees the refusal (from the log line) and ends the wait then.
    refused: list[StartupError] = []
    release = threading.Event()

    def attempt(_seconds_left):
        threading.Timer(0.2, refused.append, [StartupError("Kafka (h:1) rechazó la autenticación: SASL")]).start()
        release.wait(30)  # like kafka-python's bootstrap, retrying the refused login
        return "tarde"

    started = time.monotonic()
    with pytest.raises(StartupError, match="rechazó la autenticación"):
        wait_for_server("Kafka (h:1)", attempt, threading.Event(), 60, "nada",
                        give_up=lambda: refused[0] if refused else None)
    release.set()
    assert time.monotonic() - started < 1.5


def test_a_stop_during_a_blocking_attempt_ends_the_wait_at_once():
    stop = threading.Event()
    release = threading.Event()

    def attempt(_seconds_left):
        release.wait(30)  # like a Kafka bootstrap that hangs
        return "tarde"

    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(StartupStopped) as caught:
        wait_for_server("Kafka (h:1)", attempt, stop, 60, "no se ha enviado ni leído nada")
    release.set()
    assert time.monotonic() - started < 1.5
    assert str(caught.value) == "Parada pedida mientras se esperaba a Kafka (h:1): no se ha enviado ni leído nada"


def test_a_stop_during_the_pause_between_attempts_ends_the_wait_without_another_attempt(monkeypatch):
    monkeypatch.setattr(startup, "INITIAL_DELAY", 30)
    stop = threading.Event()
    calls = []

    def attempt(_seconds_left):
        calls.append(1)
        threading.Timer(0.1, stop.set).start()
        raise NotReady("conexión rechazada")

    started = time.monotonic()
    with pytest.raises(StartupStopped):
        wait_for_server("Kafka (h:1)", attempt, stop, 60, "nada")
    assert time.monotonic() - started < 1.5
    assert len(calls) == 1


def test_an_attempt_that_never_comes_back_ends_the_wait_after_the_timeout(monkeypatch, caplog):
    # Like kafka-python's TLS handshake against a broker without TLS: no answer, no
    # error, no end. One WARNING while it hangs, then exit 1 like any timeout.
    monkeypatch.setattr(startup, "SLOW_ATTEMPT", 0.2)
    monkeypatch.setattr(startup, "HANG_GRACE", 0.3)
    release = threading.Event()
    calls = []

    def attempt(_seconds_left):
        calls.append(1)
        release.wait(30)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.startup"), pytest.raises(StartupError) as caught:
        wait_for_server("Kafka (h:1)", attempt, threading.Event(), 0.5, "nada", "no contesta")
    release.set()
    assert 0.8 <= time.monotonic() - started < 2  # the timeout plus the grace
    assert str(caught.value) == "No se pudo conectar a Kafka (h:1) en 0.5 s: no contesta"
    assert len(calls) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "Kafka (h:1) no responde: el intento de conexión lleva 0.2 s sin respuesta; se espera como mucho "
        "hasta --startup-timeout (0.5 s)"]
