"""The pure part of the commit path: parsing a batch ahead of the writer
(tests/integration/test_ingest.py drives the rest against a real MongoDB)."""

from __future__ import annotations

from metrics_pipeline.ingest import parse_records
from metrics_pipeline.message import InvalidMessage, MetricMessage
from tests.support.pipeline import Record, encode, valid_message


def test_each_record_gets_its_message_or_its_reason_in_order() -> None:
    good = valid_message()
    values = [encode(good), b"", b"null", encode(valid_message()), None]
    parsed = parse_records([Record("t", 0, i, b"k", v) for i, v in enumerate(values)])
    assert [type(p) for p in parsed] == [MetricMessage, InvalidMessage, InvalidMessage, MetricMessage,
                                         InvalidMessage]
    assert parsed[0].message_id == good["message_uuid"]
    assert str(parsed[2]) == "el mensaje debe ser un objeto JSON, no null"
