"""The three MongoDB documents of SPEC §3, built from plain values (no I/O).

* raw: every field of the message as received, plus ``_id`` (the message_uuid in
  lower case), ``timestamp`` (parsed ``timestamp_utc``), ``kafka`` and ``ingested_at``;
* dead-letter: the value as text (or binary when it is not UTF-8), the key, the
  error sentence, where it came from and when;
* KPI: one per closed window, with its KPIs, its bounds, its servers and the ids of
  its messages, so each KPI can be recomputed from the raw collection. BSON integers
  have 64 bits; an error sum beyond them (every ``error_count`` is valid up to
  2^63 - 1, so a window of them adds up to more) is stored as an exact Decimal128.

Ids are deterministic, so a replay after a crash rewrites the same ids and MongoDB's
unique ``_id`` turns the second write into a no-op:

* raw ``_id`` = message_uuid;
* dead-letter ``_id`` = ``"<topic>:<partition>:<offset>"``;
* KPI ``_id`` = ``"<topic>:<partition>:<first offset>"``.

Offsets are only unique within one life of a topic: when a topic is deleted and
created again (or a broker loses its data), offsets start again from 0. The storage
layer then finds an existing document with the same id but other content, and uses
:func:`reincarnated_id` (same id plus a suffix derived from the content) instead.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime
from typing import Any

from bson.binary import Binary
from bson.decimal128 import Decimal128

from metrics_pipeline.kpis import WindowBounds, WindowKpis
from metrics_pipeline.message import RESERVED_FIELDS, MetricMessage
from metrics_pipeline.windows import ClosedWindow, WindowMember


def kafka_coordinates(topic: str, partition: int, offset: int) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset}


def raw_document(message: MetricMessage, topic: str, partition: int, offset: int,
                 ingested_at: datetime) -> dict[str, Any]:
    document = dict(message.fields)
    document["_id"] = message.message_id
    document["timestamp"] = message.timestamp
    document["kafka"] = kafka_coordinates(topic, partition, offset)
    document["ingested_at"] = ingested_at
    return document


def same_message(stored: dict[str, Any], message: MetricMessage) -> bool:
    """Whether a stored raw document holds ``message``: the same fields as received
    (what the consumer added to it aside). The same message_uuid with another
    content is another message, not a copy of the stored one."""
    return {name: value for name, value in stored.items() if name not in RESERVED_FIELDS} == message.fields


def _bytes_field(value: bytes | None) -> str | Binary | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return Binary(value)


def deadletter_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def deadletter_document(topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, error: str, received_at: datetime) -> dict[str, Any]:
    return {
        "_id": deadletter_id(topic, partition, offset),
        "value": _bytes_field(value),
        "key": _bytes_field(key),
        "error": error,
        "kafka": kafka_coordinates(topic, partition, offset),
        "received_at": received_at,
    }


def window_id(topic: str, partition: int, first_offset: int) -> str:
    return f"{topic}:{partition}:{first_offset}"


def reincarnated_id(base_id: str, content_key: str) -> str:
    """The id for a document whose natural id was taken by an earlier life of the
    topic: stable for the same content, so its own replays still collide."""
    digest = hashlib.sha256(content_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{base_id}~{digest}"


def member_from_message(message: MetricMessage, offset: int) -> WindowMember:
    return WindowMember(
        offset=offset, message_id=message.message_id, server_id=message.server_id,
        timestamp=message.timestamp, cpu_percent=message.cpu_percent,
        memory_percent=message.memory_percent, disk_io_mbps=message.disk_io_mbps,
        network_mbps=message.network_mbps, error_count=message.error_count)


def bson_number(value: Any) -> Any:
    """An int that does not fit in a BSON int64 becomes an exact Decimal128."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return Decimal128(str(value))
    return value


def kpi_document(window: ClosedWindow, bounds: WindowBounds, kpis: WindowKpis,
                 calculated_at: datetime, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    members = window.members
    return {
        "_id": window_id(window.topic, window.partition, window.first_offset),
        "calculated_at": calculated_at,
        "window_start": bounds.start,
        "window_end": bounds.end,
        "window_duration_seconds": bounds.duration_seconds,
        "message_count": len(members),
        "kpis": {name: bson_number(value) for name, value in kpis.as_document().items()},
        "first_event_time": min(m.timestamp for m in members),
        "last_event_time": max(m.timestamp for m in members),
        "servers": dict(sorted(Counter(m.server_id for m in members).items())),
        "alerts": [{**alert, "value": bson_number(alert["value"])} for alert in alerts],
        "message_uuids": [m.message_id for m in members],
        "kafka": {
            "topic": window.topic,
            "partition": window.partition,
            "first_offset": window.first_offset,
            "last_offset": window.last_offset,
        },
    }
