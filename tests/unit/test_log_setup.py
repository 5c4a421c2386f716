"""Kafka outage logging: one WARNING per outage, reminders, one INFO when back."""

from __future__ import annotations

import io
import logging
import sys
import threading

import pytest

from metrics_pipeline.log_setup import KafkaLogBridge, KafkaStatus, _buffered_stderr, counted, login_failure
from tests.support.logs import scripts_logging


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(msg: str, level: int = logging.ERROR, name: str = "kafka.net.connection", *args: object
           ) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


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
        clock.t = 40
        status.mark_down("Connection lost")  # a new outage: its own first warning
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0][0] == "WARNING" and "no responde" in lines[0][1] and "ECONNREFUSED" in lines[0][1]
    assert lines[1][0] == "WARNING" and "sigue sin responder" in lines[1][1]
    assert lines[2][0] == "INFO" and "restablecida" in lines[2][1]
    assert lines[3][0] == "WARNING" and "no responde: Connection lost" in lines[3][1]
    assert len(lines) == 4


def test_a_complaint_after_a_long_silence_is_a_new_outage(caplog: pytest.LogCaptureFixture) -> None:
    # An idle consumer may never see the proof that Kafka came back: an hour later,
    # a new outage is «no responde», not «sigue sin responder desde hace 3600 s».
    clock = FakeClock()
    status = KafkaStatus(clock=clock)
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        status.mark_down("socket disconnected")
        clock.t = KafkaStatus.QUIET_SECONDS - 1
        status.mark_down("socket disconnected")  # the same outage: a reminder
        clock.t += KafkaStatus.QUIET_SECONDS
        status.mark_down("Connection failed: KafkaConnectionError: 111 ECONNREFUSED")
    assert [r.getMessage()[:48] for r in caplog.records] == [
        "Kafka (Kafka) no responde: socket disconnected; ",
        "Kafka (Kafka) sigue sin responder desde hace 59 ",
        "Kafka (Kafka) no responde: Connection failed: Ka"]


def test_no_node_available_just_after_kafka_is_back_is_not_a_new_outage(caplog: pytest.LogCaptureFixture) -> None:
    # Seen in a soak: a send acknowledged («restablecida»), then 12 ms later kafka-python's
    # "No node available for metadata refresh" («no responde»), then «restablecida tras 0.0 s».
    clock = FakeClock()
    status = KafkaStatus(clock=clock)
    bridge = KafkaLogBridge(status, clock=clock)
    no_node = record("No node available for metadata refresh - backoff/retry", logging.WARNING, "kafka.cluster")
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        bridge.emit(record("<KafkaConnection node_id=0>: socket disconnected"))
        clock.t = 10
        status.mark_up()
        clock.t += 0.012
        bridge.emit(no_node)  # settling: not a new outage
        clock.t = 10 + KafkaStatus.SETTLING_SECONDS
        bridge.emit(no_node)  # later, the same line alone is one
        status.mark_up()
        bridge.emit(record("Connection failed: KafkaConnectionError: 111 ECONNREFUSED"))  # a real sign: always
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "Kafka (Kafka) no responde: socket discon",
        "Conexión con Kafka (Kafka) restablecida ",
        "Kafka (Kafka) no responde: No node avail",
        "Conexión con Kafka (Kafka) restablecida ",
        "Kafka (Kafka) no responde: Connection fa"]


def test_other_library_warnings_pass_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    bridge = KafkaLogBridge(KafkaStatus(clock=clock), clock=clock)
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        for _ in range(5):
            bridge.emit(record("Unexpected response from node: %s", logging.WARNING, "kafka.client"))
        clock.t = 61
        bridge.emit(record("Unexpected response from node: %s", logging.WARNING, "kafka.client"))
    assert [r.getMessage().startswith("kafka-python:") for r in caplog.records] == [True, True]


def test_kafka_python_reasons_are_kept_for_the_start_up_error() -> None:
    status = KafkaStatus(clock=FakeClock())
    bridge = KafkaLogBridge(status, clock=FakeClock())
    bridge.emit(record("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: 111 ECONNREFUSED "
                       "(backoff 0.05 secs)", logging.WARNING, "kafka.net.manager"))
    bridge.emit(record("Bootstrap failed: KafkaTimeoutError: Unable to bootstrap from ['x:1']"))
    assert status.last_error == "Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: 111 ECONNREFUSED"
    assert status.auth_failure is None
    bridge.emit(record("Bootstrap connection to bootstrap-0 failed: [Error 33] UnsupportedSaslMechanismError "
                       "(backoff 5.58 secs)", logging.WARNING, "kafka.net.manager"))
    assert status.auth_failure == "UnsupportedSaslMechanismError"


@pytest.mark.parametrize("kafka_python_says, kept", [
    ("Bootstrap connection to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
     "SaslAuthenticationFailedError: Authentication failed: Invalid username or password (backoff 0.04 secs)",
     "SaslAuthenticationFailedError: Authentication failed: Invalid username or password"),
    ("<KafkaConnection node_id=bootstrap-0 host=k:9092 <connecting> [IPv4 ('10.0.0.1', 9092)]>: SaslHandshake "
     "failed: UnsupportedSaslMechanismError", "UnsupportedSaslMechanismError"),
    ("[Error 58] SaslAuthenticationFailedError: Authentication failed: x",  # an exception's text
     "SaslAuthenticationFailedError: Authentication failed: x"),
    ("Authentication failed: Invalid username or password", "Authentication failed: Invalid username or password"),
])
def test_a_refused_login_keeps_the_error_and_the_brokers_words(kafka_python_says: str, kept: str) -> None:
    assert login_failure(kafka_python_says) == kept
    status = KafkaStatus(clock=FakeClock())
    KafkaLogBridge(status, clock=FakeClock()).emit(record(kafka_python_says, logging.WARNING, "kafka.net.manager"))
    assert status.auth_failure == kept


def test_credentials_in_the_clear_are_said_once_in_spanish(caplog: pytest.LogCaptureFixture) -> None:
    # kafka-python warns in English on every SASL_PLAINTEXT login (each connection).
    clock = FakeClock()
    bridge = KafkaLogBridge(KafkaStatus(clock=clock), clock=clock)
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        for text in ("Sending username and password in the clear", "Exchanging credentials in the clear during "
                     "Sasl Authentication", "Sending username and password in the clear"):
            bridge.emit(record(text, logging.WARNING, "kafka.net.sasl.plain"))
            clock.t += 120  # past the once-a-minute limit of other kafka-python lines
    assert [r.levelname for r in caplog.records] == ["WARNING", "DEBUG", "DEBUG"]
    assert caplog.records[0].getMessage() == (
        "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: el inicio de sesión y los mensajes viajan sin cifrar (con PLAIN, "
        "también la contraseña); fuera de una red de confianza, use SASL_SSL")


def test_a_broker_certificate_refused_by_tls_is_kept_apart() -> None:
    status = KafkaStatus(clock=FakeClock())
    bridge = KafkaLogBridge(status, clock=FakeClock())
    bridge.emit(record("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: Handshake failed: "
                       "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
                       "certificate (_ssl.c:1006) (backoff 0.05 secs)", logging.WARNING, "kafka.net.manager"))
    assert status.tls_failure == "certificate verify failed: unable to get local issuer certificate"
    assert status.auth_failure is None


def test_leaving_the_group_for_not_polling_is_said_in_spanish(caplog: pytest.LogCaptureFixture) -> None:
    bridge = KafkaLogBridge(KafkaStatus(clock=FakeClock()), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        bridge.emit(record("Consumer poll timeout has expired. This means the time between subsequent calls to "
                           "poll() was longer than the configured max_poll_interval_ms, which typically implies "
                           "that the poll loop is spending too much time processing messages.",
                           logging.WARNING, "kafka.coordinator"))
    [line] = caplog.records
    assert line.levelname == "WARNING" and "KAFKA_MAX_POLL_INTERVAL_MS" in line.getMessage()
    assert "kafka-python" not in line.getMessage()


def test_an_offset_kafka_no_longer_has_is_said_and_other_info_lines_are_not(
        caplog: pytest.LogCaptureFixture) -> None:
    # A consumer stopped for longer than the topic's retention: kafka-python says it at
    # INFO and starts from the earliest offset left; what retention deleted unread is gone.
    bridge = KafkaLogBridge(KafkaStatus(clock=FakeClock()), clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        bridge.emit(record("Resetting offset for partition %s to offset %s.", logging.INFO,
                           "kafka.consumer.fetcher", "TopicPartition(topic='t', partition=2)", 5000))
        bridge.emit(record("Fetch offset %s is out of range for topic-partition %s", logging.INFO,
                           "kafka.consumer.fetcher", 1000, "TopicPartition(topic='t', partition=2)"))
    [line] = caplog.records
    assert line.levelname == "WARNING"
    assert line.getMessage().startswith("Kafka ya no tiene el offset 1000 de la partición 2: la retención del tema")

    # And the scripts' logging lets that INFO line of kafka-python's fetcher reach the bridge.
    with scripts_logging() as output:
        logging.getLogger("kafka.consumer.fetcher").info("Fetch offset %s is out of range for topic-partition %s", 7,
                                                         "TopicPartition(topic='t', partition=0)")
        logging.getLogger("kafka.coordinator").info("Successfully joined group")
    [written] = output.getvalue().splitlines()
    assert "WARNING metrics_pipeline.kafka: Kafka ya no tiene el offset 7 de la partición 0" in written


def test_kafka_pythons_slow_loop_diagnostics_are_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    # Seen while draining a backlog: four English WARNING lines in a second, nothing to do about them.
    bridge = KafkaLogBridge(KafkaStatus(clock=FakeClock()), clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        for address, seconds in (("0x7fd6f65302d0", "0.124"), ("0x7fd6f65ddd50", "0.215")):
            bridge.emit(record(f"Task <kafka.net.selector.Task object at {address}> ran for {seconds}s (>0.100s "
                               "threshold). It is blocking the event loop -- likely a tight sync loop inside a "
                               "coroutine. Other pollers will time out.", logging.WARNING, "kafka.net.selector"))
    assert [r.levelname for r in caplog.records] == ["DEBUG", "DEBUG"]


@pytest.mark.parametrize("kafka_python_says", [
    "Bootstrap bootstrap-0 not ready; waiting 0.05 secs",
    "Failed to produce messages to topic-partition TopicPartition(topic='t', partition=0) with base offset -1: "
    "[Error 3] UnknownTopicOrPartitionError",  # one that is a timeout also says "Kafka no responde" (above)
    "OffsetCommit for group grupo_iabd06_id failed: [Error 25] UnknownMemberIdError: grupo_iabd06_id",
    "No partition metadata for topic system-metrics-topic-iabd06",
    "<KafkaConnection node_id=1 host=127.0.0.1:29092 <connected>>: Error receiving network data closing socket",
])
def test_what_our_own_lines_already_say_is_debug_only(caplog: pytest.LogCaptureFixture, kafka_python_says: str
                                                      ) -> None:
    # Each comes with a line of ours, in Spanish, that says it and what happens next
    # (seen in the fault tests: broker restarts, consumers killed, topics lost).
    bridge = KafkaLogBridge(KafkaStatus(clock=FakeClock()), clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        bridge.emit(record(kafka_python_says, logging.WARNING, "kafka"))
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


@pytest.mark.parametrize("kafka_python_says, spanish", [
    ("Heartbeat: local member_id was not recognized; this consumer needs to re-join",
     "Kafka ya no reconoce a este consumidor en el grupo (su sesión caducó: ¿estuvo parado o sin conexión?): vuelve "
     "a entrar; lo no confirmado se relee sin contar nada dos veces"),
    ("Topic system-metrics-topic-iabd06 not found in cluster metadata",
     "Kafka no tiene el tema system-metrics-topic-iabd06 (¿un broker que se está reiniciando o que perdió sus datos, "
     "o un tema borrado?): se sigue reintentando"),
])
def test_what_only_kafka_python_can_tell_is_said_in_spanish_once_a_minute(
        caplog: pytest.LogCaptureFixture, kafka_python_says: str, spanish: str) -> None:
    clock = FakeClock()
    bridge = KafkaLogBridge(KafkaStatus(clock=clock), clock=clock)
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        for at in (0, 30, 61):
            clock.t = at
            bridge.emit(record(kafka_python_says, logging.WARNING, "kafka.coordinator"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", spanish)] * 2


def test_a_session_that_expired_while_the_process_was_frozen_is_not_said_as_kafka_down(
        caplog: pytest.LogCaptureFixture) -> None:
    # What a consumer frozen past its session (SIGSTOP, a stalled VM) logs on waking,
    # Kafka answering all along (seen in test_fault_rebalance): one Spanish line.
    status = KafkaStatus(clock=FakeClock())
    bridge = KafkaLogBridge(status, clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="metrics_pipeline.kafka"):
        bridge.emit(record("Heartbeat session expired, marking coordinator dead", logging.WARNING,
                           "kafka.coordinator.heartbeat"))
        bridge.emit(record("Marking the coordinator dead (node 1) for group grupo_iabd06_id: Heartbeat session "
                           "expired.", logging.WARNING, "kafka.coordinator"))
        status.mark_up()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "WARNING", "La sesión de este consumidor en el grupo caducó: Kafka no recibió sus latidos en "
        "KAFKA_SESSION_TIMEOUT_MS (¿Kafka no respondía, o este proceso o su máquina estuvieron parados?): vuelve a "
        "entrar en el grupo; lo no confirmado se relee sin contar nada dos veces")]


def test_lines_that_differ_only_in_numbers_are_one_kind_for_the_once_a_minute_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    bridge = KafkaLogBridge(KafkaStatus(clock=FakeClock()), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.kafka"):
        for node in range(5):  # already formatted by kafka-python, so record.msg differs each time
            bridge.emit(record(f"Node {node} at 0x{node:x}ff sent an unexpected response after 1.{node}s",
                               logging.WARNING, "kafka.client"))
    assert len(caplog.records) == 1


class _Console(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("platform, expect_console", [("win32", True), ("linux", False)])
def test_a_windows_console_keeps_pythons_own_stderr(monkeypatch: pytest.MonkeyPatch, platform: str,
                                                     expect_console: bool) -> None:
    console = _Console()
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(sys, "stderr", console)
    if expect_console:
        assert _buffered_stderr() is console
    else:  # a console elsewhere: the buffered UTF-8 stream on descriptor 2 (the real one)
        monkeypatch.setattr(console, "fileno", lambda: 2, raising=False)
        stream = _buffered_stderr()
        assert stream is not console and stream.encoding == "utf-8"


@pytest.mark.parametrize("level, expected", [("DEBUG", logging.WARNING), ("INFO", logging.WARNING),
                                             ("ERROR", logging.ERROR)])
def test_pymongo_and_matplotlib_speak_from_warning_up_or_from_log_level_if_higher(level: str, expected: int) -> None:
    libraries = [logging.getLogger(name) for name in ("pymongo", "matplotlib")]
    with scripts_logging(level):
        assert [library.level for library in libraries] == [expected, expected]


def _disabled_as_in_cpython_3_13_4(self: logging.Logger) -> bool:
    return self.disabled or getattr(_guard, "in_progress", False)


def _is_enabled_for_as_in_cpython_3_13_4(self: logging.Logger, level: int) -> bool:
    return not _disabled_as_in_cpython_3_13_4(self) and _is_enabled_for(self, level)


def _handle_as_in_cpython_3_13_4(self: logging.Logger, record: logging.LogRecord) -> None:
    """``Logger.handle`` of CPython 3.13.4 and 3.13.5 (gh-91555, reverted in 3.13.6): while
    a thread is inside it, every record that thread logs, from any logger, is dropped
    (there and in ``isEnabledFor``)."""
    if _disabled_as_in_cpython_3_13_4(self):
        return
    _guard.in_progress = True
    try:
        if self.filter(record):
            self.callHandlers(record)
    finally:
        _guard.in_progress = False


_guard = threading.local()
_is_enabled_for = logging.Logger.isEnabledFor


class _LogsWhileHandling(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("metrics_pipeline.kafka").warning("dicho desde otro handler")


def test_kafka_lines_survive_pythons_that_drop_records_logged_while_handling_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.Logger, "handle", _handle_as_in_cpython_3_13_4)
    monkeypatch.setattr(logging.Logger, "isEnabledFor", _is_enabled_for_as_in_cpython_3_13_4)
    with scripts_logging() as output:
        # The emulation is faithful: an ordinary line logged inside a handler is lost.
        other = logging.getLogger("tests.other")
        other.addHandler(_LogsWhileHandling())
        other.warning("x")
        other.handlers.clear()
        logging.getLogger("kafka.conn").error("Connection failed: KafkaConnectionError: 111 ECONNREFUSED")
        logging.getLogger("kafka.coordinator").warning("Heartbeat poll timeout has expired, leaving group")
        logging.getLogger("kafka.producer").warning("Topic t not found in cluster metadata")
        logging.getLogger("kafka.client").warning("Unexpected response from node 1")
    text = output.getvalue()
    assert "dicho desde otro handler" not in text
    assert "WARNING metrics_pipeline.kafka: Kafka (Kafka) no responde: Connection failed" in text
    assert "sin leer de Kafka" in text
    assert "WARNING metrics_pipeline.kafka: Kafka no tiene el tema t (" in text
    assert "kafka-python: Unexpected response from node 1" in text


def test_an_event_is_one_line_whatever_its_text_holds() -> None:
    # A MongoDB error quoting a message's server_id ("web\n01 ERROR fingido") used to
    # split the dead-letter WARNING and forge an ERROR line of its own.
    with scripts_logging() as output:
        log = logging.getLogger("metrics_pipeline.ingest")
        log.warning("enviado a dead-letter: %s", 'dup key: { server_id: "web\n2026-11-28 10:00:00,000 ERROR x\r" }')
        try:
            raise ValueError("una traza")
        except ValueError:
            log.critical("Error inesperado:\nsigue", exc_info=True)
    lines = output.getvalue().splitlines()
    assert lines[0].endswith('server_id: "web\\n2026-11-28 10:00:00,000 ERROR x\\r" }')
    assert lines[1].endswith("CRITICAL metrics_pipeline.ingest: Error inesperado:\\nsigue")
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: una traza"


def test_an_exception_in_another_thread_is_one_logged_event_without_secrets() -> None:
    # Python would print it raw on stderr, a password it quotes included.
    with scripts_logging(secrets=["s3cr3t-pw"]) as output:
        def fail() -> None:
            raise RuntimeError("no se pudo con mongodb://ana:s3cr3t-pw@h")

        thread = threading.Thread(target=fail, name="escritor")
        thread.start()
        thread.join()
        quiet = threading.Thread(target=lambda: (_ for _ in ()).throw(SystemExit(0)), name="sale")
        quiet.start()
        quiet.join()
    text = output.getvalue()
    lines = text.splitlines()
    assert lines[0].endswith("CRITICAL metrics_pipeline: Error inesperado en el hilo escritor (es un fallo del "
                             "programa, por favor avise):")
    assert lines[1] == "Traceback (most recent call last):" and lines[-1].startswith("RuntimeError: no se pudo")
    assert "s3cr3t-pw" not in text and "sale" not in text


@pytest.mark.parametrize(("n", "words", "expected"), [
    (0, ("mensaje",), "0 mensajes"), (1, ("mensaje",), "1 mensaje"), (2, ("mensaje",), "2 mensajes"),
    (1, ("servidor", "servidores"), "1 servidor"), (5, ("servidor", "servidores"), "5 servidores"),
    (1, ("mensaje leído", "mensajes leídos"), "1 mensaje leído"),
])
def test_counts_in_log_lines_agree_with_their_number(n: int, words: tuple[str, ...], expected: str) -> None:
    assert counted(n, *words) == expected
