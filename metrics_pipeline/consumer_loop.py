"""The consumer's Kafka loop: group membership, polling, rebalances, stopping.

What to do with a batch lives in :mod:`metrics_pipeline.ingest` (store, close
windows, write KPIs, then commit, in that order). This module decides *when* there
is a batch and *whose* partitions it belongs to, and overlaps the two halves of the
work:

* the main thread polls Kafka, parses and validates each batch (pure CPU work) and
  hands it to one writer thread, which runs steps 1-5 of the commit path (MongoDB);
  while MongoDB works on a batch, the main thread already fetches and parses the
  next one. Batches are written one at a time, in order, and at most
  :data:`MAX_IN_FLIGHT` are handed to the writer (one more may be parsed, waiting);
* the main thread commits each batch's positions (step 6) once its steps 1-5 have
  returned, in order: kafka-python's consumer is used from this thread only. It then
  logs the batch (ingest.describe) with how many messages are left to read (_unread);
* before anything changes ownership (a rebalance, a topic created again, a stop),
  the main thread waits for the writer to finish what it has (and commits it);
* it joins the group ``KAFKA_GROUP_ID`` with manual commits; a new group starts at
  the earliest offset, so nothing sent before the first consumer started is lost;
* rebalance callbacks (kafka-python runs them on its I/O thread, while our thread
  waits inside ``poll()``) only queue events; they are applied right after ``poll()``
  returns, once the writer is idle, before the new records: partitions that leave
  this consumer drop their open windows, which their next owner rebuilds from the
  committed offset (a partition revoked and handed straight back keeps its window,
  see _apply_rebalance_events);
* if the topic is created again under a running consumer (a broker that lost its
  data, a topic deleted by hand), its offsets start again from 0: open windows are
  dropped and the new topic is read from its beginning (a consumer left without
  partitions until a rebalance hands some out joins the group again, see _restart_topic);
* a group join that kafka-python leaves half done when the topic's metadata changes
  and changes back (its version of the Java client's KAFKA-9815) is resumed, see
  _resume_a_dropped_join;
* it stops on SIGINT/SIGTERM/SIGHUP (see shutdown), after ``--max-messages`` messages, or after
  ``--idle-timeout`` seconds without messages counted from its last assignment,
  always at a batch boundary, with what is complete committed. An assignment
  without every partition of the topic (none included) waits at least
  :data:`PARTIAL_ASSIGNMENT_SESSIONS` session timeouts: the partitions of a member
  that crashed stay assigned to it until its session expires, and only the
  rebalance after that hands them to us (a live member's share costs only the wait);
* it leaves the group (LeaveGroup) only from a stable membership. Closing in the
  middle of a rebalance skips it and lets the session expire, as after a crash:
  leaving while our own JoinGroup is pending can make a broker elect the departed
  member as leader and wait for it forever (seen with Tansu).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from metrics_pipeline.clock import Clock
from metrics_pipeline.errors import RunFailure, StartupError
from metrics_pipeline.ingest import BatchIngestor, BatchResult, describe, parse_records, windows_phrase
from metrics_pipeline.kafka_connection import (client_config, error_reason, forbid_topic_auto_creation,
                                               refused_login)
from metrics_pipeline.log_setup import KafkaStatus, counted, quiet_kafka_client
from metrics_pipeline.retry import Stopped
from metrics_pipeline.settings import ConsumerSettings, SettingsError
from metrics_pipeline.storage import MetricsStore
from metrics_pipeline.windows import WindowTracker

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
POLL_BUSY_MS = 50  # while the writer has work, come back soon to commit what it finished
KAFKA_DOWN_PAUSE_SECONDS = 0.5  # before polling again after poll() raised that Kafka is down
MAX_IN_FLIGHT = 2  # batches handed to the writer and not yet committed
JOIN_WARNING_SECONDS = 30.0  # a group join slower than this gets a WARNING (and reminders)
PARTIAL_ASSIGNMENT_SESSIONS = 2  # see the module doc (--idle-timeout)
# How soon a topic that appears (or is created again) is noticed; kafka-python's
# default is five minutes.
METADATA_MAX_AGE_MS = 10_000
# A commit takes milliseconds; one that has not answered in COMMIT_TIMEOUT_MS is
# left to the next batch. Once a commit fails during a stop, the rest are skipped
# and closing waits at most CLOSE_TIMEOUT_MS: a stop while Kafka hangs still ends
# within the 10 s of SPEC §5 (what is not committed is read again after a restart).
COMMIT_TIMEOUT_MS = 5_000
CLOSE_TIMEOUT_MS = 3_000
# Errors poll() raises that no retry cures: records this installation cannot decode,
# or a topic or group our credentials may not read. One line and exit 1.
UNREADABLE = (kafka_errors.UnsupportedCodecError, kafka_errors.CorruptRecordError,
              kafka_errors.AuthorizationError, kafka_errors.SaslAuthenticationFailedError)
# A group join the broker refuses for good (kafka-python raises these from poll()):
# a session timeout outside the broker's bounds, or a group that another program
# already uses with incompatible assignment strategies, or one that is full.
JOIN_REFUSED = (kafka_errors.InvalidSessionTimeoutError, kafka_errors.InconsistentGroupProtocolError,
                kafka_errors.GroupMaxSizeReachedError, kafka_errors.InvalidGroupIdError)


class _RebalanceEvents(ConsumerRebalanceListener):
    """Queues rebalance callbacks for the main thread (see module doc)."""

    def __init__(self) -> None:
        self.events: deque[tuple[str, set[TopicPartition]]] = deque()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.events.append(("revoked", set(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(("assigned", set(assigned)))

    def on_partitions_lost(self, lost: Any) -> None:
        self.events.append(("lost", set(lost)))


@dataclass
class ConsumerSummary:
    consumed: int = 0
    stored_new: int = 0
    replayed: int = 0
    duplicates: int = 0
    in_closed_windows: int = 0
    deadlettered: int = 0
    windows: int = 0
    windows_written_before: int = 0
    reason: str = ""


class MetricsConsumer:
    """Runs the loop until a stop condition; see the module doc."""

    def __init__(self, settings: ConsumerSettings, store: MetricsStore, stop: threading.Event,
                 kafka_status: KafkaStatus, clock: Clock | None = None) -> None:
        self.settings = settings
        self.topic = settings.kafka.topic
        self.store = store
        self.stop = stop
        self.kafka_status = kafka_status
        self.clock = clock or Clock()
        self.tracker = WindowTracker(self.topic, settings.window_size)
        self.ingestor = BatchIngestor(store, self.tracker, settings.alerts, stop, self.clock)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="escritor-mongodb")
        self._in_flight: deque[Future[BatchResult]] = deque()
        self._submitted = 0
        self._listener = _RebalanceEvents()
        self._pending_revoked: set[int] = set()
        self._joining_since: float | None = time.monotonic()
        self._join_warned_at = 0.0
        self._consumer: KafkaConsumer | None = None
        self._assigned_at: float | None = None  # the last assignment (see _should_stop)
        self._assigned_whole_topic = False
        self._last_message_at: float | None = None
        self._topic_id: Any = None
        self._rejoin_pending = False  # see _restart_topic
        self._dropped_join_seen = False  # see _resume_a_dropped_join
        self._commit_failed_while_stopping = False
        self.summary = ConsumerSummary()

    # -- Kafka plumbing -----------------------------------------------------------

    def _connect(self) -> KafkaConsumer:
        session_ms = self.settings.session_timeout_ms
        try:
            consumer = KafkaConsumer(
                **client_config(self.settings.kafka, "consumidor_metrics_iabd06"),
                group_id=self.settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # A message of a transaction its producer aborted was never sent: skip
                # it. Without transactional producers this changes nothing.
                isolation_level="read_committed",
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(min(3000, session_ms // 3), 100),
                max_poll_records=self.settings.batch_size,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
                allow_auto_create_topics=False,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                bootstrap_timeout_ms=int(self.settings.kafka.startup_timeout * 1000),
            )
        except kafka_errors.KafkaError as exc:
            raise StartupError(f"No se pudo conectar a Kafka ({self.settings.kafka.bootstrap_servers}): "
                               f"{exc}") from None
        forbid_topic_auto_creation(getattr(consumer, "_cluster", None))
        consumer.subscribe([self.topic], listener=self._listener)
        return consumer

    def _commit(self, positions: dict[int, int]) -> bool:
        assert self._consumer is not None
        if self._commit_failed_while_stopping:
            return False  # see COMMIT_TIMEOUT_MS
        offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in positions.items()}
        sent_at = time.monotonic()
        try:
            self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except kafka_errors.KafkaError as exc:
            reason: object = exc
            if isinstance(exc, kafka_errors.KafkaTimeoutError):  # its text is "None"
                # No answer at all: Kafka hangs or cannot be reached, said as such
                # (and, with the next commit that succeeds, that it answers again).
                reason = f"sin respuesta en {COMMIT_TIMEOUT_MS / 1000:g} s"
                self.kafka_status.mark_down(f"un commit de offsets lleva {COMMIT_TIMEOUT_MS / 1000:g} s sin respuesta",
                                            waited=time.monotonic() - sent_at)
            log.warning("No se pudieron confirmar los offsets %s en Kafka: %s. Se releerán desde la última "
                        "confirmación sin duplicar nada", positions, reason)
            self._commit_failed_while_stopping = self.stop.is_set()
            return False
        self.kafka_status.mark_up()
        return True

    def _apply_rebalance_events(self) -> None:
        """Revoked partitions drop their open windows, except those handed back to us
        in the same rebalance: kafka-python keeps their fetch position, so the open
        window continues exactly where it was (dropping it would skip its messages).
        Lost partitions (our membership expired) always drop theirs: kafka-python
        resets their position to the committed offset."""
        while self._listener.events:
            kind, partitions = self._listener.events.popleft()
            numbers = sorted(tp.partition for tp in partitions if tp.topic == self.topic)
            if kind in ("revoked", "lost") and self._joining_since is None:
                self._joining_since = time.monotonic()  # a join follows: see _warn_if_join_is_slow
            if kind == "revoked":
                self._pending_revoked.update(numbers)
                continue
            if kind == "lost":
                self._drop(numbers, "perdidas")
                self._pending_revoked.difference_update(numbers)
                continue
            # assigned: the group coordinator answered our join, even when it hands us
            # nothing (an idle consumer gets no records to prove that Kafka answers)
            self._joining_since = None
            self._kafka_answered()
            if numbers:
                self._rejoin_pending = False  # see _restart_topic
            gone = sorted(self._pending_revoked.difference(numbers))
            self._pending_revoked.clear()
            self._drop(gone, "revocadas")
            log.info("Particiones asignadas del tema %s: %s", self.topic, numbers or "ninguna")
            self._assigned_at = time.monotonic()
            self._assigned_whole_topic = self._is_whole_topic(numbers)

    def _is_whole_topic(self, numbers: list[int]) -> bool:
        """Whether an assignment holds every partition of the topic (see _should_stop).
        When the partition count is unknown, any non-empty assignment counts as whole."""
        if not numbers:
            return False
        known = self._cached_metadata("partitions_for_topic")
        return not known or len(numbers) >= len(known)

    def _kafka_answered(self) -> None:
        """Records or a completed join: Kafka is back, if it was down and a broker
        connection is open. Alone they do not prove that Kafka answers now: poll()
        may hand over what came just before the connection dropped (seen in soaks
        with the broker killed: «restablecida tras 0.1 s» between two «no
        responde»). Only looked into while Kafka is down: nothing on the hot path."""
        if self.kafka_status.down and self._fetch_connection_open():
            self.kafka_status.mark_up()

    def _fetch_connection_open(self) -> bool:
        """Whether kafka-python holds an open connection to one of the brokers
        (True when this kafka-python does not tell)."""
        client = getattr(self._consumer, "_client", None)
        connected = getattr(client, "connected", None)
        brokers = getattr(getattr(client, "cluster", None), "brokers", None)
        if connected is None or brokers is None:
            return True
        # kafka-python 3.0 names it node_id (2.x: nodeId)
        return any(connected(getattr(broker, "node_id", getattr(broker, "nodeId", None))) for broker in brokers())

    def _cached_metadata(self, method: str) -> Any:
        """``method`` of kafka-python's cached cluster metadata, for our topic.

        The consumer exposes neither the topic id (KIP-516) nor a partition count
        that never asks Kafka (the public partitions_for_topic() may block on a
        metadata request), so read the cache defensively: None when there is no
        consumer yet or this kafka-python has no such cache or method."""
        read = getattr(getattr(self._consumer, "_cluster", None), method, None)
        return read(self.topic) if read is not None else None

    def _warn_if_join_is_slow(self) -> None:
        if self._joining_since is None:
            return
        now = time.monotonic()
        waited = now - self._joining_since
        if waited >= JOIN_WARNING_SECONDS and now - self._join_warned_at >= JOIN_WARNING_SECONDS:
            self._join_warned_at = now
            log.warning("El consumidor lleva %.0f s sin particiones: el reparto del grupo %s no termina "
                        "(¿Kafka no responde, o un miembro del grupo no contesta?)", waited, self.settings.group_id)

    def _drop(self, partitions: list[int], how: str) -> None:
        if not partitions:
            return
        dropped = self.tracker.drop(partitions)
        log.info("Particiones %s del tema %s: %s; mensajes de ventanas abiertas descartados: %d (su nuevo "
                 "dueño los relee desde el último offset confirmado)", how, self.topic, partitions, dropped)

    def _topic_id_changed(self) -> bool:
        """True once when the topic's id changes under us (see module doc)."""
        topic_id = self._cached_metadata("topic_id")
        if topic_id is None:
            return False
        if self._topic_id is None:
            self._topic_id = topic_id
            return False
        if topic_id == self._topic_id:
            return False
        self._topic_id = topic_id
        return True

    def _restart_topic(self) -> None:
        """Read a topic created again from its beginning (writer idle).

        From here until a rebalance hands this consumer partitions, being left
        without any (now, or by the rebalance that the new topic's metadata starts)
        makes it join the group again as a new member: a broker may answer a lone
        member's rejoins with the assignment it computed while the topic was missing,
        none (Tansu 0.6 does, and the consumer then waits forever). A new member gets
        a real one, from the group's committed offsets, which went with the old topic
        (the earliest). At most once per re-creation: a consumer that legitimately has
        no partition (more members than partitions) costs one extra rebalance."""
        assert self._consumer is not None
        dropped = self.tracker.drop_all()
        assignment = list(self._consumer.assignment())
        if assignment:
            self._consumer.seek_to_beginning(*assignment)
        self._rejoin_pending = True
        log.warning("El tema %s se ha vuelto a crear (un broker que perdió sus datos o un tema borrado): "
                    "sus offsets empiezan de nuevo. Mensajes de ventanas abiertas descartados: %d; se lee "
                    "desde el principio", self.topic, dropped)

    def _rejoin_as_new_member(self) -> None:
        """See _restart_topic. Only outside a rebalance; during one, try again after
        the next poll.

        The old member id is dropped without a LeaveGroup: the next JoinGroup asks for
        a new one, and the broker forgets the old member when its session expires
        (with Apache Kafka, a rebalance at most one session timeout longer). A
        LeaveGroup here came while the other members' joins were pending, often from
        all of them at once (they all saw the same empty assignment), and Tansu then
        never completed that rebalance (README, "Un grupo que el consumidor mismo
        dejaba atascado")."""
        assert self._consumer is not None
        coordinator: Any = getattr(self._consumer, "_coordinator", None)
        try:
            rebalancing = coordinator.rebalance_in_progress()
        except Exception:  # another kafka-python: rejoin anyway
            rebalancing = False
        if rebalancing or self._consumer.assignment():
            return  # partitions, for now: the rebalance the new topic starts may take them
        self._rejoin_pending = False
        log.info("Sin particiones del tema %s vuelto a crear: el consumidor vuelve a entrar en el grupo %s",
                 self.topic, self.settings.group_id)
        reset_generation = getattr(coordinator, "reset_generation", None)
        if callable(reset_generation):
            reset_generation()  # a new member id on the next poll's JoinGroup, no LeaveGroup
        else:  # another kafka-python: leave and subscribe again
            self._consumer.unsubscribe()
            self._consumer.subscribe([self.topic], listener=self._listener)
        self._joining_since = time.monotonic()

    def _resume_a_dropped_join(self) -> None:
        """Make kafka-python finish a group join it dropped (its KAFKA-9815).

        A metadata change (the topic missing for a moment: a broker that lost its
        data, a topic created again) makes kafka-python 3.0 revoke our partitions and
        send a JoinGroup. If the metadata changes back before that join completes, its
        join loop, which runs only while need_rejoin() is true, stops: the member stays
        "rebalancing" forever, with no partitions and no heartbeats (seen in 6 runs in
        10 of the lost-data test). The Java client fixed it by asking for a rejoin when
        the metadata change starts one; ask for it now, which resumes the join. Seen
        twice in a row (a poll apart), so a join that is just completing is left alone.
        """
        coordinator: Any = getattr(self._consumer, "_coordinator", None)
        try:
            with coordinator._lock:
                dropped = coordinator.rebalance_in_progress() and not coordinator.need_rejoin()
        except Exception:  # another kafka-python: nothing to do
            return
        if not dropped:
            self._dropped_join_seen = False
        elif not self._dropped_join_seen:
            self._dropped_join_seen = True
        else:
            self._dropped_join_seen = False
            log.info("kafka-python abandonó a medias la entrada en el grupo %s (los metadatos del tema "
                     "cambiaron y volvieron a cambiar): se le pide que la retome", self.settings.group_id)
            coordinator.request_rejoin()

    # -- the writer ---------------------------------------------------------------

    def _submit(self, records: list[Any], received_at: float) -> None:
        parsed = parse_records(records)  # while the writer still waits for MongoDB
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            self._finish_batches(wait=True, at_most=1)
        self._in_flight.append(self._writer.submit(self.ingestor.ingest, records, received_at, parsed))

    def _finish_batches(self, wait: bool, at_most: int | None = None) -> None:
        """Commit the batches the writer finished, oldest first (step 6).

        Raises what the writer raised (retry.Stopped, storage.StorageFatal) after
        cancelling the batches queued behind it: none of them is committed.
        """
        finished = 0
        while self._in_flight and (wait or self._in_flight[0].done()):
            if at_most is not None and finished >= at_most:
                return
            future = self._in_flight.popleft()
            try:
                result = future.result()
            except BaseException:
                for queued in self._in_flight:
                    queued.cancel()
                self._in_flight.clear()
                raise
            finished += 1
            if result.positions and self._commit(result.positions):
                self.tracker.mark_committed(result.positions)
                result.committed = True
            self.summary.consumed += result.consumed
            self.summary.stored_new += result.stored_new
            self.summary.replayed += result.replayed
            self.summary.duplicates += result.duplicates
            self.summary.in_closed_windows += result.in_closed_windows
            self.summary.deadlettered += result.deadlettered
            self.summary.windows += result.windows
            self.summary.windows_written_before += result.windows_written_before
            unread = self._unread()
            log.info("%s%s", describe(result), "" if unread is None else f"; por leer en Kafka: {unread}")

    def _unread(self) -> int | None:
        """Messages on the broker that this consumer has not read yet, over its
        partitions: each one's high watermark minus its position (the next offset
        poll() returns). kafka-python keeps both from the fetch responses, so this
        costs no round trip; the position is read from its subscription state, since
        ``KafkaConsumer.position()`` may ask the broker. None while the high watermark
        of a partition is unknown (kafka-python learns it when poll() first returns
        that partition's records) or if kafka-python keeps them elsewhere. This is the
        lag of the reads; the group's LAG (kafka-consumer-groups) counts from the
        committed offsets, up to one window per partition further back."""
        states = getattr(getattr(self._consumer, "_subscription", None), "assignment", None)
        if not isinstance(states, dict) or not states:
            return None
        total = 0
        for state in list(states.values()):  # a copy: kafka-python's I/O thread may change it
            position = getattr(getattr(state, "position", None), "offset", None)
            highwater = getattr(state, "highwater", None)
            if not isinstance(highwater, int) or not isinstance(position, int):
                return None
            total += max(0, highwater - position)
        return total

    def _drain(self) -> None:
        self._finish_batches(wait=True)

    # -- the loop -----------------------------------------------------------------

    def _should_stop(self) -> str | None:
        if self.stop.is_set():
            return "señal de parada"
        limit = self.settings.max_messages
        if limit is not None and self._submitted >= limit:
            return f"--max-messages {limit} alcanzado"
        idle = self.settings.idle_timeout
        if idle is not None and self._assigned_at is not None:
            now = time.monotonic()
            idle_enough = now - max(self._assigned_at, self._last_message_at or 0.0) >= idle
            # Partitions held by others may belong to a member that died (module doc).
            sessions = PARTIAL_ASSIGNMENT_SESSIONS * self.settings.session_timeout_ms / 1000
            if idle_enough and (self._assigned_whole_topic or now - self._assigned_at >= sessions):
                return f"{idle:g} s sin mensajes nuevos (--idle-timeout)"
        return None

    def run(self) -> ConsumerSummary:
        self._consumer = self._connect()
        log.info("Consumidor en el grupo %s, leyendo %s (ventanas de %s por partición)",
                 self.settings.group_id, self.topic, counted(self.settings.window_size, "mensaje"))
        try:
            self._loop()
        finally:
            self._close()
        return self.summary

    def _loop(self) -> None:
        assert self._consumer is not None
        try:
            while (reason := self._should_stop()) is None:
                self._finish_batches(wait=False)
                limit = self.settings.batch_size
                if self.settings.max_messages is not None:
                    limit = min(limit, self.settings.max_messages - self._submitted)
                timeout = POLL_BUSY_MS if self._in_flight else POLL_TIMEOUT_MS
                try:
                    batch = self._consumer.poll(timeout_ms=timeout, max_records=limit)
                except UNREADABLE as exc:  # retrying cannot cure these
                    raise RunFailure(_unreadable(self.settings, exc)) from None
                except JOIN_REFUSED as exc:
                    raise _join_refused(self.settings, exc) from None
                except kafka_errors.KafkaError as exc:
                    if not exc.retriable:
                        raise
                    # kafka-python raises some errors of its background work out of
                    # poll(): e.g. the heartbeat's coordinator lookup while the broker
                    # refuses connections (seen with a broker killed and restarted).
                    # Kafka is down: wait it out (SPEC §5), poll again.
                    self.kafka_status.mark_down(error_reason(exc))
                    self.stop.wait(KAFKA_DOWN_PAUSE_SECONDS)
                    continue
                received_at = self.clock.now()
                if self._listener.events:
                    self._drain()
                    self._apply_rebalance_events()
                self._warn_if_join_is_slow()
                self._resume_a_dropped_join()
                if self._topic_id_changed():
                    self._drain()
                    self._restart_topic()
                    continue
                if self._rejoin_pending:
                    self._rejoin_as_new_member()
                if not batch:
                    continue
                owned = self._consumer.assignment()
                records = [r for tp in sorted(batch, key=lambda t: t.partition) if tp in owned
                           for r in batch[tp]]
                if not records:
                    continue
                self._kafka_answered()
                self._last_message_at = time.monotonic()
                self._submitted += len(records)
                self._submit(records, received_at)
            self._drain()
        except Stopped:
            log.warning("Parada pedida con un lote sin guardar: no se confirma; se releerá al reiniciar")
            reason = "señal de parada"
        self.summary.reason = reason

    def _close(self) -> None:
        for queued in self._in_flight:
            queued.cancel()
        # A batch still waiting for MongoDB must give up now (nothing of it is
        # committed); without this, an error on this thread would leave close()
        # waiting for a MongoDB that may never come back.
        self.stop.set()
        self._writer.shutdown(wait=True, cancel_futures=True)
        open_messages = self.tracker.open_messages()
        done = self.summary
        log.info("Fin del consumidor (%s): %s, %s, %s, %s, %s en ventanas cerradas, %d a dead-letter, "
                 "%s. Mensajes en ventanas incompletas, que no se confirman y se releerán al "
                 "reiniciar: %d", done.reason or "error", counted(done.consumed, "mensaje leído", "mensajes leídos"),
                 counted(done.stored_new, "guardado nuevo", "guardados nuevos"),
                 counted(done.replayed, "ya guardado"), counted(done.duplicates, "duplicado"),
                 counted(done.in_closed_windows, "ya contado"), done.deadlettered,
                 windows_phrase(done.windows, done.windows_written_before), open_messages)
        if self._consumer is not None:
            quiet_kafka_client()
            _skip_leave_group_unless_stable(self._consumer)
            try:
                self._consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
            except Exception as exc:  # closing must never hide the real outcome
                log.warning("Cierre de la conexión con Kafka incompleto: %s", exc)


def _unreadable(settings: ConsumerSettings, exc: Exception) -> str:
    """The one line for an error of UNREADABLE: a permission or a login refused is
    said as at start-up (kafka_connection.refused_login)."""
    topic = settings.kafka.topic
    if isinstance(exc, (kafka_errors.AuthorizationError, kafka_errors.SaslAuthenticationFailedError)):
        return refused_login(settings.kafka, exc)
    if isinstance(exc, kafka_errors.UnsupportedCodecError):
        return (f"El tema {topic} tiene mensajes comprimidos con un códec que esta instalación no sabe leer "
                f"({exc}): instale requirements.txt (lz4, zstandard, python-snappy)")
    return f"No se puede leer el tema {topic} y reintentar no lo arregla: {exc}"


def _join_refused(settings: ConsumerSettings, exc: Exception) -> Exception:
    """The one line for an error of JOIN_REFUSED: a settings error (exit 2) when it is
    our session timeout, a run failure (exit 1) when the group is another program's."""
    group = settings.group_id
    if isinstance(exc, kafka_errors.InvalidSessionTimeoutError):
        return SettingsError("KAFKA_SESSION_TIMEOUT_MS (--session-timeout-ms)",
                             f"Kafka no admite {settings.session_timeout_ms} ms: el broker solo acepta valores entre "
                             "group.min.session.timeout.ms y group.max.session.timeout.ms (en Apache Kafka, "
                             "6000 y 1800000 por defecto)")
    if isinstance(exc, kafka_errors.InconsistentGroupProtocolError):
        return RunFailure(f"Kafka no deja entrar al consumidor en el grupo {group}: otro programa ya lo usa con "
                          "otra forma de repartir las particiones. Elija otro KAFKA_GROUP_ID (--group-id)")
    if isinstance(exc, kafka_errors.GroupMaxSizeReachedError):
        return RunFailure(f"El grupo {group} ya tiene todos los miembros que admite Kafka (group.max.size): "
                          "pare otro consumidor del grupo o elija otro KAFKA_GROUP_ID (--group-id)")
    return RunFailure(f"Kafka no acepta el grupo {group} (KAFKA_GROUP_ID, --group-id): {exc}")


def _skip_leave_group_unless_stable(consumer: KafkaConsumer) -> None:
    """Make close() skip LeaveGroup when the membership is not stable (module doc).

    kafka-python has no public switch for this; reach its coordinator defensively
    and, if its shape is not the expected one, close the normal way.
    """
    coordinator: Any = getattr(consumer, "_coordinator", None)
    try:
        stable = not coordinator.rebalance_in_progress() and not coordinator.need_rejoin()
    except Exception:  # another kafka-python: keep its normal close
        return
    if not stable:
        log.info("Cierre durante un reparto del grupo: no se envía LeaveGroup; el grupo dará por "
                 "caído a este consumidor cuando caduque su sesión")
        coordinator.maybe_leave_group = lambda *args, **kwargs: None
