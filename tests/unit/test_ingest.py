"""The pure parts of the commit path: parsing a batch ahead of the writer, the
offset ranges of a DEBUG line and the INFO line of a batch
(tests/integration/test_ingest.py drives the rest against a real MongoDB)."""

from __future__ import annotations

from metrics_pipeline.ingest import BatchResult, _log_window, _offset_ranges, describe, parse_records
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


def test_a_batch_line_gives_the_write_rate_and_the_time_since_it_came_from_kafka() -> None:
    # Written in 0.5 s, but it waited 1 s behind the batches before it: the rate is
    # the writer's (4,000 msg/s), not 2,000 / 1.5 s.
    result = BatchResult(consumed=2000, stored_new=1990, replayed=10, windows=100, seconds=1.5,
                         write_seconds=0.5, positions={0: 2000, 2: 40}, committed=True)
    assert describe(result) == ("Lote guardado en 0.500 s (4000 msg/s), 1.500 s después de llegar de Kafka: "
                                "2000 mensajes, 1990 nuevos, 10 ya guardados (relectura), ventanas KPI: 100; "
                                "offsets confirmados: p0→2000, p2→40")
    result.committed = False
    assert describe(result).endswith("offsets confirmados: ninguno (falló el commit de p0→2000, p2→40)")


def test_a_batch_of_one_message_is_described_in_the_singular() -> None:
    # --source psutil sends one message per round: batches of one are the usual case there.
    result = BatchResult(consumed=1, stored_new=1, windows=0, seconds=0.01, write_seconds=0.01)
    assert ": 1 mensaje, 1 nuevo, ventanas KPI: 0; offsets confirmados: nada nuevo" in describe(result)
    result = BatchResult(consumed=4, replayed=1, duplicates=1, in_closed_windows=1, ignored=1, seconds=1,
                         write_seconds=1)
    assert ": 4 mensajes, 0 nuevos, 1 ya guardado (relectura), 1 duplicado, 1 ya contado en ventanas KPI " \
           "cerradas (relectura), 1 repetido por Kafka, ventanas KPI: 0;" in describe(result)


def test_the_window_line_says_its_kpis_and_counts_one_message_in_the_singular(caplog) -> None:
    kpis = {"cpu_percent_avg": 25.421, "memory_percent_avg": 36.47, "disk_io_mbps_avg": 35.5, "network_mbps_avg": 55.93,
            "error_count_sum": 2, "tasa_procesamiento_msg_seg": 100.04}
    with caplog.at_level("INFO", logger="metrics_pipeline.ingest"):
        for count in (1, 20):
            _log_window({"_id": "t:0:7", "message_count": count, "window_duration_seconds": 0.01, "kpis": kpis,
                         "alerts": []})
    assert [r.getMessage() for r in caplog.records] == [
        f"Ventana KPI t:0:7: {n} en 0.010 s | CPU 25.42 % | memoria 36.47 % | disco 35.50 MB/s | red 55.93 Mbps | "
        "errores 2 | tasa 100.0 msg/s" for n in ("1 mensaje", "20 mensajes")]


def test_a_window_stored_before_is_said_so_without_its_rebuilt_kpis_or_its_alerts_again(caplog) -> None:
    # Rebuilt after a crash or read again by another group: the stored document (its
    # KPIs, its alerts) stays; the rebuild's own rate differs and must not be shown.
    kpis = {"cpu_percent_avg": 95.0, "memory_percent_avg": 36.47, "disk_io_mbps_avg": 35.5, "network_mbps_avg": 55.93,
            "error_count_sum": 2, "tasa_procesamiento_msg_seg": 100.04}
    with caplog.at_level("INFO", logger="metrics_pipeline.ingest"):
        _log_window({"_id": "t:0:7", "message_count": 20, "window_duration_seconds": 0.01, "kpis": kpis,
                     "alerts": [{"message": "media de CPU 95.00 % supera el umbral 90 %"}]}, written_before=True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "INFO", "Ventana KPI t:0:7 ya guardada antes (20 mensajes, los mismos): se conserva la primera, con sus KPI "
        "y sus alertas")]
    result = BatchResult(consumed=40, replayed=40, windows=2, windows_written_before=1, seconds=1, write_seconds=1)
    assert "ventanas KPI: 2 (1 ya guardada antes);" in describe(result)
