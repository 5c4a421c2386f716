"""The pure parts of the commit path: parsing a batch ahead of the writer, and the
offset ranges of a DEBUG line (tests/integration/test_ingest.py drives the rest
against a real MongoDB)."""

from __future__ import annotations

from metrics_pipeline.ingest import _offset_ranges, parse_records
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


def test_a_batch_is_described_as_runs_of_consecutive_offsets_per_partition() -> None:
    offsets = [(0, 0), (0, 1), (0, 2), (2, 7), (2, 8), (0, 5), (1, 4)]
    records = [Record("t", partition, offset, None, b"") for partition, offset in offsets]
    assert _offset_ranges(records) == "p0 0-2, p2 7-8, p0 5-5, p1 4-4"
    assert _offset_ranges([]) == ""
