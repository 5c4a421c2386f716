"""The commit path: one polled batch, from Kafka records to committed offsets.

The delivery guarantees of SPEC §5 are made here and in the consumer loop. For every
batch returned by one ``poll()``, in this order:

1. **Classify.** Each record is parsed and validated (:func:`parse_records`: pure
   CPU work, which the consumer loop does on its own thread while the previous
   batch is still being written). A valid one becomes a raw document (``_id`` =
   message_uuid); an invalid one a dead-letter document (``_id`` =
   ``topic:partition:offset``). A record identical to one this consumer
   already handled at the same offset is a duplicate delivery and is ignored; a
   different record at an offset already handled means the partition's log was
   replaced, and the partition starts afresh from there (see
   :mod:`metrics_pipeline.windows`).
2. **Store raw.** One ``insert_many(ordered=False)``. A duplicate ``_id`` means the
   message is already stored: from this same offset (a replay after a crash: it
   counts in its window again, to rebuild the window exactly) or from another
   offset (the same message sent twice: it is skipped, never counted twice); with
   another content, it is another message reusing a stored message_uuid, which
   cannot be stored under its id: it is dead-lettered, not lost. A
   "replay" of a message that this process has already put in a closed window is
   skipped too, and counted apart: a rebuild of a closed window needs none of its
   members again. That happens when a window was written but its commit failed (a
   partition lost to a rebalance, or left after ``max_poll_interval_ms`` without
   polling while MongoDB was down), and when the same coordinates come back with
   the same message in a new log of the topic (offsets that start again and a
   producer that re-sent it). Until the last offset of that window has been read
   again, nothing of the partition is committed (step 6). A document MongoDB
   refuses is dead-lettered with MongoDB's reason.
3. **Store dead letters.** One ``insert_many(ordered=False)``; a replayed one is a
   no-op. Steps 2 and 3 are retried while MongoDB is unreachable, with the batch
   in memory and nothing committed (see :mod:`metrics_pipeline.retry`).
4. **Close windows.** The stored messages, partition by partition in offset order,
   enter their partition's open window. A window that reaches ``KPI_WINDOW_SIZE``
   closes, with ``window_end`` = the moment step 2 was acknowledged. When the batch
   re-reads stored messages (a replay), one read first asks MongoDB which windows
   starting at those offsets were already written: such a window is rebuilt with
   the size it was written with, so it closes on the same message even if
   ``KPI_WINDOW_SIZE`` changed between the crash and the restart.
5. **Store KPIs.** One ``insert_many(ordered=False)`` of the closed windows. A
   window rebuilt after a crash has the id of the first write, which is kept; its
   line says so, and its alerts, logged with that first write, are not logged again.
   Retried like steps 2-3.
6. **Commit.** Per partition, the first offset of its open window (or the offset
   after its last record when no window is open); nothing while a closed window is
   being read again (step 2), since its middle is not a window boundary. Everything
   before it is stored, and so is the KPI document of every window it closes.
   :meth:`BatchIngestor.ingest` returns these positions; the consumer loop commits
   them on its own thread (kafka-python's consumer is not thread-safe) once steps
   1-5 of the batch have returned, batch after batch in order. A failed commit (a
   rebalance, Kafka down) is logged and left to the next batch or the next owner.

If the process dies between any two steps, the next owner of the partition reads
again from the last commit: step 2 finds the raw documents already stored from the
same offsets and counts them again, so the open window is rebuilt with the same
messages and the same first offset, hence the same id; steps 3 and 5 find their
documents already there. Nothing is lost, nothing is stored twice, and every window
holds exactly ``KPI_WINDOW_SIZE`` messages. An incomplete window is never written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from metrics_pipeline.alerts import AlertThresholds, evaluate_alerts
from metrics_pipeline.clock import Clock, datetime_from_ms, utc_now_ms
from metrics_pipeline.documents import (deadletter_document, kafka_coordinates, kpi_document,
                                        member_from_message, raw_document, same_message, window_id)
from metrics_pipeline.kpis import compute_kpis, window_bounds
from metrics_pipeline.log_setup import counted
from metrics_pipeline.message import InvalidMessage, MetricMessage, parse_message
from metrics_pipeline.retry import retry_while_unavailable
from metrics_pipeline.settings import MAX_WINDOW_SIZE
from metrics_pipeline.storage import MetricsStore
from metrics_pipeline.windows import ClosedWindow, RecentWindowMembers, WindowMember, WindowTracker

log = logging.getLogger(__name__)
T = TypeVar("T")

# How many message ids of closed windows a consumer remembers (step 2): far more
# than can come back after a rebalance or a replaced log; ~9 MB when full.
REMEMBERED_WINDOW_MEMBERS = 65_536


class Record(Protocol):
    """What the ingestor needs of a Kafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchResult:
    consumed: int = 0
    stored_new: int = 0
    replayed: int = 0
    duplicates: int = 0
    in_closed_windows: int = 0  # replays of messages already in a closed window (step 2)
    deadlettered: int = 0
    ignored: int = 0
    windows: int = 0
    windows_written_before: int = 0  # of those, already stored by an earlier write (step 5)
    seconds: float = 0.0  # from receiving the batch to the end of step 5
    write_seconds: float = 0.0  # from the writer taking the batch (step 1) to the end of step 5
    positions: dict[int, int] = field(default_factory=dict)  # step 6: to commit
    committed: bool = False  # set by the consumer loop once the commit succeeded


@dataclass
class _Entry:
    """One record through the steps."""

    record: Record
    fingerprint: int = 0
    restart: bool = False  # the partition's log was replaced: start afresh here
    message: MetricMessage | None = None
    error: str | None = None
    raw_index: int = -1
    member: WindowMember | None = None
    replayed: bool = False  # stored before from this very offset (step 2)
    counted_until: int | None = None  # in a closed window ending at this offset (step 2)


Parsed = MetricMessage | InvalidMessage  # a record's value, parsed: valid, or why not


def parse_records(records: Sequence[Record]) -> list[Parsed]:
    """Parse and validate each record's value (step 1, apart from the bookkeeping:
    pure, so any thread may run it)."""
    parsed: list[Parsed] = []
    for record in records:
        try:
            parsed.append(parse_message(record.value))
        except InvalidMessage as exc:
            parsed.append(exc)
    return parsed


class BatchIngestor:
    """Stores one batch, closes its windows, writes their KPIs (steps 1-5 of the
    module doc) and returns the positions to commit (step 6)."""

    def __init__(self, store: MetricsStore, tracker: WindowTracker, thresholds: AlertThresholds,
                 stop: threading.Event, clock: Clock | None = None) -> None:
        self.store = store
        self.tracker = tracker
        self.thresholds = thresholds
        self.stop = stop
        self.clock = clock or Clock()
        self.mongo_down = threading.Event()  # see metrics_pipeline.retry
        self.in_closed_windows = RecentWindowMembers(REMEMBERED_WINDOW_MEMBERS)  # see step 2

    def ingest(self, records: Sequence[Record], received_at: float,
               parsed: Sequence[Parsed] | None = None) -> BatchResult:
        """Steps 1-5 for records in offset order per partition; the result carries the
        positions of step 6. ``parsed``: :func:`parse_records` of the records, if
        done already. May raise retry.Stopped or storage.StorageFatal (then nothing of
        this batch is committed)."""
        started = self.clock.now()
        if parsed is None:
            parsed = parse_records(records)
        result = BatchResult(consumed=len(records))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Lote recibido: %s", _offset_ranges(records))
        received = datetime_from_ms(int(self.clock.to_utc(received_at)[0] * 1000))
        ingested = utc_now_ms(self.clock)

        # 1. Classify.
        entries: list[_Entry] = []
        raw_docs: list[dict[str, Any]] = []
        batch_next: dict[int, int] = {}               # partition -> offset after its last entry here
        batch_prints: dict[tuple[int, int], int] = {}  # (partition, offset) -> fingerprint, this batch
        restarted: set[int] = set()
        for record, value in zip(records, parsed, strict=True):
            partition, offset = record.partition, record.offset
            fingerprint = hash(record.value)
            state = self.tracker.partition(partition)
            behind = offset < batch_next.get(partition, -1) or (
                partition not in restarted and state.already_done(offset))
            restart = False
            if behind:
                if batch_prints.get((partition, offset), None) == fingerprint or (
                        (partition, offset) not in batch_prints and partition not in restarted
                        and state.seen_before(offset, fingerprint)):
                    result.ignored += 1  # the same record delivered again
                    continue
                restart = True
                restarted.add(partition)
                log.warning("Partición %d: el offset %d ya se había procesado con otro mensaje; el log de la "
                            "partición se ha sustituido (¿tema recreado?) y se empieza de nuevo desde ahí",
                            partition, offset)
            batch_next[partition] = offset + 1
            batch_prints[(partition, offset)] = fingerprint
            entry = _Entry(record, fingerprint, restart)
            if isinstance(value, InvalidMessage):
                entry.error = str(value)
            else:
                entry.message = value
                entry.raw_index = len(raw_docs)
                raw_docs.append(raw_document(entry.message, record.topic, partition, offset, ingested))
            entries.append(entry)

        # 2. Store raw.
        outcomes = []
        if raw_docs:
            outcomes = self._with_retry(lambda: self.store.insert_raw(raw_docs), f"{len(raw_docs)} documentos raw")
        stored_at = self.clock.now()
        for entry in entries:
            if entry.message is None:
                continue
            outcome = outcomes[entry.raw_index]
            record = entry.record
            if outcome.rejected:
                entry.error = outcome.rejected
            elif outcome.existing is None:
                result.stored_new += 1
                entry.member = member_from_message(entry.message, record.offset)
            elif (where := outcome.existing.get("kafka")) != kafka_coordinates(record.topic, record.partition,
                                                                                record.offset):
                where = where if isinstance(where, dict) else {}
                if not same_message(outcome.existing, entry.message):
                    entry.error = _uuid_taken(entry.message.message_id, where)
                    continue
                result.duplicates += 1
                log.warning("Mensaje duplicado en partición %d, offset %d: el message_uuid %s ya está "
                            "guardado (partición %s, offset %s); no se cuenta dos veces",
                            record.partition, record.offset, entry.message.message_id,
                            where.get("partition"), where.get("offset"))
            elif (window_end := self.in_closed_windows.window_end(entry.message.message_id)) is not None:
                result.in_closed_windows += 1  # one line per batch (describe), not one per message
                entry.counted_until = window_end
            else:
                result.replayed += 1
                entry.member = member_from_message(entry.message, record.offset)
                entry.replayed = True

        # 3. Store dead letters.
        dead = [(e.record, e.error) for e in entries if e.error is not None]
        if dead:
            docs = [deadletter_document(record.topic, record.partition, record.offset, record.key, record.value,
                                        error, received) for record, error in dead]
            self._with_retry(lambda: self.store.insert_deadletters(docs), f"{len(docs)} documentos dead-letter")
            for record, error in dead:
                log.warning("Mensaje no válido en partición %d, offset %d enviado a dead-letter: %s",
                            record.partition, record.offset, error)
            result.deadlettered = len(dead)

        # 4. Close windows (a window being rebuilt: at the size it was stored with).
        stored_sizes = self._stored_window_sizes([e for e in entries if e.replayed])
        closed: list[ClosedWindow] = []
        for entry in entries:
            state = self.tracker.partition(entry.record.partition)
            if entry.restart:
                dropped = state.reset()
                if dropped:
                    log.warning("Partición %d: mensajes de la ventana abierta del log anterior descartados: %d",
                                entry.record.partition, dropped)
            if entry.member is None:
                state.skip(entry.record.offset, entry.fingerprint, entry.counted_until)
            else:
                size = None
                if state.open_count == 0 and entry.replayed:
                    size = self._size_as_stored(entry, stored_sizes)
                window = state.add(entry.member, received_at, stored_at, entry.fingerprint, size)
                if window is not None:
                    closed.append(window)
                    self.in_closed_windows.remember(window)

        # 5. Store KPIs.
        if closed:
            kpi_docs = [self._kpi_document(window) for window in closed]
            earlier = self._with_retry(lambda: self.store.insert_kpis(kpi_docs), f"{len(kpi_docs)} ventanas KPI")
            for doc in kpi_docs:
                _log_window(doc, written_before=doc["_id"] in earlier)
            result.windows = len(closed)
            result.windows_written_before = len(earlier)

        # 6. What to commit: the consumer loop commits it (see module doc).
        result.positions = self.tracker.positions_to_commit()
        finished = self.clock.now()
        result.seconds = max(finished - received_at, 1e-6)
        result.write_seconds = max(finished - started, 1e-6)
        return result

    def _with_retry(self, action: Callable[[], T], what: str, doing: str = "guardar") -> T:
        """One MongoDB operation of the batch, retried while MongoDB is unreachable."""
        return retry_while_unavailable(action, what, self.stop, down=self.mongo_down, doing=doing)

    def _stored_window_sizes(self, replayed: list[_Entry]) -> dict[str, tuple[str | None, int]]:
        """Step 4's read: the KPI documents that start at a replayed offset."""
        if not replayed:
            return {}
        ids = [window_id(e.record.topic, e.record.partition, e.record.offset) for e in replayed]
        return self._with_retry(lambda: self.store.stored_windows(ids), "las ventanas KPI ya guardadas", doing="leer")

    def _size_as_stored(self, entry: _Entry, stored: dict[str, tuple[str | None, int]]) -> int | None:
        """The size of the stored window this member opens, if it is the same window
        (same first message): None when there is none, or it has the current size."""
        assert entry.member is not None
        key = window_id(entry.record.topic, entry.record.partition, entry.record.offset)
        first, count = stored.get(key, (None, 0))
        if first != entry.member.message_id or count == self.tracker.size or not 1 <= count <= MAX_WINDOW_SIZE:
            return None
        log.warning("La ventana %s ya estaba guardada con %s y KPI_WINDOW_SIZE es ahora %d: se "
                    "reconstruye con %d, igual que la guardada; las siguientes ventanas ya tendrán %d",
                    key, counted(count, "mensaje"), self.tracker.size, count, self.tracker.size)
        return count

    def _kpi_document(self, window: ClosedWindow) -> dict[str, Any]:
        bounds = window_bounds(*self.clock.to_utc(window.received_at, window.stored_at))
        kpis = compute_kpis(window.members, bounds.duration_seconds)
        alerts = evaluate_alerts(kpis, self.thresholds)
        return kpi_document(window, bounds, kpis, utc_now_ms(self.clock), alerts)


def _uuid_taken(message_id: str, where: dict[str, Any]) -> str:
    """The dead-letter reason of a message whose message_uuid a stored message with
    another content already has (``where``: that one's Kafka coordinates, if any)."""
    stored = (f"(partición {where['partition']}, offset {where['offset']})"
              if "partition" in where and "offset" in where else "(sin coordenadas de Kafka)")
    return (f"el message_uuid {message_id} ya lo usa otro mensaje, con otro contenido, guardado en raw {stored}: "
            "un _id no puede guardar dos mensajes (¿un productor que repite el UUID?)")


def _log_window(doc: dict[str, Any], written_before: bool = False) -> None:
    if written_before:
        # Rebuilt after a crash, or read again by another group: the document written
        # first stays, with its own KPIs (this rebuild's duration and rate differ)
        # and its alerts, said when it was written.
        log.info("Ventana KPI %s ya guardada antes (%s, los mismos): se conserva la primera, con sus KPI y "
                 "sus alertas", doc["_id"], counted(doc["message_count"], "mensaje"))
        return
    k = doc["kpis"]
    log.info("Ventana KPI %s: %s en %.3f s | CPU %.2f %% | memoria %.2f %% | disco %.2f MB/s"
             " | red %.2f Mbps | errores %s | tasa %.1f msg/s",
             doc["_id"], counted(doc["message_count"], "mensaje"),
             doc["window_duration_seconds"], k["cpu_percent_avg"],
             k["memory_percent_avg"], k["disk_io_mbps_avg"], k["network_mbps_avg"], k["error_count_sum"],
             k["tasa_procesamiento_msg_seg"])
    for alert in doc["alerts"]:
        log.warning("Alerta en la ventana %s: %s", doc["_id"], alert["message"])


def _offset_ranges(records: Sequence[Record]) -> str:
    """'p0 0-79, p2 0-40' (runs of consecutive offsets), for DEBUG lines."""
    runs: list[str] = []
    start = previous = None
    partition = None
    for record in records:
        if record.partition == partition and previous is not None and record.offset == previous + 1:
            previous = record.offset
            continue
        if partition is not None:
            runs.append(f"p{partition} {start}-{previous}")
        partition, start, previous = record.partition, record.offset, record.offset
    if partition is not None:
        runs.append(f"p{partition} {start}-{previous}")
    return ", ".join(runs)


def windows_phrase(windows: int, written_before: int) -> str:
    """'ventanas KPI: 3 (1 ya guardada antes)', for the batch and the final lines."""
    before = f" ({counted(written_before, 'ya guardada antes', 'ya guardadas antes')})" if written_before else ""
    return f"ventanas KPI: {windows}{before}"


def describe(result: BatchResult) -> str:
    parts = [counted(result.consumed, "mensaje"), counted(result.stored_new, "nuevo")]
    if result.replayed:
        parts.append(f"{counted(result.replayed, 'ya guardado')} (relectura)")
    if result.duplicates:
        parts.append(counted(result.duplicates, "duplicado"))
    if result.in_closed_windows:
        parts.append(f"{counted(result.in_closed_windows, 'ya contado')} en ventanas KPI cerradas "
                     "(relectura)")
    if result.deadlettered:
        parts.append(f"{result.deadlettered} a dead-letter")
    if result.ignored:
        parts.append(f"{counted(result.ignored, 'repetido')} por Kafka")
    parts.append(windows_phrase(result.windows, result.windows_written_before))
    committed = ", ".join(f"p{p}→{o}" for p, o in sorted(result.positions.items())) or "nada nuevo"
    if result.positions and not result.committed:
        committed = f"ninguno (falló el commit de {committed})"
    # The rate is the writer's, the pipeline's pace while it drains a backlog; the
    # time since the batch came from Kafka also counts the batches written before it.
    rate = result.consumed / max(result.write_seconds, 1e-6)
    return (f"Lote guardado en {result.write_seconds:.3f} s ({rate:.0f} msg/s), "
            f"{result.seconds:.3f} s después de llegar de Kafka: "
            + ", ".join(parts) + f"; offsets confirmados: {committed}")
