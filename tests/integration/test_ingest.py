"""The commit path (metrics_pipeline.ingest) against a real MongoDB, fed records directly.

Kafka is not needed to check what the ingestor decides for a given sequence of
records; these sequences are the odd ones a broker can hand out, made exact here.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest
from pymongo import MongoClient

from metrics_pipeline.alerts import AlertThresholds
from metrics_pipeline.clock import Clock, datetime_from_ms
from metrics_pipeline.ingest import BatchIngestor
from metrics_pipeline.settings import MongoSettings
from metrics_pipeline.storage import MetricsStore, StorageUnavailable
from metrics_pipeline.windows import RecentWindowMembers, WindowTracker
from tests.support.audit import KPIS, RAW, audit
from tests.support.pipeline import Record, encode, valid_message


def ingestor(mongo_server, name: str, window: int = 5, clock: Clock | None = None) -> tuple[BatchIngestor, object]:
    settings = MongoSettings(mongo_server.uri, f"ingest_{name}", RAW, KPIS, "system_metrics_deadletter_iabd06")
    store = MetricsStore(MongoClient(settings.uri, tz_aware=True), settings)
    return BatchIngestor(store, WindowTracker("t", window), AlertThresholds(), threading.Event(), clock), store


def records(messages: list[dict], start: int = 0) -> list[Record]:
    return [Record("t", 0, start + i, b"k", encode(m)) for i, m in enumerate(messages)]


def _after_each_write(store: MetricsStore, names: tuple[str, ...], then) -> None:
    """Run ``then()`` after each of these writes of the store (the writes themselves
    are the store's own, against the real server)."""
    for name in names:
        def write_then(docs, _write=getattr(store, name)):
            outcome = _write(docs)
            then()
            return outcome
        setattr(store, name, write_then)


def test_a_kpi_write_retried_after_it_was_applied_is_this_writes_own_and_says_its_alerts(mongo_server, caplog) -> None:
    # The KPI insert reaches MongoDB but its answer is lost (a connection cut right
    # then): the retry finds the documents. They are this batch's own, written by the
    # attempt whose answer was lost: logged as new windows, with their alerts, not as
    # "ya guardada antes". A window stored by an earlier batch (a replay) is.
    ing, store = ingestor(mongo_server, "kpi_retry")
    ing.thresholds = AlertThresholds(cpu_percent_avg=0.0)  # every window alerts
    writes = [0]

    def answer_lost() -> None:  # the first write's answer only
        writes[0] += 1
        if writes[0] == 1:
            raise StorageUnavailable("connection closed")

    _after_each_write(store, ("insert_kpis",), answer_lost)
    batch = records([valid_message() for _ in range(5)])
    with caplog.at_level(logging.INFO, logger="metrics_pipeline"):
        assert ing.ingest(batch, received_at=1000.0).windows_written_before == 0
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if line.startswith("Ventana KPI")] == [next(
        line for line in lines if line.startswith("Ventana KPI t:0:0: 5 mensajes en "))]
    assert sum(line.startswith("Alerta en la ventana t:0:0") for line in lines) == 1

    caplog.clear()
    replay, _ = ingestor(mongo_server, "kpi_retry")  # a restart: reads the same records again
    with caplog.at_level(logging.INFO, logger="metrics_pipeline"):
        assert replay.ingest(batch, received_at=2000.0).windows_written_before == 1
    lines = [r.getMessage() for r in caplog.records]
    assert "Ventana KPI t:0:0 ya guardada antes (5 mensajes, los mismos): se conserva la primera, con sus KPI y sus " \
           "alertas" in lines and not any(line.startswith("Alerta") for line in lines)


def test_the_same_records_delivered_twice_are_ignored(mongo_server) -> None:
    ing, store = ingestor(mongo_server, "twice")
    batch = records([valid_message() for _ in range(8)])
    result = ing.ingest(batch + batch[2:6], received_at=1000.0)  # offsets 2-5 again, same bytes
    assert (result.stored_new, result.ignored, result.windows) == (8, 4, 1)
    again = ing.ingest(batch[5:8], received_at=1001.0)  # and again in the next batch
    assert (again.ignored, again.stored_new) == (3, 0)
    assert result.positions == {0: 5}
    assert store.raw.count_documents({}) == 8


def test_a_replay_larger_than_one_lookup_query_finds_every_stored_message(mongo_server) -> None:
    # The owners of duplicate ids are read FIND_IDS_PER_QUERY at a time: a replay of
    # 450 stored messages (two full queries and part of a third) by a process that
    # remembers nothing, plus copies of 3 of them at new offsets.
    messages = [valid_message() for _ in range(450)]
    first, store = ingestor(mongo_server, "lookup", window=50)
    first.ingest(records(messages), received_at=1000.0)
    replay, _ = ingestor(mongo_server, "lookup", window=50)
    result = replay.ingest(records(messages) + records(messages[199:202], start=450), received_at=1001.0)
    assert (result.stored_new, result.replayed, result.duplicates, result.deadlettered) == (0, 450, 3, 0)
    assert result.windows == 9 and result.positions == {0: 453}
    assert store.raw.count_documents({}) == 450 and store.kpis.count_documents({}) == 9


@pytest.mark.parametrize("step", [0, -3600, 3600], ids=["steady", "system-clock-stepped-back", "stepped-forward"])
def test_a_window_lasts_from_receiving_its_first_message_to_the_acknowledged_write_of_its_last(
        mongo_server, step: int) -> None:
    # SPEC §3, on the consumer's clock: the raw write here takes 2.5 s of that clock;
    # meanwhile the system clock may be stepped by an hour (NTP, a VM resumed). The
    # window still lasted 3.5 s; its dates are where the system clock then puts them.
    wall, steady = [1001.0], [1001.0]
    ing, store = ingestor(mongo_server, f"bounds{step}", clock=Clock(lambda: wall[0], lambda: steady[0]))

    def two_and_a_half_seconds_pass() -> None:
        steady[0] += 2.5
        wall[0] += 2.5 + step

    _after_each_write(store, ("insert_raw",), two_and_a_half_seconds_pass)
    assert ing.ingest(records([valid_message() for _ in range(5)]), received_at=1000.0).windows == 1
    [kpi] = store.kpis.find()
    shift = step * 1000
    assert (kpi["window_start"], kpi["window_end"]) == (datetime_from_ms(1_000_000 + shift),
                                                        datetime_from_ms(1_003_500 + shift))
    assert kpi["window_duration_seconds"] == 3.5 and kpi["kpis"]["tasa_procesamiento_msg_seg"] == 5 / 3.5
    assert {doc["ingested_at"] for doc in store.raw.find()} == {datetime_from_ms(1_001_000)}


def test_other_records_at_old_offsets_mean_a_new_log_and_are_not_lost(mongo_server) -> None:
    ing, store = ingestor(mongo_server, "newlog")
    old = records([valid_message() for _ in range(8)])
    new = records([valid_message() for _ in range(7)], start=3)  # offsets 3-9 of a replaced log
    result = ing.ingest(old + new, received_at=1000.0)
    assert result.stored_new == 15 and result.ignored == 0
    assert store.raw.count_documents({}) == 15
    # Old log: window 0-4 written, 5-7 dropped with the old log. New log: window 3-7 written.
    windows = sorted((k["kafka"]["first_offset"], k["kafka"]["last_offset"]) for k in store.kpis.find())
    assert windows == [(0, 4), (3, 7)]
    assert result.positions == {0: 8}
    # Both windows keep their own id: the second one is not mistaken for a rebuild.
    assert store.kpis.count_documents({}) == 2


def test_a_message_back_at_the_same_coordinates_in_a_new_log_is_not_counted_twice(mongo_server) -> None:
    # A broker that lost its data starts the topic's offsets again, and a producer
    # that re-sent a message may put it at the very offset it had in the old log.
    ing, store = ingestor(mongo_server, "samecoords")
    old = [valid_message() for _ in range(7)]
    first = ing.ingest(records(old), received_at=1000.0)
    assert first.windows == 1  # old[0:5], offsets 0-4
    new = [valid_message() for _ in range(3)] + old[3:5] + [valid_message() for _ in range(5)]
    again = ing.ingest(records(new), received_at=1001.0)  # new log: old[3] and old[4] at offsets 3 and 4 again
    assert (again.stored_new, again.in_closed_windows, again.duplicates, again.replayed) == (8, 2, 0, 0)
    windows = list(store.kpis.find())
    counted = [u for k in windows for u in k["message_uuids"]]
    assert len(counted) == len(set(counted)) == 10, "a message in two windows"
    assert {m["message_uuid"] for m in new[:3] + new[5:7]} == set(windows[1]["message_uuids"])


def test_a_dead_letter_is_stored_once_per_message_also_at_the_offset_of_an_old_log_s_one(mongo_server) -> None:
    # The same poison read again at its offset is one dead letter; another poison at
    # that offset of a new log (a broker that lost its data) is another dead letter.
    before, store = ingestor(mongo_server, "deadletters")
    old = [Record("t", 0, 0, b"k", b"{roto"), Record("t", 0, 1, b"k", encode(valid_message()))]
    before.ingest(old, received_at=1000.0)
    again, _ = ingestor(mongo_server, "deadletters")  # a restart reads it again
    assert again.ingest(old, received_at=1001.0).deadlettered == 1
    reborn, _ = ingestor(mongo_server, "deadletters")  # and a new log has other poison there
    reborn.ingest([Record("t", 0, 0, b"k", b"null")], received_at=1002.0)
    letters = sorted(store.deadletter.find(), key=lambda d: d["received_at"])
    assert [d["value"] for d in letters] == ["{roto", "null"]
    assert letters[0]["_id"] == "t:0:0" and letters[1]["_id"].startswith("t:0:0~")


def test_a_window_of_a_new_log_with_a_taken_id_is_logged_under_the_id_it_was_stored_with(mongo_server,
                                                                                       caplog) -> None:
    # The local broker forgets its topics when restarted; the consumer after it starts
    # the offsets again from 0 while MongoDB keeps the KPI document "t:0:0" of before.
    before, store = ingestor(mongo_server, "reborn")
    before.ingest(records([valid_message() for _ in range(5)]), received_at=1000.0)
    after, _ = ingestor(mongo_server, "reborn")
    caplog.clear()  # the line of the first window, if INFO was already on
    with caplog.at_level(logging.INFO, logger="metrics_pipeline.ingest"):
        after.ingest(records([valid_message() for _ in range(5)]), received_at=1001.0)
    ids = sorted(k["_id"] for k in store.kpis.find())
    assert len(ids) == 2 and ids[0] == "t:0:0" and ids[1].startswith("t:0:0~")
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Ventana KPI")]
    assert line.startswith(f"Ventana KPI {ids[1]}: ")


def test_a_window_rebuilt_after_the_window_size_changed_is_rebuilt_as_it_was_stored(mongo_server, caplog) -> None:
    # KPI_WINDOW_SIZE changed (5 -> 4) after a crash that left a window written but
    # not committed: the replay must close that window on the same message as before,
    # or its last message would also start the next window (counted twice).
    before, store = ingestor(mongo_server, "resized", window=5)
    batch = records([valid_message() for _ in range(9)])
    before.ingest(batch[:5], received_at=1000.0)  # window t:0:0 written; then the crash
    after, _ = ingestor(mongo_server, "resized", window=4)
    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.ingest"):
        result = after.ingest(batch, received_at=1001.0)  # read again from offset 0, and 4 more
    assert (result.replayed, result.stored_new, result.windows) == (5, 4, 2)
    assert result.positions == {0: 9}
    windows = sorted(store.kpis.find(), key=lambda k: k["kafka"]["first_offset"])
    assert [(k["_id"], k["message_count"]) for k in windows] == [("t:0:0", 5), ("t:0:5", 4)]
    counted = [u for k in windows for u in k["message_uuids"]]
    assert len(counted) == len(set(counted)) == 9, "a message in two windows"
    [line] = [r.getMessage() for r in caplog.records if "KPI_WINDOW_SIZE" in r.getMessage()]
    assert line.startswith("La ventana t:0:0 ya estaba guardada con 5 mensajes y KPI_WINDOW_SIZE es ahora 4")


def test_a_replay_at_the_same_window_size_needs_no_resizing(mongo_server, caplog) -> None:
    before, store = ingestor(mongo_server, "same_size", window=5)
    batch = records([valid_message() for _ in range(7)])
    before.ingest(batch, received_at=1000.0)
    after, _ = ingestor(mongo_server, "same_size", window=5)
    with caplog.at_level(logging.WARNING):
        result = after.ingest(batch, received_at=1001.0)
    assert (result.replayed, result.windows, result.positions) == (7, 1, {0: 5})
    assert [k["_id"] for k in store.kpis.find()] == ["t:0:0"]
    assert not [r for r in caplog.records if "KPI_WINDOW_SIZE" in r.getMessage()]


def test_a_stored_window_of_another_size_that_is_not_a_replay_is_kept_and_said(mongo_server, caplog) -> None:
    # The raw documents deleted by hand, then the same records read again with another
    # window size: they are new to MongoDB, so nothing tells the replay apart; the
    # KPI document written first is kept and a WARNING says the windows do not fit.
    before, store = ingestor(mongo_server, "resized_by_hand", window=5)
    batch = records([valid_message() for _ in range(5)])
    before.ingest(batch, received_at=1000.0)
    store.raw.delete_many({})
    after, _ = ingestor(mongo_server, "resized_by_hand", window=4)
    with caplog.at_level(logging.WARNING, logger="metrics_pipeline.storage"):
        result = after.ingest(batch, received_at=1001.0)
    assert (result.stored_new, result.replayed) == (5, 0)
    [kpi] = store.kpis.find()
    assert kpi["message_count"] == 5
    [line] = [r.getMessage() for r in caplog.records if "KPI_WINDOW_SIZE" in r.getMessage()]
    assert line.startswith("La ventana t:0:0 ya estaba guardada con 5 mensajes y se ha reconstruido con 4")


def test_a_closed_window_read_again_in_pieces_is_never_committed_through_its_middle(mongo_server) -> None:
    # A window written whose commit failed, then the partition lost and handed back to
    # the same consumer: it reads the window's messages again, here over two batches.
    # Committing the offset between them would let a restart (or the next owner) build
    # another window from there, over messages the first one already counts.
    ing, store = ingestor(mongo_server, "pieces")
    batch = records([valid_message() for _ in range(12)])
    first = ing.ingest(batch[:7], received_at=1000.0)
    assert first.windows == 1 and first.positions == {0: 5}  # window 0-4 written; its commit fails
    ing.tracker.drop([0])  # the partition is lost, and comes back from the committed offset: none
    piece = ing.ingest(batch[:2], received_at=1001.0)
    assert piece.in_closed_windows == 2 and piece.positions == {}, "a commit inside the written window 0-4"
    rest = ing.ingest(batch[2:], received_at=1002.0)
    assert (rest.in_closed_windows, rest.replayed, rest.stored_new) == (3, 2, 5)
    assert rest.positions == {0: 10} and rest.windows == 1
    # A crash before that commit: the next reader starts from the last commit (none:
    # offset 0) and rebuilds the same windows.
    after, _ = ingestor(mongo_server, "pieces")
    again = after.ingest(batch, received_at=1003.0)
    assert (again.replayed, again.windows, again.positions) == (12, 2, {0: 10})
    windows = sorted(store.kpis.find(), key=lambda k: k["kafka"]["first_offset"])
    assert [(k["kafka"]["first_offset"], k["kafka"]["last_offset"]) for k in windows] == [(0, 4), (5, 9)]


def test_closed_windows_are_forgotten_whole_so_a_replay_never_half_rebuilds_one(mongo_server) -> None:
    # The consumer remembers the ids of the windows it closed up to a bound. Here the
    # bound (7) holds one window of 5 but not two: the first is forgotten whole, so
    # reading both again rebuilds the first (as after a crash) and skips the second.
    ing, store = ingestor(mongo_server, "forgotten")
    ing.in_closed_windows = RecentWindowMembers(7)
    batch = records([valid_message() for _ in range(12)])
    assert ing.ingest(batch[:10], received_at=1000.0).windows == 2  # commit fails
    ing.tracker.drop([0])  # lost and handed back: read again from offset 0
    again = ing.ingest(batch, received_at=1001.0)
    assert (again.replayed, again.in_closed_windows, again.stored_new) == (5, 5, 2)
    assert again.positions == {0: 10} and again.windows == 1
    windows = sorted(store.kpis.find(), key=lambda k: k["kafka"]["first_offset"])
    assert [(k["_id"], k["kafka"]["last_offset"]) for k in windows] == [("t:0:0", 4), ("t:0:5", 9)]


class _Died(Exception):
    """The consumer dies here, like a kill -9: nothing after this line runs."""


def _dying_after_writes(store: MetricsStore, rng: random.Random, chance: float) -> None:
    """Let some raw and KPI writes reach MongoDB and then the process die."""
    def maybe_die() -> None:
        if rng.random() < chance:
            raise _Died

    _after_each_write(store, ("insert_raw", "insert_kpis"), maybe_die)


def test_random_crashes_lost_partitions_and_failed_commits_store_once_and_keep_windows_exact(mongo_server) -> None:
    # Two partitions with poison and re-sent messages, read in batches of random
    # sizes by consumers that die after a write, lose a partition and get it back,
    # get records delivered again or fail to commit (in some runs each consumer with
    # its own KPI_WINDOW_SIZE); then one consumer reads to the end. The full audit after.
    rng = random.Random(20261127)
    for run in range(16):
        sizes = rng.choice([[3], [5], [3, 4, 5]])
        logs: dict[int, list[Record]] = {}
        valid_ids: set[str] = set()
        invalid = 0
        for partition in (0, 1):
            sent: list[dict] = []
            log = logs[partition] = []
            for offset in range(rng.randint(20, 60)):
                roll = rng.random()
                if roll < 0.1:
                    value, invalid = b'{"server_id": ', invalid + 1
                elif roll < 0.15 and sent:
                    value = encode(rng.choice(sent))  # the same message again: stored and counted once
                else:
                    sent.append(valid_message(f"srv{partition}"))
                    valid_ids.add(sent[-1]["message_uuid"])
                    value = encode(sent[-1])
                log.append(Record("t", partition, offset, b"k", value))
        committed = {0: 0, 1: 0}
        name = f"random_{run}"

        def life(faults: bool) -> None:
            ing, store = ingestor(mongo_server, name, rng.choice(sizes))
            if faults:
                _dying_after_writes(store, rng, 0.05)
            position = dict(committed)
            try:
                while any(position[p] < len(logs[p]) for p in logs):
                    batch: list[Record] = []
                    for p in logs:
                        if rng.random() < 0.7:
                            batch += logs[p][position[p]:position[p] + rng.randint(1, 4)]
                    if not batch:
                        continue
                    result = ing.ingest(batch, received_at=time.time())
                    for record in batch:
                        position[record.partition] = record.offset + 1
                    if faults and rng.random() < 0.25:
                        return  # died before the commit
                    if not faults or rng.random() < 0.5:
                        committed.update(result.positions)
                        ing.tracker.mark_committed(result.positions)
                    if faults and rng.random() < 0.4:  # a partition lost, and handed back
                        p = rng.choice(list(logs))
                        ing.tracker.drop([p])
                        position[p] = committed[p]
                    elif faults and rng.random() < 0.3:  # Kafka delivers again from the commit
                        p = rng.choice(list(logs))
                        position[p] = committed[p]
            except _Died:
                return
            finally:
                store.close()

        for _ in range(rng.randint(1, 6)):
            life(faults=True)
        life(faults=False)
        with MongoClient(mongo_server.uri) as client:
            audit(client[f"ingest_{name}"], valid=len(valid_ids), invalid=invalid, window_size=set(sizes),
                  valid_ids=valid_ids)
