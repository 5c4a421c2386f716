"""Scenario 2: MongoDB killed (kill -9) for more than 10 s while the producer keeps sending; also
an outage longer than KAFKA_MAX_POLL_INTERVAL_MS, a MongoDB that hangs, and writes whose write
concern fails or that MongoDB refuses for good."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest
from pymongo import MongoClient

from metrics_pipeline.settings import MongoSettings
from metrics_pipeline.storage import CLOSE_SECONDS, SERVER_SELECTION_MS, MetricsStore, open_client
from tests.support.audit import RAW, audit
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, encode, producer_summary, valid_message
from tests.support.waiting import committed_offsets, wait_until

pytestmark = pytest.mark.slow


def test_consumer_survives_a_mongodb_outage_commits_nothing_meanwhile_and_loses_nothing(
        kafka_server, own_mongo, tmp_path, request) -> None:
    mongo = own_mongo()
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name)
    rounds = 150  # 750 messages over ~30 s
    producer = p.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.2")
    consumer = p.start(CONSUMER)
    consumer.wait_for("Ventana KPI", timeout=60, count=2)

    mongo.kill()  # kill -9: no shutdown, no goodbye
    outage_started = time.monotonic()
    consumer.wait_for("MongoDB no disponible al guardar", timeout=30)
    committed_at_start = committed_offsets(p.bootstrap, p.group, p.topic, 1)
    time.sleep(max(0.0, 11 - (time.monotonic() - outage_started)))
    assert consumer.process.poll() is None, "the consumer died during the outage"
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == committed_at_start, \
        "the consumer committed while MongoDB was down"

    mongo.start()  # same port, same data directory
    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    assert sent == rounds * 5
    wait_until(lambda: p.db[RAW].count_documents({}) == sent, 60, "the consumer to catch up")
    consumer.wait_for("MongoDB responde de nuevo", timeout=30)
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0

    log = consumer.text()
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if "MongoDB no disponible al guardar" in line]
    assert warnings and all(" WARNING " in line for line in warnings)
    assert all(re.search(r"guardar .+: \S+", line) for line in warnings), "each WARNING gives the reason"
    report = audit(p.db, valid=sent)
    assert report.windows == sent // 20
    # What was complete is committed: the position is the first offset of the open window.
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == {0: report.windows * 20}


def test_closing_the_store_does_not_wait_for_a_mongodb_that_is_gone(own_mongo) -> None:
    # pymongo's close() ends the client's sessions on the server and, with the server
    # gone, waits its whole server selection timeout (5 s) for it: half of the 10 s a
    # stop may take. The store closes within CLOSE_SECONDS instead.
    mongo = own_mongo()
    settings = MongoSettings(mongo.uri, "closing", RAW, "kpis", "deadletter")
    store = MetricsStore(open_client(settings, "test"), settings)
    store.raw.insert_many([{"n": n} for n in range(3)])  # sessions the server knows of
    mongo.kill()
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < SERVER_SELECTION_MS / 1000 - CLOSE_SECONDS


def test_a_stop_during_a_mongodb_outage_exits_0_within_10_s_and_loses_nothing(
        kafka_server, own_mongo, tmp_path, request) -> None:
    mongo = own_mongo()
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name)
    rounds = 100  # 500 messages over ~10 s
    producer = p.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.1")
    consumer = p.start(CONSUMER, "--batch-size", "10")  # many small batches: some queue behind the writer
    consumer.wait_for("Ventana KPI", timeout=60)

    mongo.kill()
    consumer.wait_for("MongoDB no disponible al guardar", timeout=30)
    committed_at_stop = committed_offsets(p.bootstrap, p.group, p.topic, 1)
    time.sleep(1)
    stopped_at = time.monotonic()
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0
    took = time.monotonic() - stopped_at
    assert took < 10, f"the stop took {took:.1f} s: it must not wait for MongoDB batch after batch"
    log = consumer.text()
    assert "Traceback" not in log and "Parada pedida con un lote sin guardar" in log
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == committed_at_stop

    mongo.start()
    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    p.consume()
    report = audit(p.db, valid=sent)
    assert report.windows == sent // 20


def test_an_outage_longer_than_max_poll_interval_costs_the_membership_and_nothing_else(
        kafka_server, own_mongo, tmp_path, request) -> None:
    # While the writer waits for MongoDB the main thread stops polling; after
    # KAFKA_MAX_POLL_INTERVAL_MS kafka-python leaves the group (5 min by default, 8 s
    # here). When MongoDB is back, the commits of that membership fail, the consumer
    # rejoins and reads again from the last commit: the windows it had written are
    # not counted twice, nothing is lost.
    mongo = own_mongo()
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name,
                          extra_env={"KAFKA_MAX_POLL_INTERVAL_MS": "8000"})
    rounds = 200  # 1,000 messages over ~40 s
    producer = p.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.2")
    consumer = p.start(CONSUMER, "--batch-size", "50")
    consumer.wait_for("Ventana KPI", timeout=60, count=2)

    mongo.kill()
    consumer.wait_for("más de KAFKA_MAX_POLL_INTERVAL_MS sin leer de Kafka", timeout=60)  # left the group
    time.sleep(3)
    assert consumer.process.poll() is None, "the consumer died during the outage"
    mongo.start()

    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    wait_until(lambda: p.db[RAW].count_documents({}) == sent, 90, "the consumer to catch up")
    report = audit(p.db, valid=sent)
    assert report.windows == sent // 20
    wait_until(lambda: committed_offsets(p.bootstrap, p.group, p.topic, 1) == {0: sent}, 60,
               "the last window to be committed")
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0
    log = consumer.text()
    assert "Traceback" not in log and "Mensaje duplicado" not in log
    assert log.count("Particiones asignadas") >= 2, "the consumer should have rejoined the group"


def _backlog_behind_failing_inserts(kafka_server, own_mongo, tmp_path, request, mode: Any,
                                    failure: dict[str, Any], count: int = 40) -> tuple[Pipeline, list[dict]]:
    """A topic holding ``count`` valid messages, and a MongoDB of its own whose
    ``failCommand`` fail point adds ``failure`` to the consumer's inserts (``mode``:
    {"times": n} or "alwaysOn"). Returns the pipeline and the messages sent."""
    mongo = own_mongo(test_commands=True)
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name)
    p.create_topic()
    messages = [valid_message(f"web{i % 5:02d}") for i in range(count)]
    p.send_raw([(m["server_id"].encode(), encode(m)) for m in messages])
    with MongoClient(mongo.uri) as admin:
        admin.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": {
            "failCommands": ["insert"], "appName": "consumidor_metrics_iabd06", **failure}})
    return p, messages


def test_a_write_concern_error_is_not_taken_as_stored(kafka_server, own_mongo, tmp_path, request) -> None:
    # On a replica set (Atlas), a write the primary applied but could not replicate in
    # time comes back with a writeConcernError: it may still be rolled back, so it is
    # retried and nothing is committed until a retry is acknowledged. SecantusDB's
    # failCommand fail point adds that error to the consumer's first two inserts.
    p, messages = _backlog_behind_failing_inserts(kafka_server, own_mongo, tmp_path, request, {"times": 2}, {
        "writeConcernError": {"code": 64, "codeName": "WriteConcernFailed",
                              "errmsg": "waiting for replication timed out", "errInfo": {"wtimeout": True}}})
    done = p.consume()
    retried = [line for line in done.stderr.splitlines() if "write concern no cumplido" in line]
    assert len(retried) == 2 and all(" WARNING " in line and "No se confirma nada" in line for line in retried)
    assert "responde de nuevo al guardar 40 documentos raw, tras 2 reintentos" in done.stderr and "Traceback" not in done.stderr
    audit(p.db, valid=40, valid_ids={m["message_uuid"] for m in messages})
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == {0: 40}


@pytest.mark.parametrize("code, name", [(10107, "NotWritablePrimary"), (11602, "InterruptedDueToReplStateChange"),
                                        (189, "PrimarySteppedDown")])
def test_a_primary_election_is_waited_out_like_an_outage(kafka_server, own_mongo, tmp_path, request, code: int,
                                                         name: str) -> None:
    # Atlas elects a new primary at each maintenance (and on a failure): for some
    # seconds writes get "not primary" errors. pymongo retries a write once; after
    # that the consumer must wait for the new primary as for any outage (WARNING,
    # retry, nothing committed meanwhile), not dead-letter the batch nor give up.
    p, messages = _backlog_behind_failing_inserts(kafka_server, own_mongo, tmp_path, request, {"times": 4},
                                                  {"errorCode": code, "errorLabels": ["RetryableWriteError"]})
    done = p.consume()
    retried = [line for line in done.stderr.splitlines() if "MongoDB no disponible al guardar" in line]
    assert retried and all(" WARNING " in line and "No se confirma nada" in line for line in retried), done.stderr
    assert name in retried[0] and "Traceback" not in done.stderr and " ERROR " not in done.stderr
    audit(p.db, valid=40, valid_ids={m["message_uuid"] for m in messages})
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == {0: 40}


@pytest.mark.parametrize("failure, says", [
    ({"writeConcernError": {"code": 100, "codeName": "UnsatisfiableWriteConcern",
                            "errmsg": "Not enough data-bearing nodes"}}, "no puede cumplir el write concern"),
    ({"errorCode": 13}, "MongoDB rechazó"),  # Unauthorized: a user with a read-only role
], ids=["unsatisfiable write concern", "not allowed to write"])
def test_a_write_retrying_cannot_cure_is_one_error_line_and_exit_1(
        kafka_server, own_mongo, tmp_path, request, failure, says) -> None:
    p, _ = _backlog_behind_failing_inserts(kafka_server, own_mongo, tmp_path, request, "alwaysOn", failure,
                                           count=20)
    done = p.run(CONSUMER, "--idle-timeout", "3")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and says in errors[0], done.stderr[-2000:]
    assert committed_offsets(p.bootstrap, p.group, p.topic, 1) == {0: None}  # nothing committed


def test_a_stop_while_mongodb_hangs_exits_0_within_10_s_and_loses_nothing(
        kafka_server, own_mongo, tmp_path, request) -> None:
    # SIGSTOP freezes the server with its connections open: a write in flight gets no
    # answer and no error, like a network that drops packets. The consumer must not
    # wait for its 60 s socket timeout to stop.
    mongo = own_mongo()
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name)
    producer = p.start(PRODUCER, "--rounds", "100", "--interval", "0.1")
    consumer = p.start(CONSUMER, "--batch-size", "10")
    consumer.wait_for("Ventana KPI", timeout=60)
    with mongo.frozen():
        time.sleep(0.5)  # just after the driver's last check: the longest wait
        stopped_at = time.monotonic()
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(30) == 0
        assert time.monotonic() - stopped_at < 10, "a stop must not wait for a MongoDB that hangs"
    assert "Traceback" not in consumer.text()
    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    p.consume()
    assert audit(p.db, valid=sent).windows == sent // 20
