"""The pure part of the commit path: parsing a batch ahead of the writer
(tests/integration/test_ingest.py drives the rest against a real MongoDB)."""

from __future__ import annotations

from dataclasses import dataclass

from metrics_pipeline.ingest import parse_records
from metrics_pipeline.message import InvalidMessage, MetricMessage
from tests.support.pipeline import encode, valid_message


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def test_each_record_gets_its_message_or_its_reason_in_order() -> None:
    good = valid_message()
    values = [encode(good), b"", b"null", encode(valid_message()), None]
    parsed = parse_records([Rec("t", 0, i, b"k", v) for i, v in enumerate(values)])
    assert [type(p) for p in parsed] == [MetricMessage, InvalidMessage, InvalidMessage, MetricMessage,
                                         InvalidMessage]
    assert parsed[0].message_id == good["message_uuid"]
    assert str(parsed[2]) == "el mensaje debe ser un objeto JSON, no null"
