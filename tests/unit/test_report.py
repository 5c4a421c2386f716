"""Report formatting (pure): tables line up, empty inputs say so; the chart's bar widths
and line breaks."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from metrics_pipeline.report import (CHART_MAX_WINDOWS, _bar_width, _broken, _gap_positions, _table, foreign_note,
                                     format_summary, format_windows, windows_phrase)
from metrics_pipeline.settings import REPORT_OPTIONS, load_report_settings


def _summary_row(server_id: str = "web01", **changes) -> dict:
    """One server's figures as MongoDB's aggregation returns them."""
    return {"_id": server_id, "messages": 2, "cpu_avg": 1.0, "cpu_max": 2.0, "memory_avg": 3.0, "disk_avg": 4.0,
            "network_avg": 5.0, "errors": 6, "last": datetime(2026, 11, 26, 9, 0), **changes}


def _window(**changes) -> dict:
    """One KPI document, with the fields the table reads."""
    return {"window_end": datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc), "kafka": {"partition": 0},
            "message_count": 20, "kpis": {"cpu_percent_avg": 1.0, "memory_percent_avg": 2.0, "disk_io_mbps_avg": 3.0,
                                          "network_mbps_avg": 4.0, "error_count_sum": 5,
                                          "tasa_procesamiento_msg_seg": 6.0}, **changes}


def test_columns_line_up_text_left_numbers_right() -> None:
    lines = _table(["name", "n", "note"], [["a", "1", "x"], ["bbb", "100", "long note"]], left=(0, 2))
    assert lines == [
        "name    n  note",
        "----  ---  ---------",
        "a       1  x",
        "bbb   100  long note",
    ]


def test_empty_inputs_are_said_plainly() -> None:
    assert format_windows([], 0) == "No hay ventanas KPI que mostrar."
    assert format_summary([], None) == "Resumen por servidor (todos los mensajes guardados): no hay mensajes."
    since = datetime(2026, 11, 26, 8, 30, tzinfo=timezone.utc)
    assert "desde 2026-11-26 08:30:00 UTC" in format_summary([], since)


def test_one_window_is_named_in_the_singular() -> None:
    window = _window()
    assert format_windows([window], 1).splitlines()[0] == "Última ventana KPI (de 1)"
    assert format_windows([window, window], 7).splitlines()[0] == "Últimas 2 ventanas KPI (de 7)"
    assert (windows_phrase(1), windows_phrase(2)) == ("1 ventana", "2 ventanas")


def test_naive_datetimes_from_the_driver_are_read_as_utc() -> None:
    assert format_summary([_summary_row()], None).splitlines()[-1].endswith("2026-11-26 09:00:00")


def test_rates_too_large_for_a_column_are_shown_in_scientific_notation() -> None:
    last = format_summary([_summary_row(disk_avg=1.7e308, network_avg=123456.789)], None).splitlines()[-1].split()
    assert last[5:8] == ["1.7e+308", "123456.79", "6"]


def test_a_server_id_as_long_as_a_host_name_is_cut_in_the_table() -> None:
    last = format_summary([_summary_row("h" * 253)], None).splitlines()[-1]
    assert last.startswith("h" * 39 + "…  ")


def test_a_server_id_with_a_line_break_stays_on_its_row() -> None:
    lines = format_summary([_summary_row("web\n01\tmétricas")], None).splitlines()
    assert len(lines) == 5 and lines[-1].startswith("web\\n01\\tmétricas  ")


def test_the_foreign_documents_note_names_only_the_collections_that_have_them() -> None:
    mongo = load_report_settings([], environ={}, dotenv_path="").mongo
    tail = ", sin la forma que escribe este pipeline (¿de otra versión del ejercicio, con las mismas colecciones?)."
    assert foreign_note((0, 1), mongo) == (
        "Nota: se dejan fuera 1 documento de monitoring_iabd06.system_metrics_raw_iabd06" + tail)
    assert foreign_note((3, 0), mongo) == (
        "Nota: se dejan fuera 3 documentos de monitoring_iabd06.system_metrics_kpis_iabd06" + tail)
    assert foreign_note((1, 2), mongo) == (
        "Nota: se dejan fuera 1 documento de monitoring_iabd06.system_metrics_kpis_iabd06 y 2 de "
        "monitoring_iabd06.system_metrics_raw_iabd06" + tail)


def test_wide_characters_and_combining_marks_keep_the_columns_aligned() -> None:
    # "😀" and "数据" take two terminal columns per character; "é" spelt e + U+0301 takes one.
    lines = format_summary([_summary_row(i) for i in ("web01", "😀", "数据", "cafe\u0301")], None).splitlines()
    column = "  " + " " * 7 + "2  "  # the 8-column "mensajes" cell after the 8-column "servidor" one
    assert [line[: line.index(column) + len(column)] for line in lines[4:]] == [
        "web01" + " " * 3 + column, "😀" + " " * 6 + column, "数据" + " " * 4 + column, "cafe\u0301" + " " * 4 + column]


def test_a_server_id_with_edge_blanks_is_quoted_so_it_differs_from_the_trimmed_one() -> None:
    lines = format_summary([_summary_row("web01"), _summary_row("web01 ")], None).splitlines()
    assert lines[-2].startswith("web01     ") and lines[-1].startswith('"web01 "  ')


def test_wide_server_ids_are_cut_at_the_column_width() -> None:
    last = format_summary([_summary_row("数" * 100)], None).splitlines()[-1]
    assert last.startswith("数" * 19 + "…  ")


def test_alerts_edited_by_hand_into_something_else_do_not_break_the_table() -> None:
    shown = [format_windows([_window(alerts=alerts)], 1).splitlines()[-1].split()[-1]
             for alerts in (["x"], "CPU", [{"kpi": "cpu_percent_avg"}, {"valor": 1}], None)]
    assert shown == ["-", "-", "CPU", "-"]


T0 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


def test_bars_are_most_of_the_typical_gap_and_never_thinner_than_the_axis_allows() -> None:
    live = [T0 + timedelta(seconds=40 * n) for n in range(10)]
    assert _bar_width(live) * 86400 == pytest.approx(32.0)  # 80 % of the 40 s between windows
    drained = live + [T0 + timedelta(hours=1, milliseconds=10 * n) for n in range(300)]
    span = (drained[-1] - drained[0]).total_seconds()
    assert _bar_width(drained) * 86400 == pytest.approx(span / 600)  # not 8 ms, a hundredth of a pixel


def _after(gaps_in_seconds: list[float]) -> list[datetime]:
    times = [T0]
    for gap in gaps_in_seconds:
        times.append(times[-1] + timedelta(seconds=gap))
    return times


def test_lines_break_only_where_no_window_closed_for_long() -> None:
    assert _gap_positions(_after([40] * 4)) == []
    # A break needs more than ten typical gaps and more than five minutes.
    assert _gap_positions(_after([40, 40, 40, 40, 401, 40])) == [5]
    assert _gap_positions(_after([40, 40, 40, 40, 399, 40])) == []
    assert _gap_positions(_after([1, 1, 1, 301, 1])) == [4]
    assert _gap_positions(_after([1, 1, 1, 299, 1])) == []
    assert _gap_positions([T0]) == [] and _gap_positions([T0, T0]) == []
    times = _after([40, 40, 40, 40, 401, 40])
    xs, ys = _broken(times, [float(n) for n in range(7)], [5])
    assert xs[5] == times[4] + (times[5] - times[4]) / 2 and math.isnan(ys[5])
    assert xs[:5] + xs[6:] == times and ys[:5] + ys[6:] == [float(n) for n in range(7)]


def test_the_help_of_last_says_what_the_chart_draws() -> None:
    # --last is the table's; the chart draws every window since --since, up to a cap
    # the help must name as the code has it.
    [last] = [o for o in REPORT_OPTIONS if o.flag == "--last"]
    assert f"como mucho las {CHART_MAX_WINDOWS:,} últimas".replace(",", ".") in last.help
