"""The KPI report script against a real MongoDB-wire server, on a known data set."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bson.decimal128 import Decimal128

from tests.support.audit import KPIS, RAW
from tests.support.pipeline import REPORT, Pipeline

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)

RAW_DOCS = [
    # server, cpu, memory, disk, network, errors
    ("web01", 10.0, 50.0, 1.0, 10.0, 0),
    ("web01", 20.0, 60.0, 2.0, 20.0, 1),
    ("web01", 30.0, 70.0, 3.0, 30.0, 2),
    ("db01", 90.0, 20.0, 0.5, 5.0, 3),
    ("db01", 95.0, 20.0, 0.5, 5.0, 0),
    ("db01", 100.0, 20.0, 0.5, 5.0, 0),
]


def _load(p: Pipeline) -> None:
    db = p.db
    db[RAW].insert_many([{
        "_id": f"00000000-0000-4000-8000-00000000000{i}", "server_id": server,
        "metrics": {"cpu_percent": cpu, "memory_percent": mem, "disk_io_mbps": disk, "network_mbps": net,
                    "error_count": errors},
        "timestamp": T0 + timedelta(seconds=i), "kafka": {"topic": "t", "partition": 0, "offset": i},
    } for i, (server, cpu, mem, disk, net, errors) in enumerate(RAW_DOCS)])
    windows = []
    for n in range(3):
        windows.append({
            "_id": f"t:0:{n * 20}", "window_start": T0 + timedelta(minutes=n + 1) - timedelta(seconds=40),
            "window_end": T0 + timedelta(minutes=n + 1), "message_count": 20,
            "kpis": {"cpu_percent_avg": 40.0 + n * 25.125, "memory_percent_avg": 55.5, "disk_io_mbps_avg": 25.0,
                     "network_mbps_avg": 50.25, "error_count_sum": n * 6, "tasa_procesamiento_msg_seg": 0.5},
            "alerts": [{"kpi": "cpu_percent_avg", "value": 90.25, "threshold": 80, "message": "x"},
                       {"kpi": "error_count_sum", "value": 12, "threshold": 10, "message": "y"}] if n == 2 else [],
            "kafka": {"topic": "t", "partition": 0, "first_offset": n * 20, "last_offset": n * 20 + 19},
        })
    db[KPIS].insert_many(windows)


EXPECTED_TABLE = """\
Últimas 2 ventanas KPI (de 3)

fin de ventana (UTC)  partición  mensajes  CPU %  memoria %  disco MB/s  red Mbps  errores  tasa msg/s  alertas
--------------------  ---------  --------  -----  ---------  ----------  --------  -------  ----------  -----------
2026-11-26 10:02:00           0        20  65.12      55.50       25.00     50.25        6        0.50  -
2026-11-26 10:03:00           0        20  90.25      55.50       25.00     50.25       12        0.50  CPU,errores
"""

EXPECTED_SUMMARY = """\
Resumen por servidor (todos los mensajes guardados), calculado por MongoDB

servidor  mensajes  CPU % media  CPU % máx  memoria % media  disco MB/s media  red Mbps media  errores  último mensaje (UTC)
--------  --------  -----------  ---------  ---------------  ----------------  --------------  -------  --------------------
db01             3        95.00     100.00            20.00              0.50            5.00        3   2026-11-26 10:00:05
web01            3        20.00      30.00            60.00              2.00           20.00        3   2026-11-26 10:00:02
"""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_prints_the_exact_table_and_summary_and_draws_the_chart(pipeline: Pipeline, tmp_path: Path) -> None:
    _load(pipeline)
    chart = tmp_path / "kpis.png"
    # A fresh matplotlib cache, as on a user's first run: its INFO chatter stays out.
    done = pipeline.run(REPORT, "--last", "2", "--output", str(chart),
                        env=pipeline.env(MPLCONFIGDIR=str(tmp_path / "matplotlib")))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (EXPECTED_TABLE + "\n" + EXPECTED_SUMMARY
                           + f"\nGráfico de 3 ventanas guardado en {chart} (1200x900 px)\n")
    assert chart.stat().st_size > 10_000
    assert _png_size(chart) == (1200, 900)


def test_documents_of_another_version_of_the_exercise_are_left_out_with_a_note(pipeline: Pipeline,
                                                                              tmp_path: Path) -> None:
    # The collection names are fixed by the course: a student's database may still hold
    # what the usual version of the exercise wrote there (the report used to stop on them).
    _load(pipeline)
    pipeline.db[KPIS].insert_many([
        {"timestamp": T0 + timedelta(hours=1), "cpu_percent_avg": 50.0, "error_count_sum": 3,
         "tasa_procesamiento_msg_seg": 12.0},
        {"window_end": T0 + timedelta(hours=2), "kpis": {"cpu_percent_avg": "alto"}},
    ])
    pipeline.db[RAW].insert_one({"server_id": "web01", "timestamp": "2026-11-26T11:00:00Z",
                                 "metrics": {"cpu_percent": 99.0, "error_count": 7}})
    # One of ours, edited by hand: text where the summary averages (it stopped with a traceback).
    edited = pipeline.db[RAW].find_one({"server_id": "web01"})
    pipeline.db[RAW].insert_one({**edited, "_id": "editado", "metrics": {**edited["metrics"], "cpu_percent": "alto"}})
    # And a window edited into a Decimal128 average (it could not be formatted: a traceback).
    window = pipeline.db[KPIS].find_one({"kafka.first_offset": 0})
    pipeline.db[KPIS].insert_one({**window, "_id": "editada", "kpis": {**window["kpis"],
                                                                     "cpu_percent_avg": Decimal128("45.5")}})
    chart = tmp_path / "kpis.png"
    done = pipeline.run(REPORT, "--last", "2", "--output", str(chart))
    assert done.returncode == 0, done.stderr
    note = (f"Nota: se dejan fuera 3 documentos de {pipeline.database}.{KPIS} y 2 de {pipeline.database}.{RAW}, "
            "sin la forma que escribe este pipeline (¿de otra versión del ejercicio, con las mismas colecciones?).")
    assert done.stdout == (EXPECTED_TABLE + "\n" + EXPECTED_SUMMARY + "\n" + note + "\n"
                           + f"\nGráfico de 3 ventanas guardado en {chart} (1200x900 px)\n")
    assert _png_size(chart) == (1200, 900)


def test_since_narrows_windows_and_summary(pipeline: Pipeline, tmp_path: Path) -> None:
    _load(pipeline)
    done = pipeline.run(REPORT, "--since", "2026-11-26T10:00:03", "--chart", "no")
    assert done.returncode == 0, done.stderr
    assert "Últimas 3 ventanas KPI (de 3)" in done.stdout
    assert "mensajes desde 2026-11-26 10:00:03 UTC" in done.stdout
    assert "\ndb01 " in done.stdout and "\nweb01 " not in done.stdout
    assert "Gráfico" not in done.stdout and not list(tmp_path.glob("*.png"))


def test_nothing_to_show_is_said_clearly(pipeline: Pipeline, tmp_path: Path) -> None:
    chart = tmp_path / "none.png"
    done = pipeline.run(REPORT, "--output", str(chart))
    assert done.returncode == 0, done.stderr
    assert "No hay ventanas KPI que mostrar." in done.stdout
    assert "no hay mensajes" in done.stdout
    assert "No se dibuja el gráfico" in done.stdout and not chart.exists()
    # Nothing at all under that name: a name written wrong is likelier than a consumer not running.
    assert f"La base de datos {pipeline.database} no existe en este MongoDB" in done.stdout
    assert "¿MONGODB_DATABASE (--database) mal escrito, o el consumidor no ha arrancado nunca" in done.stdout

    pipeline.db["otra_cosa"].insert_one({"x": 1})
    done = pipeline.run(REPORT, "--chart", "no", "--kpi-collection", "kpis_typo")
    assert (f"La base de datos {pipeline.database} no tiene ni kpis_typo ni system_metrics_raw_iabd06 "
            "(tiene: otra_cosa): ¿MONGODB_KPI_COLLECTION o MONGODB_RAW_COLLECTION mal escritos?") in done.stdout

    pipeline.db["system_metrics_raw_iabd06"].insert_one({"x": 1})  # the collections are there: no note
    done = pipeline.run(REPORT, "--chart", "no")
    assert "La base de datos" not in done.stdout and "No hay ventanas KPI que mostrar." in done.stdout


def test_an_unwritable_output_is_one_clear_error(pipeline: Pipeline) -> None:
    _load(pipeline)
    # A folder written wrong is a bad setting, known before anything is read.
    done = pipeline.run(REPORT, "--output", "no-such-dir/x.png")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "informe_kpis_iabd06.py: error: configuración no válida: --output: la carpeta 'no-such-dir' no existe"]
    # A folder that refuses the file is known only on writing (root writes anywhere a
    # chmod forbids, so /proc, which takes no new files, stands for it): exit 1, one line.
    done = pipeline.run(REPORT, "--output", "/proc/informe.png")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "No se pudo escribir el gráfico en /proc/informe.png" in done.stderr


def test_windows_closed_together_are_listed_in_offset_order(pipeline: Pipeline, tmp_path: Path) -> None:
    # A drained backlog: one batch closes many windows with the same window_end.
    end = T0 + timedelta(minutes=5)
    pipeline.db[KPIS].insert_many([{
        "_id": f"t:0:{n * 20}", "window_start": end - timedelta(seconds=1), "window_end": end,
        "message_count": 20, "first_event_time": T0 + timedelta(seconds=n),
        "last_event_time": T0 + timedelta(seconds=n, milliseconds=500),
        "kpis": {"cpu_percent_avg": float(n), "memory_percent_avg": 1.0, "disk_io_mbps_avg": 1.0,
                 "network_mbps_avg": 1.0, "error_count_sum": 0, "tasa_procesamiento_msg_seg": 20.0},
        "alerts": [], "kafka": {"topic": "t", "partition": 0, "first_offset": n * 20, "last_offset": n * 20 + 19},
    } for n in (3, 0, 4, 1, 2)])  # stored in no particular order
    chart = tmp_path / "kpis.png"
    done = pipeline.run(REPORT, "--last", "3", "--output", str(chart))
    assert done.returncode == 0, done.stderr
    cpu_column = [line.split()[4] for line in done.stdout.splitlines()[4:7]]
    assert cpu_column == ["2.00", "3.00", "4.00"], done.stdout  # the last three, oldest first
    assert _png_size(chart) == (1200, 900)


def test_a_reader_that_stops_early_gets_no_traceback(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.db[KPIS].insert_many([{
        "_id": f"t:0:{n * 20}", "window_start": T0, "window_end": T0 + timedelta(seconds=n), "message_count": 20,
        "kpis": {"cpu_percent_avg": 1.0, "memory_percent_avg": 1.0, "disk_io_mbps_avg": 1.0,
                 "network_mbps_avg": 1.0, "error_count_sum": 0, "tasa_procesamiento_msg_seg": 20.0},
        "alerts": [], "kafka": {"topic": "t", "partition": 0, "first_offset": n * 20, "last_offset": n * 20 + 19},
    } for n in range(1000)])
    # Like `informe_kpis_iabd06.py | head -1`: the pipe closes after the first bytes,
    # and the table (~110 KB) does not fit in the pipe's buffer.
    process = subprocess.Popen([sys.executable, str(REPORT), "--last", "1000", "--chart", "no"],
                               cwd=pipeline.workdir,
                               env=pipeline.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               bufsize=0)
    assert process.stdout is not None and process.stdout.read(10)
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode in (0, 1)
    assert b"Traceback" not in err and b"Error inesperado" not in err, err.decode()


def test_audit_finds_the_pipelines_windows_exact_and_names_each_damaged_one(pipeline: Pipeline) -> None:
    pipeline.produce(12)  # 60 messages: 3 windows
    pipeline.consume()
    done = pipeline.run(REPORT, "--chart", "no", "--audit", "yes")
    assert done.returncode == 0, done.stderr
    assert ("Auditoría de 3 ventanas KPI (60 mensajes comprobados) contra system_metrics_raw_iabd06: todas cuadran."
            in done.stdout), done.stdout

    # A KPI changed by hand in one window, a raw message deleted from another, and the
    # list of messages of the first one replaced by a number.
    db = pipeline.db
    db[KPIS].update_one({"kafka.first_offset": 0}, {"$set": {"message_uuids": 5}})
    db[KPIS].update_one({"kafka.first_offset": 20}, {"$inc": {"kpis.memory_percent_avg": 0.01}})
    last = db[KPIS].find_one({"kafka.first_offset": 40})
    db[RAW].delete_one({"_id": last["message_uuids"][7]})
    done = pipeline.run(REPORT, "--chart", "no", "--audit", "yes")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Auditoría de 3 ventanas KPI (20 mensajes comprobados) contra system_metrics_raw_iabd06: 3 problemas en 3 ventanas" \
        in done.stdout, done.stdout
    assert f"  - ventana {pipeline.topic}:0:0: no tiene message_uuids" in done.stdout
    topic = pipeline.topic
    assert f"  - ventana {topic}:0:20: memory_percent_avg guardado " in done.stdout
    assert f"  - ventana {topic}:0:40: 1 de sus mensajes no están en raw (p. ej. {last['message_uuids'][7]})" \
        in done.stdout
    [error] = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert error.endswith("La auditoría encontró 3 problemas en 3 ventanas")


def _windows_with_a_gap(error_sum: int) -> list[dict]:
    """3 live windows a minute apart, an hour with none, then 300 windows of a
    backlog drained at once (their events 10 ms apart)."""
    times = [T0 + timedelta(minutes=n) for n in range(3)]
    times += [T0 + timedelta(hours=1, milliseconds=10 * n) for n in range(300)]
    return [{
        "_id": f"t:0:{n * 20}", "window_start": t, "window_end": t, "message_count": 20,
        "first_event_time": t, "last_event_time": t,
        "kpis": {"cpu_percent_avg": 30.0, "memory_percent_avg": 70.0, "disk_io_mbps_avg": 1.0,
                 "network_mbps_avg": 1.0, "error_count_sum": error_sum, "tasa_procesamiento_msg_seg": 20.0},
        "alerts": [], "kafka": {"topic": "t", "partition": 0, "first_offset": n * 20, "last_offset": n * 20 + 19},
    } for n, t in enumerate(times)]


def _pixels_like(chart: Path, rgb: tuple[int, int, int], rows: tuple[float, float],
                 columns: tuple[float, float] = (0.0, 1.0)) -> int:
    """How many pixels of that colour (give or take) in a band of the chart, given as
    fractions of its height and width."""
    import matplotlib.image

    image = matplotlib.image.imread(str(chart))[..., :3] * 255
    height, width = image.shape[:2]
    band = image[int(rows[0] * height):int(rows[1] * height), int(columns[0] * width):int(columns[1] * width)]
    return int((abs(band - rgb).sum(axis=-1) < 40).sum())


def test_the_chart_shows_the_errors_of_a_drained_backlog_and_no_line_across_a_gap(pipeline: Pipeline,
                                                                                 tmp_path: Path) -> None:
    pipeline.db["kpis_errores"].insert_many(_windows_with_a_gap(error_sum=5))
    pipeline.db["kpis_sin_errores"].insert_many(_windows_with_a_gap(error_sum=0))
    charts = {}
    for name in ("kpis_errores", "kpis_sin_errores"):
        charts[name] = tmp_path / f"{name}.png"
        done = pipeline.run(REPORT, "--kpi-collection", name, "--output", str(charts[name]))
        assert done.returncode == 0, done.stderr
    red, blue = (214, 39, 40), (31, 119, 180)  # matplotlib's tab:red (error bars), tab:blue (CPU)
    errors_panel = (0.52, 0.70)
    # The bars of 300 windows 10 ms apart, on an axis of an hour: visible, not 0.01 pixels wide.
    bars = _pixels_like(charts["kpis_errores"], red, errors_panel) - _pixels_like(charts["kpis_sin_errores"], red,
                                                                                   errors_panel)
    assert bars > 300, bars
    # No CPU line drawn across the hour without windows (at most the legend's sample).
    across_the_gap = _pixels_like(charts["kpis_errores"], blue, rows=(0.04, 0.24), columns=(0.3, 0.7))
    assert across_the_gap < 150, across_the_gap
