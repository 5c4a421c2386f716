"""The documents of SPEC §3 and their deterministic ids."""

from __future__ import annotations

import dataclasses
import json
import uuid

import bson
from bson.decimal128 import Decimal128
from datetime import datetime, timezone

from metrics_pipeline.alerts import AlertThresholds, evaluate_alerts
from metrics_pipeline.documents import (deadletter_document, kpi_document, member_from_message, same_message,
                                        raw_document, reincarnated_id, window_id)
from metrics_pipeline.kpis import compute_kpis, window_bounds
from metrics_pipeline.message import MAX_SERVER_ID_LENGTH, parse_message
from metrics_pipeline.settings import MAX_WINDOW_SIZE
from metrics_pipeline.windows import ClosedWindow

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)


def message(uuid: str, server: str = "web01", cpu: float = 10.0, extra: dict | None = None,
            errors: int = 1):
    body = {"server_id": server, "timestamp_utc": "2026-11-26T15:04:05.5+00:00",
            "metrics": {"cpu_percent": cpu, "memory_percent": 20, "disk_io_mbps": 1, "network_mbps": 2,
                        "error_count": errors},
            "message_uuid": uuid, **(extra or {})}
    return parse_message(json.dumps(body).encode())


def test_raw_document_keeps_every_field_and_adds_ours() -> None:
    m = message("6F1C2D9E-3B7A-4C55-9A1E-2F0D8C4B7E10", extra={"region": "eu"})
    doc = raw_document(m, "topic", 2, 41, NOW)
    assert doc["_id"] == "6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10"
    assert doc["message_uuid"] == "6F1C2D9E-3B7A-4C55-9A1E-2F0D8C4B7E10"
    assert doc["region"] == "eu" and doc["metrics"]["cpu_percent"] == 10.0
    assert doc["timestamp"] == datetime(2026, 11, 26, 15, 4, 5, 500000, tzinfo=timezone.utc)
    assert doc["kafka"] == {"topic": "topic", "partition": 2, "offset": 41}
    assert doc["ingested_at"] == NOW


def test_a_stored_raw_document_is_recognised_as_the_same_message_after_the_bson_round_trip() -> None:
    uid = "6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10"
    original = message(uid, extra={"region": "eu", "tags": [1, 2.5, None, True], "big": 2**62})
    stored = bson.decode(bson.encode(raw_document(original, "topic", 0, 7, NOW)))  # as find() returns it
    assert same_message(stored, original)
    assert same_message(stored, message(uid, extra={"tags": [1, 2.5, None, True], "big": 2**62, "region": "eu"}))
    assert not same_message(stored, message(uid, cpu=11.0, extra={"region": "eu", "tags": [1, 2.5, None, True],
                                                                  "big": 2**62}))
    assert not same_message(stored, message(uid, extra={"region": "us", "tags": [1, 2.5, None, True], "big": 2**62}))
    assert not same_message(stored, message(uid))  # extra fields missing


def test_deadletter_document_text_binary_and_id() -> None:
    text = deadletter_document("t", 0, 7, b"k", b'{"a": 1', "JSON no valido", NOW)
    assert text["_id"] == "t:0:7" and text["value"] == '{"a": 1' and text["key"] == "k"
    assert text["kafka"] == {"topic": "t", "partition": 0, "offset": 7} and text["received_at"] == NOW
    binary = deadletter_document("t", 0, 8, None, b"\xff\x00", "no UTF-8", NOW)
    assert bytes(binary["value"]) == b"\xff\x00" and binary["key"] is None


def test_kpi_document_names_its_messages_and_bounds() -> None:
    members = tuple(member_from_message(message(f"00000000-0000-4000-8000-00000000000{i}",
                                                server="web01" if i % 2 else "db01", cpu=float(i)), 10 + i)
                    for i in range(4))
    window = ClosedWindow("t", 1, members, received_at=100.0, stored_at=100.25)
    bounds = window_bounds(window.received_at, window.stored_at)
    kpis = compute_kpis(members, bounds.duration_seconds)
    doc = kpi_document(window, bounds, kpis, NOW, [])
    assert doc["_id"] == window_id("t", 1, 10) == "t:1:10"
    assert doc["message_count"] == 4 and doc["window_duration_seconds"] == 0.25
    assert doc["kpis"]["cpu_percent_avg"] == 1.5 and doc["kpis"]["tasa_procesamiento_msg_seg"] == 16.0
    assert doc["servers"] == {"db01": 2, "web01": 2}
    assert doc["message_uuids"] == [m.message_id for m in members]
    assert doc["kafka"] == {"topic": "t", "partition": 1, "first_offset": 10, "last_offset": 13}
    assert doc["first_event_time"] == doc["last_event_time"] == members[0].timestamp
    assert doc["alerts"] == []


def test_an_error_sum_beyond_64_bits_is_stored_exactly_as_decimal128() -> None:
    # Each error_count fits in 64 bits (the validator's limit); their sum does not.
    members = tuple(member_from_message(message(f"00000000-0000-4000-8000-00000000000{i}", errors=2**63 - 1), i)
                    for i in range(3))
    window = ClosedWindow("t", 0, members, received_at=100.0, stored_at=100.5)
    bounds = window_bounds(window.received_at, window.stored_at)
    kpis = compute_kpis(members, bounds.duration_seconds)
    doc = kpi_document(window, bounds, kpis, NOW, evaluate_alerts(kpis, AlertThresholds()))
    assert doc["kpis"]["error_count_sum"] == Decimal128(str(3 * (2**63 - 1)))
    assert int(doc["kpis"]["error_count_sum"].to_decimal()) == 3 * (2**63 - 1)
    assert doc["alerts"][0]["value"] == doc["kpis"]["error_count_sum"]
    assert bson.decode(bson.encode(doc))["kpis"]["error_count_sum"] == doc["kpis"]["error_count_sum"]
    # Sums that fit stay plain integers.
    small = compute_kpis(members[:1], 1.0)
    assert type(kpi_document(window, bounds, small, NOW, [])["kpis"]["error_count_sum"]) is int


def test_the_largest_window_fits_in_one_mongodb_document() -> None:
    # MAX_WINDOW_SIZE messages from as many distinct ids of the longest valid kind
    # (253 four-byte characters): the KPI document must stay under 16 MB, or the
    # window could never be stored and its partition would stop for good.
    template = message("00000000-0000-4000-8000-000000000000", server="\U0001F5A5" * MAX_SERVER_ID_LENGTH)
    members = tuple(
        dataclasses.replace(member_from_message(template, i), message_id=str(uuid.UUID(int=i, version=4)),
                            server_id=f"{i:05d}" + "\U0001F5A5" * (MAX_SERVER_ID_LENGTH - 5))
        for i in range(MAX_WINDOW_SIZE))
    window = ClosedWindow("t" * 249, 0, members, received_at=100.0, stored_at=101.0)
    bounds = window_bounds(window.received_at, window.stored_at)
    doc = kpi_document(window, bounds, compute_kpis(members, bounds.duration_seconds), NOW, [])
    assert len(doc["servers"]) == MAX_WINDOW_SIZE
    assert len(bson.encode(doc)) < 16 * 1024 * 1024  # ~10.5 MB


def test_reincarnated_ids_are_stable_and_distinct() -> None:
    assert reincarnated_id("t:0:0", "a") == reincarnated_id("t:0:0", "a")
    assert reincarnated_id("t:0:0", "a") != reincarnated_id("t:0:0", "b")
    assert reincarnated_id("t:0:0", "a").startswith("t:0:0~")
