"""Scenario 5: poison. Every kind of invalid payload lands in the dead-letter collection
exactly once, also after a crash and a replay; valid traffic is intact; the consumer
never stops."""

from __future__ import annotations

import json
import random

import pytest

from tests.support.audit import DEADLETTER, RAW, audit
from tests.support.pipeline import CONSUMER, Pipeline, encode, valid_message

pytestmark = pytest.mark.slow


def _with(path: str, value) -> bytes:
    message = valid_message()
    target = message
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return json.dumps(message).encode()


def _replace(path: str, literal: bytes) -> bytes:
    return _with(path, 123456789).replace(b"123456789", literal)


def _extra(member: bytes) -> bytes:
    """A valid message with one more JSON member, written as given."""
    return encode(valid_message())[:-1] + b", " + member + b"}"


POISON: list[tuple[str, bytes | None]] = [
    ("empty", b""),
    ("tombstone (no value)", None),
    ("null", b"null"),
    ("array", b"[1, 2, 3]"),
    ("number", b"42"),
    ("string", b'"web01"'),
    ("truncated JSON", encode(valid_message())[:-7]),
    ("random bytes", bytes(random.Random(1).randrange(256) for _ in range(300))),
    ("not UTF-8", b'{"server_id": "web\xff01"}'),
    ("NaN literal", _replace("metrics.cpu_percent", b"NaN")),
    ("Infinity literal", _replace("metrics.disk_io_mbps", b"Infinity")),
    ("-Infinity literal", _replace("metrics.network_mbps", b"-Infinity")),
    ("1e999", _replace("metrics.network_mbps", b"1e999")),
    ("boolean as a number", _with("metrics.memory_percent", True)),
    ("negative error_count", _with("metrics.error_count", -2)),
    ("fractional error_count", _with("metrics.error_count", 0.5)),
    ("error_count beyond 64 bits", _with("metrics.error_count", 2**64)),
    ("bad UUID", _with("message_uuid", "1234")),
    ("bad timestamp", _with("timestamp_utc", "26/11/2026 15:04")),
    ("empty server_id", _with("server_id", "")),
    ("server_id of 254 characters", _with("server_id", "x" * 254)),
    ("metrics not an object", _with("metrics", "cpu=42")),
    ("cpu above 100", _with("metrics.cpu_percent", 180.5)),
    ("missing metric", json.dumps({**valid_message(), "metrics": {"cpu_percent": 1}}).encode()),
    ("reserved field", _with("kafka", {"offset": 1})),
    ("arrays nested 5,000 deep", b'{"server_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("objects nested 150 deep", _with("extra", json.loads('{"a":' * 150 + "1" + "}" * 150))),
    ("value near 1 MB", b'{"server_id": "web01", "blob": "' + b"x" * 1_000_000 + b'"'),
    # Valid by SPEC §2 (extra fields are kept) but not storable as BSON: the raw write
    # rejects them and they are dead-lettered with the reason, the rest of the batch stored.
    ("lone surrogate in an extra field", _extra(b'"note": "\\ud800"')),
    ("NUL in an extra field's name", _extra(b'"a\\u0000b": 1')),
    ("integer beyond 64 bits in an extra field", _extra(b'"big": 123456789012345678901234567890')),
]


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
