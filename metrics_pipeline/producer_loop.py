"""The producer's loop: one message per server and round, each send confirmed.

* A round starts every ``--interval`` seconds, measured from the start of one round
  to the start of the next, so the schedule does not drift; a round that overruns
  starts the next one at once, and a WARNING says so (at most once every
  :data:`OVERRUN_WARNING_SECONDS`): the producer is then slower than asked. A round
  that starts late though the one before was on time (the process or its machine was
  paused: SIGSTOP, a stalled VM) is no overrun: the schedule goes on from that round's
  start, without a burst of rounds to catch up, and a WARNING says how late it was.
* Each message is sent with its server id as key (so one server's messages keep
  their order in one partition) and ``acks=all``; the broker's confirmation is
  logged with its partition and offset.
* kafka-python retries a send for up to :data:`DELIVERY_TIMEOUT_MS`. A send that still
  fails (or that the broker refused outright) is sent again, same message and same
  message_uuid, up to :data:`MAX_ATTEMPTS` times; the consumer stores a message
  once whatever the number of copies. A message that fails every attempt is logged
  at ERROR and counted, never dropped silently, and the script then exits 1.
* If the topic vanishes (a broker restarted without its data, a topic deleted), the
  sends fail for lack of it; the producer then creates it again with
  ``KAFKA_TOPIC_PARTITIONS`` partitions (at most every :data:`TOPIC_CHECK_SECONDS`)
  instead of letting the broker auto-create it with a partition count of its own.
* The idempotent producer is off on purpose: with it, kafka-python treats a broker
  that lost its producer state (a restart of a broker without persistence) as a
  fatal error and refuses every later send; duplicates are handled downstream.
* SIGINT/SIGTERM/SIGHUP (see shutdown): no new round; what was sent is flushed (up to
  :data:`STOP_FLUSH_SECONDS`, also when the signal comes while the last round of
  ``--rounds`` is being flushed), then the producer closes without waiting again
  (see _abandon_unconfirmed). A message Kafka has not confirmed by then (Kafka down at
  the stop) is logged at ERROR and counted as failed, like one that failed every
  attempt: the producer cannot know it arrived.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import kafka.errors as kafka_errors
from kafka import KafkaProducer

from metrics_pipeline.errors import StartupError
from metrics_pipeline.kafka_connection import (client_config, forbid_topic_auto_creation,
                                                 recreate_topic_if_missing)
from metrics_pipeline.log_setup import KafkaStatus, counted, quiet_kafka_client
from metrics_pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
DELIVERY_TIMEOUT_MS = 120_000
# How long send() may wait for room in the buffer or for the topic's metadata. The
# metadata is missing only when the topic is (a broker that lost its data, a topic
# deleted): the send then fails, the topic is created again and the message is
# resent. Kept short so that this is noticed soon, and a stop during the wait still
# ends within the 10 s of SPEC §5 (with 10 s here it took 9.8-10.2 s).
MAX_BLOCK_MS = 2_000
STOP_FLUSH_SECONDS = 6.0
CLOSE_TIMEOUT_SECONDS = 2.0
FLUSH_SLICE_SECONDS = 0.2
TOPIC_CHECK_SECONDS = 5.0
OVERRUN_WARNING_SECONDS = 60.0
# A round that starts this late (and at least one interval late) was held up by a
# pause of the whole process, not by the scheduler's jitter: said in a WARNING.
LATE_WARNING_SECONDS = 1.0
UNCONFIRMED_AT_STOP = kafka_errors.KafkaTimeoutError("Kafka no confirmó el envío antes del cierre")
_TOPIC_MISSING = (kafka_errors.UnknownTopicOrPartitionError, kafka_errors.KafkaTimeoutError)
_NOT_WORTH_RETRYING = (kafka_errors.MessageSizeTooLargeError, kafka_errors.InvalidTopicError,
                       kafka_errors.AuthorizationError, kafka_errors.UnsupportedVersionError)


class MetricsSource(Protocol):
    server_ids: tuple[str, ...]
    # True for a source that measures between rounds (the host's real metrics): its
    # first round comes one interval after start(), so it covers a full interval.
    first_round_waits: bool

    def start(self) -> None: ...

    def next_round(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass
class ProducerStats:
    rounds: int = 0
    sent: int = 0
    failed: int = 0
    resent: int = 0


@dataclass(frozen=True)
class _Pending:
    key: bytes
    value: bytes
    server_id: str
    message_id: str
    attempt: int
    error: BaseException | None = None


def open_producer(settings: KafkaSettings) -> KafkaProducer:
    try:
        producer = KafkaProducer(
            **client_config(settings, "productor_metrics_iabd06"),
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            batch_size=64 * 1024,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            request_timeout_ms=30_000,
            max_block_ms=MAX_BLOCK_MS,
            allow_auto_create_topics=False,
            bootstrap_timeout_ms=int(settings.startup_timeout * 1000),
        )
    except kafka_errors.KafkaError as exc:
        raise StartupError(f"No se pudo conectar a Kafka ({settings.bootstrap_servers}): {exc}") from None
    forbid_topic_auto_creation(getattr(producer, "_metadata", None))
    return producer


class MetricsProducer:
    """Sends rounds of messages until ``rounds`` is reached or ``stop`` is set."""

    def __init__(self, producer: KafkaProducer, settings: KafkaSettings, source: MetricsSource,
                 stop: threading.Event, kafka_status: KafkaStatus, interval: float, rounds: int | None) -> None:
        self.producer = producer
        self.settings = settings
        self.topic = settings.topic
        self.source = source
        self.stop = stop
        self.kafka_status = kafka_status
        self.interval = interval
        self.rounds = rounds
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self._failed: deque[_Pending] = deque()
        self._unconfirmed: dict[int, _Pending] = {}  # id(item) -> item: sent, no answer yet
        self._topic_suspect = False
        self._closing_by_force = False  # see _abandon_unconfirmed
        self._topic_checked_at = -TOPIC_CHECK_SECONDS
        self._overruns = 0  # rounds that took longer than the interval, since the last WARNING
        self._overrun_warned_at: float | None = None

    # -- sending --------------------------------------------------------------------

    def _send(self, item: _Pending) -> None:
        try:
            future = self.producer.send(self.topic, key=item.key, value=item.value)
        except kafka_errors.KafkaError as exc:  # no metadata within max_block_ms, buffer full...
            self._failed.append(_Pending(item.key, item.value, item.server_id, item.message_id,
                                         item.attempt, exc))
            if isinstance(exc, _TOPIC_MISSING):
                self._check_topic()
            return
        with self._lock:
            self._unconfirmed[id(item)] = item
        future.add_callback(self._on_sent, item)
        future.add_errback(self._on_error, item)

    def _on_sent(self, item: _Pending, metadata: Any) -> None:
        with self._lock:
            self.stats.sent += 1
            self._unconfirmed.pop(id(item), None)
        self.kafka_status.mark_up()
        log.info("Enviada métrica de %s a Kafka (partición %d, offset %d)",
                 item.server_id, metadata.partition, metadata.offset)
        log.debug("message_uuid %s confirmado (partición %d, offset %d, intento %d)",
                  item.message_id, metadata.partition, metadata.offset, item.attempt)

    def _on_error(self, item: _Pending, exc: BaseException) -> None:
        # Runs on kafka-python's I/O thread: never send from here, just queue.
        with self._lock:
            self._unconfirmed.pop(id(item), None)
        if self._closing_by_force:  # see _abandon_unconfirmed: say why, not how kafka-python aborted it
            exc = UNCONFIRMED_AT_STOP
        self._failed.append(_Pending(item.key, item.value, item.server_id, item.message_id,
                                     item.attempt, exc))
        if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
            self._topic_suspect = True

    def _check_topic(self) -> None:
        """Create the topic again if it vanished (rate-limited; see module doc)."""
        self._topic_suspect = False
        if time.monotonic() - self._topic_checked_at < TOPIC_CHECK_SECONDS:
            return
        self._topic_checked_at = time.monotonic()
        recreate_topic_if_missing(self.settings, "productor_metrics_iabd06")

    def _retry_failed(self) -> None:
        if self._topic_suspect:
            self._check_topic()
        for _ in range(len(self._failed)):
            item = self._failed.popleft()
            worth_it = not isinstance(item.error, _NOT_WORTH_RETRYING)
            if item.attempt < MAX_ATTEMPTS and worth_it and not self.stop.is_set():
                log.warning("Reenviando la métrica de %s (message_uuid %s, intento %d de %d) tras: %s",
                            item.server_id, item.message_id, item.attempt + 1, MAX_ATTEMPTS, item.error)
                self.stats.resent += 1
                self._send(_Pending(item.key, item.value, item.server_id, item.message_id, item.attempt + 1))
            else:
                self._give_up(item)

    def _abandon_unconfirmed(self) -> None:
        """Stop waiting for Kafka: fail the sends it has not confirmed, now.

        close() would first flush again (CLOSE_TIMEOUT_SECONDS more for a Kafka that did
        not answer in STOP_FLUSH_SECONDS), then give up without closing, and the
        interpreter's exit would wait on it once more: a stop could pass the 10 s of
        SPEC §5, after which docker stop kills the process before it reports what it
        could not send. Closing kafka-python's I/O thread by force fails the pending
        sends at once (their errback runs, and they are counted as failed). kafka-python
        has no public call for this; another version just closes the normal way."""
        self._closing_by_force = True
        force_close = getattr(getattr(self.producer, "_sender", None), "force_close", None)
        if callable(force_close):
            force_close()

    def _give_up(self, item: _Pending) -> None:
        self.stats.failed += 1
        log.error("No se pudo enviar la métrica de %s (message_uuid %s) tras %s: %s",
                  item.server_id, item.message_id, counted(item.attempt, "intento"), item.error)

    def send_round(self) -> None:
        for message in self.source.next_round():
            value = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            self._send(_Pending(message["server_id"].encode("utf-8"), value, message["server_id"],
                                message["message_uuid"], 1))
        self.stats.rounds += 1

    # -- the loop -------------------------------------------------------------------

    def run(self) -> ProducerStats:
        pace = f"cada {self.interval:g} s" if self.interval > 0 else "sin pausa entre rondas"
        log.info("Productor enviando a %s: %s (%s) %s%s", self.topic,
                 counted(len(self.source.server_ids), "servidor", "servidores"),
                 ",".join(self.source.server_ids[:10]), pace,
                 f", {counted(self.rounds, 'ronda')}" if self.rounds else "")
        self.source.start()
        next_start = time.monotonic()
        if self.source.first_round_waits and self.interval > 0:
            log.info("Primera medida dentro de %g s (cada ronda mide el intervalo desde la anterior)", self.interval)
            next_start += self.interval
            self.stop.wait(self.interval)
        while not self.stop.is_set() and (self.rounds is None or self.stats.rounds < self.rounds):
            started = time.monotonic()
            self.send_round()
            self._retry_failed()
            last_round = self.rounds is not None and self.stats.rounds >= self.rounds
            if self.interval > 0 and not last_round:
                next_start = self._next_start(next_start, started)
                self.stop.wait(max(next_start - time.monotonic(), 0.0))
        self._drain()
        log.info("Fin del productor: %s, %s, %s, %s", counted(self.stats.rounds, "ronda"),
                 counted(self.stats.sent, "métrica enviada", "métricas enviadas"),
                 counted(self.stats.resent, "reenvío"), counted(self.stats.failed, "fallida"))
        return self.stats

    def _next_start(self, scheduled: float, started: float) -> float:
        """The start of the next round, from when the round that has just ended was
        ``scheduled`` and when it really ``started`` (see module doc)."""
        now = time.monotonic()
        if scheduled + self.interval >= now:
            return scheduled + self.interval
        if now - started > self.interval:  # the round itself overran: the next one now
            self._warn_overrun(now - started, now)
            return now
        late = started - scheduled
        if late >= max(self.interval, LATE_WARNING_SECONDS):
            log.warning("La ronda empezó %.1f s más tarde de lo previsto (¿el proceso o su máquina estuvieron "
                        "parados?): las rondas siguen cada %g s desde esa, sin recuperar las que faltan",
                        late, self.interval)
        return started + self.interval

    def _warn_overrun(self, took: float, now: float) -> None:
        self._overruns += 1
        if self._overrun_warned_at is not None and now - self._overrun_warned_at < OVERRUN_WARNING_SECONDS:
            return
        since = ""
        if self._overrun_warned_at is not None:
            since = f" ({counted(self._overruns, 'ronda')} así desde el aviso anterior)"
        log.warning("Una ronda de %s tardó %.2f s, más que --interval %g s: la siguiente empieza ya y el "
                    "productor va más despacio de lo pedido%s",
                    counted(len(self.source.server_ids), "métrica"), took, self.interval, since)
        self._overrun_warned_at = now
        self._overruns = 0

    def _drain(self) -> None:
        """Flush, resend what failed, until nothing is pending (or the stop budget ends).

        Without a stop this waits for every answer (kafka-python gives each send up to
        DELIVERY_TIMEOUT_MS). It waits in slices of FLUSH_SLICE_SECONDS, so that a stop
        that comes meanwhile (the last round sent, Kafka not answering) still gets only
        its STOP_FLUSH_SECONDS."""
        deadline: float | None = None
        flushed = False
        while True:
            if deadline is None and self.stop.is_set():
                deadline = time.monotonic() + STOP_FLUSH_SECONDS
            timeout = FLUSH_SLICE_SECONDS
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.0))
            try:
                self.producer.flush(timeout=timeout)
                flushed = True
            except kafka_errors.KafkaTimeoutError:
                flushed = False
            if deadline is not None and time.monotonic() >= deadline:
                break
            if flushed:
                if not self._failed:
                    break
                self._retry_failed()
        quiet_kafka_client()
        if not flushed:
            self._abandon_unconfirmed()
        try:
            self.producer.close(timeout=CLOSE_TIMEOUT_SECONDS)
        except Exception as exc:  # closing must never hide the outcome
            log.warning("Cierre del productor incompleto: %s", exc)
        # Sends aborted by close() report their error now; count them. Those that
        # never got an answer either way are lost to us as well (see module doc).
        while self._failed:
            self._give_up(self._failed.popleft())
        with self._lock:
            unanswered = list(self._unconfirmed.values())
            self._unconfirmed.clear()
        for item in unanswered:
            self._give_up(_Pending(item.key, item.value, item.server_id, item.message_id, item.attempt,
                                   UNCONFIRMED_AT_STOP))
        self.source.close()
