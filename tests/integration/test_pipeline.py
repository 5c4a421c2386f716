"""The normal path, end to end: the two scripts against real Kafka and MongoDB servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from pymongo import MongoClient

from metrics_pipeline.producer_loop import open_producer
from metrics_pipeline.settings import load_producer_settings
from tests.support.audit import DEADLETTER, KPIS, RAW, audit
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, PRODUCER, REPORT, Pipeline, encode, valid_message
from tests.support.waiting import committed_offsets

SERVERS = ("web01", "web02", "db01", "app01", "cache01")


def test_rounds_put_five_keyed_valid_messages_per_round_on_the_topic(pipeline: Pipeline) -> None:
    done = pipeline.produce(4)
    records = pipeline.topic_records()
    assert len(records) == 20
    assert [r.key.decode() for r in records] == list(SERVERS) * 4
    for record in records:
        message = json.loads(record.value)
        assert message["server_id"] == record.key.decode()
        assert set(message) == {"server_id", "timestamp_utc", "metrics", "message_uuid"}
    assert len({json.loads(r.value)["message_uuid"] for r in records}) == 20
    sent_lines = re.findall(r"INFO .*Enviada métrica de (\w+) a Kafka \(partición (\d+), offset (\d+)\)", done.stderr)
    assert len(sent_lines) == 20
    assert sorted(int(o) for _, _, o in sent_lines) == list(range(20))


def test_the_producer_asks_every_in_sync_replica_to_acknowledge(kafka_server) -> None:
    # acks=all (-1): with one broker here no test can see the difference from acks=1,
    # so the setting itself is checked on the producer the script builds.
    settings = load_producer_settings(["--bootstrap-servers", kafka_server.address], environ={}, dotenv_path="")
    producer = open_producer(settings.kafka)
    try:
        assert producer.config["acks"] == -1
    finally:
        producer.close()


def test_consumer_stores_every_message_once_and_writes_exact_auditable_windows(pipeline: Pipeline) -> None:
    pipeline.produce(12)  # 60 messages
    records = pipeline.topic_records()
    sent_ids = {json.loads(r.value)["message_uuid"] for r in records}

    done = pipeline.consume()
    report = audit(pipeline.db, valid=60, valid_ids=sent_ids, topic=pipeline.topic)
    assert report.windows == 3 and report.pending == {0: 0}
    assert done.stderr.count("Ventana KPI") == 3
    assert (f"MongoDB: base de datos {pipeline.database}, colecciones {RAW} (raw), {KPIS} (KPI) y "
            f"{DEADLETTER} (dead-letter)") in done.stderr
    assert "MONGODB_URI nombra" not in done.stderr

    raw = pipeline.db[RAW].find_one({"_id": next(iter(sent_ids))})
    assert raw["kafka"]["topic"] == pipeline.topic and raw["timestamp"].tzinfo is not None
    assert raw["ingested_at"] >= raw["timestamp"]
    kpi = pipeline.db[KPIS].find_one({"kafka.first_offset": 0})
    assert kpi["_id"] == f"{pipeline.topic}:0:0"
    assert kpi["alerts"] == [] or all(a["value"] > a["threshold"] for a in kpi["alerts"])
    indexes = pipeline.db[RAW].index_information()
    assert any(ix["key"] == [("server_id", 1), ("timestamp", -1)] for ix in indexes.values())

    # A second run finds nothing new and writes nothing.
    again = pipeline.consume()
    audit(pipeline.db, valid=60, valid_ids=sent_ids)
    assert "Ventana KPI" not in again.stderr


def test_another_group_reading_the_topic_again_changes_nothing_and_repeats_no_alert(pipeline: Pipeline) -> None:
    # A second consumer group on the same topic and database (a new KAFKA_GROUP_ID, a
    # colleague's consumer) reads everything again: every raw document and every
    # window is already there. The windows written first stay, with their KPIs, and
    # their alerts are not said again (an alerting system reading the log would fire
    # twice); each line says the window was already stored.
    pipeline.produce(12)  # 60 messages
    first = pipeline.consume("--alert-cpu-avg", "0")  # every window alerts
    stored = {k["_id"]: k for k in pipeline.db[KPIS].find()}
    alerts = sum(len(k["alerts"]) for k in stored.values())  # CPU in each, maybe errors or memory too
    assert len(stored) == 3 and alerts >= 3 and first.stderr.count("Alerta en la ventana") == alerts

    other = pipeline.run(CONSUMER, "--idle-timeout", "3", "--alert-cpu-avg", "0",
                         env=pipeline.env(KAFKA_GROUP_ID=f"{pipeline.group}-otro"))
    assert other.returncode == 0, other.stderr[-2000:]
    assert "Alerta en la ventana" not in other.stderr and "Traceback" not in other.stderr
    assert other.stderr.count(" ya guardada antes (20 mensajes, los mismos): se conserva la primera") == 3
    assert "ventanas KPI: 3 (3 ya guardadas antes)" in other.stderr
    assert "60 mensajes leídos, 0 guardados nuevos, 60 ya guardados" in other.stderr
    assert {k["_id"]: k for k in pipeline.db[KPIS].find()} == stored
    audit(pipeline.db, valid=60)


def test_a_database_named_in_the_uri_is_not_where_the_data_go_and_the_consumer_says_so(pipeline: Pipeline) -> None:
    # Atlas users often paste a URI ending in /<database>: pymongo only authenticates
    # there. The data go to MONGODB_DATABASE, and a WARNING says where to look.
    pipeline.produce(4)
    done = pipeline.run(CONSUMER, "--idle-timeout", "3", env=pipeline.env(MONGODB_URI=f"{pipeline.mongo_uri}/metricas"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"WARNING metrics_pipeline.storage: MONGODB_URI nombra la base de datos metricas, pero los datos van a "
            f"{pipeline.database} (MONGODB_DATABASE)") in done.stderr
    audit(pipeline.db, valid=20)
    assert "metricas" not in MongoClient(pipeline.mongo_uri).list_database_names()


def test_windows_stay_exact_across_restarts(pipeline: Pipeline) -> None:
    pipeline.produce(11)  # 55 messages
    pipeline.consume()
    report = audit(pipeline.db, valid=55)
    assert (report.windows, report.pending) == (2, {0: 15})

    pipeline.produce(1)  # 5 more: the open window of 15 is rebuilt and completed
    pipeline.consume()
    report = audit(pipeline.db, valid=60)
    assert (report.windows, report.pending) == (3, {0: 0})
    third = pipeline.db[KPIS].find_one({"kafka.first_offset": 40})
    assert third["kafka"]["last_offset"] == 59


def test_a_new_group_reads_the_topic_again_and_changes_nothing(pipeline: Pipeline) -> None:
    """Another KAFKA_GROUP_ID starts at the earliest offset: a full replay, by a process
    that remembers nothing. Every window is rebuilt with its stored id and the KPI
    document written first is kept as it was."""
    pipeline.produce(11)  # 55 messages: 2 windows and 15 pending
    pipeline.consume()
    before = sorted(pipeline.db[KPIS].find(), key=lambda d: d["_id"])

    done = pipeline.consume("--group-id", f"{pipeline.group}-otro")
    assert "55 mensajes leídos, 0 guardados nuevos, 55 ya guardados" in done.stderr, done.stderr[-2000:]
    report = audit(pipeline.db, valid=55)
    assert (report.windows, report.pending) == (2, {0: 15})
    assert sorted(pipeline.db[KPIS].find(), key=lambda d: d["_id"]) == before


def test_max_messages_stops_after_exactly_that_many_and_commits_only_complete_windows(pipeline: Pipeline) -> None:
    pipeline.produce(12)
    done = pipeline.run(CONSUMER, "--max-messages", "55", "--batch-size", "7")
    assert done.returncode == 0, done.stderr
    assert "55 mensajes leídos" in done.stderr
    report = audit(pipeline.db, valid=55)
    assert report.windows == 2
    # The committed position is the first offset of the open window: 40.
    assert committed_offsets(pipeline.bootstrap, pipeline.group, pipeline.topic, 1) == {0: 40}

    pipeline.consume()
    assert audit(pipeline.db, valid=60).windows == 3


def test_the_batch_that_reaches_max_messages_is_committed_before_the_consumer_exits(pipeline: Pipeline) -> None:
    # One poll reads all 40 messages: the stop rule is met right after the batch goes
    # to the writer, and the consumer must wait for it and commit it (both windows).
    pipeline.produce(12)  # 60 messages
    done = pipeline.run(CONSUMER, "--max-messages", "40", "--batch-size", "40")
    assert done.returncode == 0, done.stderr
    assert "40 mensajes leídos" in done.stderr and done.stderr.count("Ventana KPI") == 2
    assert committed_offsets(pipeline.bootstrap, pipeline.group, pipeline.topic, 1) == {0: 40}


def test_windows_are_kept_per_partition(pipeline: Pipeline) -> None:
    pipeline.partitions = 3
    produced = pipeline.produce(30, servers=",".join(f"srv{i:02d}" for i in range(10)))  # 300 messages
    assert f"Tema {pipeline.topic} creado (particiones: 3)" in produced.stderr
    pipeline.partitions = 1  # the consumer's default: an existing topic is used as it is (SPEC §4)
    consumed = pipeline.consume()
    assert (f"Tema {pipeline.topic} ya existe (particiones: 3; KAFKA_TOPIC_PARTITIONS=1 solo se aplica "
            "al crearlo)") in consumed.stderr
    report = audit(pipeline.db, valid=300)
    assert len(report.pending) == 3, "the producer's keys should reach all three partitions"
    for kpi in pipeline.db[KPIS].find():
        assert kpi["_id"] == f"{pipeline.topic}:{kpi['kafka']['partition']}:{kpi['kafka']['first_offset']}"


def test_each_batch_line_says_how_many_messages_are_left_to_read(pipeline: Pipeline) -> None:
    pipeline.produce(60)  # 300 messages on one partition
    done = pipeline.consume("--batch-size", "25")
    lines = [line for line in done.stderr.splitlines() if "Lote guardado" in line]
    batches = [re.search(r": (\d+) mensajes?.*; por leer en Kafka: (\d+)$", line) for line in lines]
    assert all(batches), "\n".join(lines)
    consumed = [int(m[1]) for m in batches if m]
    unread = [int(m[2]) for m in batches if m]
    assert sum(consumed) == 300, consumed
    # Reads run ahead of what is stored by at most a few batches, never behind it;
    # they only move forward, and at the end nothing is left.
    assert unread[0] >= 300 - 4 * 25 and unread[-1] == 0, unread
    assert unread == sorted(unread, reverse=True), unread
    for i, left in enumerate(unread):
        assert left <= 300 - sum(consumed[:i + 1]), (i, unread)


def test_poison_goes_to_dead_letter_and_the_stream_goes_on(pipeline: Pipeline) -> None:
    pipeline.create_topic()
    good = [valid_message(f"web{i % 3}") for i in range(25)]
    items: list[tuple[bytes | None, bytes | None]] = []
    is_poison: list[bool] = []
    poison = [b"", b"null", b"[1,2]", b'{"server_id": "x"', b"\xff\xfe\x00", b'{"a": NaN}',
              encode(valid_message(metrics={"cpu_percent": True, "memory_percent": 1, "disk_io_mbps": 1,
                                            "network_mbps": 1, "error_count": 0}))]
    for i, message in enumerate(good):
        items.append((message["server_id"].encode(), encode(message)))
        is_poison.append(False)
        if i % 4 == 0 and poison:
            items.append((b"bad", poison.pop()))
            is_poison.append(True)
    items.append((b"gone", None))  # a tombstone: a key and no value
    is_poison.append(True)
    coordinates = pipeline.send_raw(items)
    invalid_ids = {f"{pipeline.topic}:{p}:{o}" for bad, (p, o) in zip(is_poison, coordinates) if bad}

    done = pipeline.consume()
    audit(pipeline.db, valid=25, invalid=len(invalid_ids), valid_ids={m["message_uuid"] for m in good},
          deadletter_ids=invalid_ids)
    assert done.stderr.count("enviado a dead-letter") == len(invalid_ids) == 8
    letters = {d["_id"]: d for d in pipeline.db[DEADLETTER].find()}
    binary = [d for d in letters.values() if isinstance(d["value"], bytes)]
    assert len(binary) == 1 and binary[0]["value"] == b"\xff\xfe\x00"
    assert all(d["error"] and d["kafka"]["topic"] == pipeline.topic for d in letters.values())
    tombstone = [d for d in letters.values() if d["value"] is None]
    assert len(tombstone) == 1 and tombstone[0]["key"] == "gone"

    pipeline.consume()  # a replay dead-letters nothing twice
    audit(pipeline.db, valid=25, invalid=len(invalid_ids))


def test_a_message_sent_twice_is_stored_and_counted_once(pipeline: Pipeline) -> None:
    pipeline.create_topic()
    messages = [valid_message() for _ in range(20)]
    twice = messages[:5] + messages  # the first five reach the topic twice
    pipeline.send_raw([(b"web01", encode(m)) for m in twice])
    done = pipeline.consume()
    assert done.stderr.count("Mensaje duplicado") == 5
    report = audit(pipeline.db, valid=20, valid_ids={m["message_uuid"] for m in messages})
    assert report.windows == 1
    kpi = pipeline.db[KPIS].find_one()
    # Offsets 5-9 hold the second copies: the window is offsets 0-4 and 10-24.
    assert kpi["kafka"] == {"topic": pipeline.topic, "partition": 0, "first_offset": 0, "last_offset": 24}


def test_another_message_reusing_a_stored_message_uuid_is_dead_lettered_not_lost(pipeline: Pipeline) -> None:
    # A producer that draws the UUID once, outside its loop: every later message has
    # the id of a stored one and another content. Skipping it as a duplicate lost it.
    pipeline.create_topic()
    messages = [valid_message() for _ in range(20)]
    reuser = {**valid_message(), "message_uuid": messages[3]["message_uuid"], "server_id": "db01"}
    sent = [*messages, reuser, dict(messages[3])]  # offset 20: another message; 21: a true copy
    pipeline.send_raw([(m["server_id"].encode(), encode(m)) for m in sent])
    done = pipeline.consume()
    dead_id = f"{pipeline.topic}:0:20"
    report = audit(pipeline.db, valid=20, invalid=1, valid_ids={m["message_uuid"] for m in messages},
                   deadletter_ids={dead_id})
    assert report.windows == 1
    dead = pipeline.db[DEADLETTER].find_one({"_id": dead_id})
    assert json.loads(dead["value"]) == reuser
    assert dead["error"] == (f"el message_uuid {reuser['message_uuid']} ya lo usa otro mensaje, con otro contenido, "
                             "guardado en raw (partición 0, offset 3): un _id no puede guardar dos mensajes (¿un "
                             "productor que repite el UUID?)")
    assert done.stderr.count("Mensaje duplicado") == 1  # offset 21, the same message again

    # A full replay by a process that remembers nothing decides the same.
    again = pipeline.consume("--group-id", f"{pipeline.group}-otro")
    assert "22 mensajes leídos, 0 guardados nuevos, 20 ya guardados, 1 duplicado" in again.stderr
    audit(pipeline.db, valid=20, invalid=1, deadletter_ids={dead_id})


def test_values_at_the_edge_of_the_schema_are_windowed_without_stopping_the_consumer(pipeline: Pipeline) -> None:
    # SPEC §2 bounds neither the rates nor error_count (beyond the 64 bits BSON stores):
    # a window of such messages has a rate sum beyond a float and an error sum beyond
    # 64 bits. It must be written like any other, not crash the consumer at every restart.
    pipeline.create_topic()
    edge = [valid_message(metrics={"cpu_percent": 100, "memory_percent": 0, "disk_io_mbps": 1.7e308,
                                   "network_mbps": 1.6e308, "error_count": 2**63 - 1}) for _ in range(20)]
    normal = [valid_message(timestamp_utc="2026-11-26T16:00:00+00:00") for _ in range(20)]
    pipeline.send_raw([(b"web01", encode(m)) for m in edge + normal])
    done = pipeline.consume()
    assert "Traceback" not in done.stderr and " ERROR " not in done.stderr
    report = audit(pipeline.db, valid=40)
    assert report.windows == 2
    first = pipeline.db[KPIS].find_one({"kafka.first_offset": 0})
    assert first["kpis"]["disk_io_mbps_avg"] == 1.7e308 and first["kpis"]["network_mbps_avg"] == 1.6e308
    assert str(first["kpis"]["error_count_sum"]) == str(20 * (2**63 - 1))
    assert pipeline.consume().stderr.count("Ventana KPI") == 0  # the commit moved past both windows

    # The report prints such values and says in one line, without a traceback, that
    # matplotlib cannot chart them. (--since keeps the edge messages out of the
    # per-server summary: SecantusDB fails to sum error counts beyond 64 bits, where
    # mongod returns a double.)
    shown = pipeline.run(REPORT, "--since", "2026-11-26T15:30:00Z", "--output", str(pipeline.workdir / "k.png"))
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr[-2000:]
    errors = error_lines(shown.stderr)
    assert len(errors) == 1 and "No se pudo dibujar el gráfico" in errors[0], shown.stderr
    assert "1.7e+308" in shown.stdout and str(20 * (2**63 - 1)) in shown.stdout


CODECS = ("gzip", "lz4", "zstd", "snappy")


def test_batches_compressed_by_another_producer_are_read(pipeline: Pipeline) -> None:
    # Our producer does not compress, but other producers (or a topic's compression.type)
    # may: every codec Kafka has must be readable, or the consumer could never pass them.
    pipeline.create_topic()
    messages = [valid_message() for _ in range(20 * len(CODECS))]
    for i, codec in enumerate(CODECS):
        pipeline.send_raw([(b"web01", encode(m)) for m in messages[20 * i: 20 * (i + 1)]], compression=codec)
    pipeline.consume()
    audit(pipeline.db, valid=len(messages), valid_ids={m["message_uuid"] for m in messages})


def test_a_codec_library_missing_is_one_clear_line_and_exit_1(pipeline: Pipeline) -> None:
    pipeline.create_topic()
    pipeline.send_raw([(b"web01", encode(valid_message())) for _ in range(5)], compression="lz4")
    hide = pipeline.workdir / "sin_lz4"
    (hide / "lz4").mkdir(parents=True)
    (hide / "lz4" / "__init__.py").write_text("raise ImportError('lz4 not installed (test)')\n")
    done = pipeline.run(CONSUMER, "--idle-timeout", "3", env=pipeline.env(PYTHONPATH=str(hide)))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "lz4" in errors[0] and "requirements.txt" in errors[0], done.stderr[-3000:]


def _without_standard_streams(pipeline: Pipeline, script, *args: str) -> int:
    """Run a script started with stdin, stdout and stderr closed (``<&- >&- 2>&-``, or
    a service manager that closes them); its exit code."""
    def close_them() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    return subprocess.run([sys.executable, str(script), *args], cwd=pipeline.workdir, env=pipeline.env(),
                          preexec_fn=close_them, timeout=120).returncode


def test_the_scripts_run_with_their_standard_streams_closed(pipeline: Pipeline) -> None:
    # Python then has no sys.stderr: logging could not start and the scripts exited 1
    # without a word, doing nothing.
    assert _without_standard_streams(pipeline, PRODUCER, "--rounds", "8", "--interval", "0") == 0
    assert _without_standard_streams(pipeline, CONSUMER, "--idle-timeout", "3") == 0
    assert audit(pipeline.db, valid=40).windows == 2
    assert _without_standard_streams(pipeline, REPORT, "--chart", "no") == 0
