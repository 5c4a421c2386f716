"""Scenario 5: poison. Every kind of invalid payload lands in the dead-letter collection
exactly once, also after a crash and a replay; valid traffic is intact; the consumer
never stops."""

from __future__ import annotations

import random

import pytest

from tests.support.audit import DEADLETTER, KPIS, RAW, audit
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, Pipeline, encode, valid_message
from tests.support.poison import POISON

pytestmark = pytest.mark.slow


def test_every_kind_of_poison_is_dead_lettered_exactly_once(pipeline: Pipeline) -> None:
    assert len(POISON) >= 20
    rng = random.Random(5)
    pipeline.create_topic()
    good = [valid_message(f"web{i % 5:02d}") for i in range(300)]
    items: list[tuple[bytes, bytes | None]] = []
    poison_positions: list[int] = []
    slots = sorted(rng.sample(range(len(good)), len(POISON)))
    poison_iter = iter(POISON)
    for i, message in enumerate(good):
        items.append((message["server_id"].encode(), encode(message)))
        if i in slots:
            _, value = next(poison_iter)
            poison_positions.append(len(items))
            items.append((b"poison", value))
    coordinates = pipeline.send_raw(items)
    poison_ids = {f"{pipeline.topic}:{coordinates[i][0]}:{coordinates[i][1]}" for i in poison_positions}

    # A first run killed mid-way, then a run to the end, then a replay of the tail.
    crashed = pipeline.start(CONSUMER, "--batch-size", "9")
    crashed.wait_for("enviado a dead-letter", timeout=60, count=5)
    crashed.kill()
    done = pipeline.consume()
    again = pipeline.consume()
    for run in (crashed.text(), done.stderr, again.stderr):
        assert "Traceback" not in run and " ERROR " not in run and "CRITICAL" not in run

    audit(pipeline.db, valid=len(good), invalid=len(POISON), valid_ids={m["message_uuid"] for m in good},
          deadletter_ids=poison_ids)
    # Each one is kept verbatim (text when UTF-8, else binary), with a reason.
    for position in poison_positions:
        partition, offset = coordinates[position]
        letter = pipeline.db[DEADLETTER].find_one({"_id": f"{pipeline.topic}:{partition}:{offset}"})
        sent = items[position][1]
        stored = letter["value"]
        assert (stored.encode() if isinstance(stored, str) else stored) == sent or (sent is None and stored is None)
        assert letter["key"] == "poison" and letter["error"]
        assert letter["kafka"] == {"topic": pipeline.topic, "partition": partition, "offset": offset}


def test_a_message_mongodb_refuses_is_dead_lettered_with_its_reason(pipeline: Pipeline) -> None:
    # Valid by SPEC §2 but refused by the database: here a schema validator someone put
    # on the raw collection (server ids of at most 6 characters). MongoDB refuses the
    # document alone; the batch's other documents are stored.
    pipeline.db.create_collection(RAW, validator={"$jsonSchema": {
        "bsonType": "object", "properties": {"server_id": {"bsonType": "string", "maxLength": 6}}}})
    pipeline.create_topic()
    messages = [valid_message("servidor-con-nombre-largo" if i in (7, 30, 51) else f"web{i % 5:02d}")
                for i in range(60)]
    coordinates = pipeline.send_raw([(m["server_id"].encode(), encode(m)) for m in messages])
    refused = {f"{pipeline.topic}:{coordinates[i][0]}:{coordinates[i][1]}" for i in (7, 30, 51)}

    first = pipeline.consume()
    assert "Traceback" not in first.stderr and " ERROR " not in first.stderr
    assert first.stderr.count("enviado a dead-letter: MongoDB rechazó el documento") == 3
    stored = [m for i, m in enumerate(messages) if i not in (7, 30, 51)]
    report = audit(pipeline.db, valid=57, invalid=3, valid_ids={m["message_uuid"] for m in stored},
                   deadletter_ids=refused)
    assert report.windows == 2, "refused messages count in no window"
    for letter in pipeline.db[DEADLETTER].find():
        assert "Document failed validation" in letter["error"]


def _clashing_messages() -> tuple[list[dict], set[int]]:
    """60 messages; those at 9, 33 and 52 repeat the server and time of an earlier one."""
    messages = [valid_message(f"web{i % 5:02d}", timestamp_utc=f"2026-11-26T15:{i // 60:02d}:{i % 60:02d}+00:00")
                for i in range(60)]
    clashing = {9: 4, 33: 8, 52: 2}
    for i, earlier in clashing.items():
        messages[i].update(server_id=messages[earlier]["server_id"], timestamp_utc=messages[earlier]["timestamp_utc"])
    return messages, set(clashing)


def test_a_unique_index_someone_added_to_raw_dead_letters_the_messages_it_refuses(pipeline: Pipeline) -> None:
    # A duplicate-key error that is not about _id: the consumer took it for "already
    # stored", found no such _id, tried again... forever (RecursionError, a traceback,
    # and the same at every restart).
    pipeline.db[RAW].create_index([("server_id", 1), ("timestamp_utc", 1)], unique=True)
    pipeline.create_topic()
    messages, clashing = _clashing_messages()
    coordinates = pipeline.send_raw([(m["server_id"].encode(), encode(m)) for m in messages])
    refused = {f"{pipeline.topic}:{coordinates[i][0]}:{coordinates[i][1]}" for i in clashing}

    for run in (pipeline.consume(), pipeline.consume()):
        assert "Traceback" not in run.stderr and " ERROR " not in run.stderr
    stored = [m for i, m in enumerate(messages) if i not in clashing]
    report = audit(pipeline.db, valid=57, invalid=3, valid_ids={m["message_uuid"] for m in stored},
                   deadletter_ids=refused)
    assert report.windows == 2
    for letter in pipeline.db[DEADLETTER].find():
        assert "E11000" in letter["error"] and "server_id_1_timestamp_utc_1" in letter["error"]


def test_a_unique_index_that_refuses_a_kpi_document_stops_the_consumer_with_one_line(pipeline: Pipeline) -> None:
    # A KPI document cannot be dead-lettered: exit 1, nothing of its window committed.
    pipeline.db[KPIS].create_index("message_count", unique=True)  # every window has 20
    pipeline.create_topic()
    messages, _ = _clashing_messages()
    pipeline.send_raw([(m["server_id"].encode(), encode(m)) for m in messages])

    stopped = pipeline.run(CONSUMER, "--idle-timeout", "3", "--batch-size", "20")
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    [line] = error_lines(stopped.stderr)
    assert "MongoDB rechazó un documento KPI: E11000" in line and "message_count_1" in line
    assert pipeline.db[KPIS].count_documents({}) == 1

    pipeline.db[KPIS].drop_index("message_count_1")
    pipeline.consume()
    audit(pipeline.db, valid=60, valid_ids={m["message_uuid"] for m in messages})
