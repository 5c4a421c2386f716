"""The KPI report: recent windows, a per-server summary, and a chart.

* :func:`recent_windows` reads the KPI collection (newest first, limited);
* :func:`server_summary` asks MongoDB for the per-server figures with an
  aggregation pipeline over the raw collection (the database does the maths);
* every query reads only documents of the shape this pipeline writes
  (:data:`WINDOW_SHAPE`, :data:`MESSAGE_SHAPE`): the collection names are fixed by
  the course, so a database shared with another version of the exercise holds
  documents of other shapes; :func:`foreign_documents` counts them, for a note;
* :func:`format_windows` / :func:`format_summary` turn them into aligned text tables
  (pure functions, so their output is tested exactly);
* :func:`draw_chart` writes a PNG of the KPIs over time with matplotlib's Agg
  backend (no screen needed): CPU and memory averages, disk and network averages,
  error sums and processing rate, one point per window; windows with alerts are
  marked in red;
* :func:`audit_stored_windows` (``--audit yes``) reads every window with the raw
  documents it names, a chunk at a time, for :mod:`metrics_pipeline.audit`;
  :func:`format_audit` says what it found.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

from bson.decimal128 import Decimal128
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from metrics_pipeline.audit import RAW_FIELDS, AuditResult, audit_windows
from metrics_pipeline.kpis import WindowKpis
from metrics_pipeline.settings import MongoSettings

CHART_SIZE_INCHES = (12.0, 9.0)
CHART_DPI = 100  # 1200 x 900 pixels
CHART_MAX_WINDOWS = 2000
# A bar is at least this fraction of the time axis wide (about 2 pixels at 1200 px):
# a backlog drained at once puts hundreds of windows within a second, and a bar as wide
# as their gap would vanish beside a long gap elsewhere on the axis.
MIN_BAR_FRACTION = 1 / 600
# Lines are broken where no window closed for this many typical gaps (and at least
# GAP_MIN_SECONDS): a consumer stopped for an hour has no data then, not a straight line.
GAP_FACTOR = 10
GAP_MIN_SECONDS = 300.0
AUDIT_CHUNK_MESSAGES = 200  # raw documents read per query of the audit (see audit_stored_windows)
AUDIT_PROBLEMS_SHOWN = 20
SERVER_COLUMN_WIDTH = 40  # longer server ids are cut in the summary table (not in MongoDB)

_ALERT_SHORT = {"cpu_percent_avg": "CPU", "memory_percent_avg": "memoria", "error_count_sum": "errores"}


# The fields the report reads, with their types (see the module doc).
# A document edited by hand may hold text, or a Decimal128 that no format can print
# with two decimals, where the report counts, sorts and formats numbers.
_INTEGER = {"$type": ["int", "long"]}
_FIGURE = {"$type": ["int", "long", "double"]}
WINDOW_SHAPE: dict[str, Any] = {
    "window_end": {"$type": "date"}, "message_count": _INTEGER,
    "kafka.partition": _INTEGER, "kafka.first_offset": _INTEGER,
    **{f"kpis.{field.name}": _FIGURE for field in fields(WindowKpis)},
    # The consumer stores an error sum beyond 64 bits as a Decimal128.
    "kpis.error_count_sum": {"$type": ["int", "long", "double", "decimal"]},
}
MESSAGE_SHAPE: dict[str, Any] = {
    "server_id": {"$type": "string"}, "timestamp": {"$type": "date"}, "kafka": {"$type": "object"},
    **{f"metrics.{name}": _FIGURE
       for name in ("cpu_percent", "memory_percent", "disk_io_mbps", "network_mbps", "error_count")},
}


def _shaped(shape: dict[str, Any], field: str, since: datetime | None) -> dict[str, Any]:
    """``shape``, and ``field`` >= ``since`` when there is one."""
    if since is None:
        return shape
    return {**shape, field: {**shape[field], "$gte": since}}


def recent_windows(kpis: Collection, since: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The most recent ``limit`` windows (since ``since``), oldest first."""
    # Windows closed by one batch share their window_end: offsets break the tie.
    order = [("window_end", -1), ("kafka.partition", -1), ("kafka.first_offset", -1)]
    query = _shaped(WINDOW_SHAPE, "window_end", since)
    cursor = kpis.find(query, {"message_uuids": 0}).sort(order).limit(limit)
    return list(cursor)[::-1]


def count_windows(kpis: Collection, since: datetime | None) -> int:
    return kpis.count_documents(_shaped(WINDOW_SHAPE, "window_end", since))


def foreign_documents(kpis: Collection, raw: Collection) -> tuple[int, int]:
    """How many documents of each collection the report leaves out (module doc)."""
    return (kpis.count_documents({"$nor": [WINDOW_SHAPE]}), raw.count_documents({"$nor": [MESSAGE_SHAPE]}))


def server_summary(raw: Collection, since: datetime | None) -> list[dict[str, Any]]:
    """Per-server figures computed by MongoDB (aggregation pipeline)."""
    pipeline: list[dict[str, Any]] = [{"$match": _shaped(MESSAGE_SHAPE, "timestamp", since)}]
    pipeline += [
        {"$group": {
            "_id": "$server_id",
            "messages": {"$sum": 1},
            "cpu_avg": {"$avg": "$metrics.cpu_percent"},
            "cpu_max": {"$max": "$metrics.cpu_percent"},
            "memory_avg": {"$avg": "$metrics.memory_percent"},
            "disk_avg": {"$avg": "$metrics.disk_io_mbps"},
            "network_avg": {"$avg": "$metrics.network_mbps"},
            "errors": {"$sum": "$metrics.error_count"},
            "first": {"$min": "$timestamp"},
            "last": {"$max": "$timestamp"},
        }},
        {"$sort": {"_id": 1}},
    ]
    return list(raw.aggregate(pipeline))


def _utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell_width(text: str) -> int:
    """Columns a cell takes on a terminal: a wide character (CJK, most emoji) takes
    two, a combining mark none, so the columns after it still line up."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> list[str]:
    """Aligned columns: text columns (``left``) to the left, numbers to the right."""
    widths = [max(_cell_width(h), *(_cell_width(r[i]) for r in rows)) if rows else _cell_width(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        pads = [" " * (w - _cell_width(c)) for c, w in zip(cells, widths)]
        parts = [c + pad if i in left else pad + c for i, (c, pad) in enumerate(zip(cells, pads))]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _short(text: str, width: int = SERVER_COLUMN_WIDTH) -> str:
    """A server id as a table cell: one line (a line break or other control character
    is shown escaped, ``\\n``), quoted when it starts or ends with blanks (``"web01 "``
    is another server than ``web01``), and cut at ``width`` columns (a host name may
    have 253 characters)."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if text != text.strip():
        text = f'"{text}"'
    if _cell_width(text) <= width:
        return text
    kept, used = [], 0
    for c in text:
        used += _cell_width(c)
        if used > width - 1:
            break
        kept.append(c)
    return "".join(kept) + "…"


def windows_phrase(count: int) -> str:
    """'1 ventana', '3 ventanas'."""
    return f"{count} ventana" if count == 1 else f"{count} ventanas"


def _fixed(value: float) -> str:
    """Two decimals; scientific notation for values no screen column can hold (SPEC §2
    sets no upper bound on disk and network rates)."""
    return f"{value:.2f}" if abs(value) < 1e12 else f"{value:.4g}"


def _alerted_kpis(window: dict[str, Any]) -> list[Any]:
    """The KPIs of a window's ``alerts`` (a document edited by hand may hold anything there)."""
    alerts = window.get("alerts")
    return [a["kpi"] for a in alerts if isinstance(a, dict) and "kpi" in a] if isinstance(alerts, list) else []


def format_windows(windows: Sequence[dict[str, Any]], total: int) -> str:
    if not windows:
        return "No hay ventanas KPI que mostrar."
    rows = []
    for w in windows:
        k = w["kpis"]
        alerts = ",".join(_ALERT_SHORT.get(kpi, str(kpi)) for kpi in _alerted_kpis(w)) or "-"
        rows.append([
            _utc(w["window_end"]), str(w["kafka"]["partition"]), str(w["message_count"]),
            f"{k['cpu_percent_avg']:.2f}", f"{k['memory_percent_avg']:.2f}", _fixed(k["disk_io_mbps_avg"]),
            _fixed(k["network_mbps_avg"]), str(k["error_count_sum"]), f"{k['tasa_procesamiento_msg_seg']:.2f}",
            alerts,
        ])
    headers = ["fin de ventana (UTC)", "partición", "mensajes", "CPU %", "memoria %", "disco MB/s",
               "red Mbps", "errores", "tasa msg/s", "alertas"]
    lines = _table(headers, rows, left=(0, len(headers) - 1))
    shown = "Última ventana KPI" if len(windows) == 1 else f"Últimas {len(windows)} ventanas KPI"
    title = f"{shown} (de {total})"
    return "\n".join([title, "", *lines])


def format_summary(summary: Sequence[dict[str, Any]], since: datetime | None) -> str:
    scope = f"mensajes desde {_utc(since)} UTC" if since is not None else "todos los mensajes guardados"
    if not summary:
        return f"Resumen por servidor ({scope}): no hay mensajes."
    rows = [[
        _short(str(s["_id"])), str(s["messages"]), f"{s['cpu_avg']:.2f}", f"{s['cpu_max']:.2f}",
        f"{s['memory_avg']:.2f}", _fixed(s["disk_avg"]), _fixed(s["network_avg"]), str(s["errors"]), _utc(s["last"]),
    ] for s in summary]
    headers = ["servidor", "mensajes", "CPU % media", "CPU % máx", "memoria % media", "disco MB/s media",
               "red Mbps media", "errores", "último mensaje (UTC)"]
    return "\n".join([f"Resumen por servidor ({scope}), calculado por MongoDB", "", *_table(headers, rows)])


def foreign_note(foreign: tuple[int, int], mongo: MongoSettings) -> str:
    """The note for what foreign_documents() found."""
    parts: list[str] = []
    for count, collection in zip(foreign, (mongo.kpi_collection, mongo.raw_collection)):
        if count:
            noun = "" if parts else (" documento" if count == 1 else " documentos")
            parts.append(f"{count}{noun} de {mongo.database}.{collection}")
    return (f"Nota: se dejan fuera {' y '.join(parts)}, sin la forma que escribe este pipeline "
            "(¿de otra versión del ejercicio, con las mismas colecciones?).")


SYSTEM_DATABASES = ("admin", "config", "local")


def missing_collections_note(database: Database, mongo: MongoSettings) -> str | None:
    """When there is nothing to show: a note if neither the KPI nor the raw collection
    exists. The consumer creates both when it starts, so a name written wrong (the
    database, a collection) is then likelier than a consumer not running. None when
    they exist, or when this user may not list what there is."""
    try:
        names = set(database.list_collection_names())
        if mongo.kpi_collection in names or mongo.raw_collection in names:
            return None
        if names:
            return (f"La base de datos {mongo.database} no tiene ni {mongo.kpi_collection} ni "
                    f"{mongo.raw_collection} (tiene: {_first_names(names)}): ¿MONGODB_KPI_COLLECTION o "
                    "MONGODB_RAW_COLLECTION mal escritos?")
        others = set(database.client.list_database_names()).difference(SYSTEM_DATABASES)
    except PyMongoError:
        return None
    there = f" (hay: {_first_names(others)})" if others else ""
    return (f"La base de datos {mongo.database} no existe en este MongoDB{there}: ¿MONGODB_DATABASE "
            "(--database) mal escrito, o el consumidor no ha arrancado nunca contra ella?")


def _first_names(names: set[str], shown: int = 10) -> str:
    ordered = sorted(names)
    more = f" y {len(ordered) - shown} más" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


def _event_time(window: dict[str, Any]) -> datetime:
    last = window.get("last_event_time")
    return last if isinstance(last, datetime) else window["window_end"]


def draw_chart(windows: Sequence[dict[str, Any]], path: str, title: str) -> tuple[int, int]:
    """Write the PNG; returns its size in pixels.

    The x axis is each window's last *event* time (the servers' clock), not the
    consumer's: a backlog drained in a few batches closes hundreds of windows at the
    same instant, but their messages were measured over the whole period.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = sorted(windows, key=lambda w: (_event_time(w), w["kafka"]["partition"], w["kafka"]["first_offset"]))
    times = [_event_time(w) for w in windows]
    k = [w["kpis"] for w in windows]
    alerted = [i for i, w in enumerate(windows) if _alerted_kpis(w)]

    fig, axes = plt.subplots(4, 1, figsize=CHART_SIZE_INCHES, dpi=CHART_DPI, sharex=True, layout="constrained")
    fig.suptitle(title)
    cpu = [x["cpu_percent_avg"] for x in k]
    memory = [x["memory_percent_avg"] for x in k]
    gaps = _gap_positions(times)
    axes[0].plot(*_broken(times, cpu, gaps), marker=".", label="CPU media (%)")
    axes[0].plot(*_broken(times, memory, gaps), marker=".", label="memoria media (%)")
    if alerted:
        axes[0].scatter([times[i] for i in alerted], [max(cpu[i], memory[i]) for i in alerted],
                        color="red", zorder=3, label="ventana con alerta")
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("%")
    axes[1].plot(*_broken(times, [x["disk_io_mbps_avg"] for x in k], gaps), marker=".", label="disco medio (MB/s)")
    axes[1].plot(*_broken(times, [x["network_mbps_avg"] for x in k], gaps), marker=".", label="red media (Mbps)")
    axes[1].set_ylabel("MB/s · Mbps")
    width = _bar_width(times)
    axes[2].bar(times, [_plain_number(x["error_count_sum"]) for x in k], width=width, color="tab:red",
                label="errores (suma)")
    axes[2].set_ylabel("errores")
    rates = [x["tasa_procesamiento_msg_seg"] for x in k]
    axes[3].plot(*_broken(times, rates, gaps), marker=".", color="tab:green", label="tasa de procesamiento (msg/s)")
    if rates and min(rates) > 0 and max(rates) / min(rates) > 50:
        axes[3].set_yscale("log")  # a drained backlog (thousands) next to live traffic (units)
    axes[3].set_ylabel("msg/s")
    axes[3].set_xlabel("hora del último mensaje de la ventana (UTC, reloj de los servidores)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")  # where it hides the fewest points
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    axes[3].xaxis.set_major_locator(locator)
    axes[3].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return int(CHART_SIZE_INCHES[0] * CHART_DPI), int(CHART_SIZE_INCHES[1] * CHART_DPI)


def _plain_number(value: Any) -> float | int:
    """An error sum beyond 64 bits is stored as Decimal128 (see documents.py)."""
    return float(value.to_decimal()) if isinstance(value, Decimal128) else value


def _typical_gap(times: Sequence[datetime]) -> float | None:
    """The median of the positive gaps between consecutive windows, in seconds."""
    gaps = sorted((b - a).total_seconds() for a, b in zip(times, times[1:]) if b > a)
    return gaps[len(gaps) // 2] if gaps else None


def _bar_width(times: Sequence[datetime]) -> float:
    """Bar width in days (matplotlib's date unit): most of the typical gap between
    windows, and at least MIN_BAR_FRACTION of the axis."""
    if len(times) < 2:
        return 1 / 86400
    typical = _typical_gap(times) or 1.0
    span = (max(times) - min(times)).total_seconds()
    return max(typical * 0.8, span * MIN_BAR_FRACTION, 0.001) / 86400


def _gap_positions(times: Sequence[datetime]) -> list[int]:
    """Indexes i where the gap from times[i-1] to times[i] is long (see GAP_FACTOR)."""
    typical = _typical_gap(times)
    if typical is None:
        return []
    limit = max(GAP_FACTOR * typical, GAP_MIN_SECONDS)
    return [i for i in range(1, len(times)) if (times[i] - times[i - 1]).total_seconds() > limit]


def _broken(times: Sequence[datetime], values: Sequence[float], gaps: Sequence[int]
            ) -> tuple[list[datetime], list[float]]:
    """``times`` and ``values`` with a NaN point in each gap: matplotlib breaks the line there."""
    xs, ys = list(times), list(values)
    for i in reversed(gaps):
        xs.insert(i, times[i - 1] + (times[i] - times[i - 1]) / 2)
        ys.insert(i, float("nan"))
    return xs, ys


def chart_windows(kpis: Collection, since: datetime | None) -> list[dict[str, Any]]:
    """The windows the chart shows: all since ``since``, at most the latest CHART_MAX_WINDOWS."""
    return recent_windows(kpis, since, CHART_MAX_WINDOWS)


def audit_stored_windows(kpis: Collection, raw: Collection, since: datetime | None) -> AuditResult:
    """Audit every window (since ``since``) against the raw documents it names,
    reading them ``AUDIT_CHUNK_MESSAGES`` at a time (one ``$in`` on ``_id`` per
    chunk): memory holds one chunk, plus the ids already seen (to find a message in
    two windows). Small chunks, because SecantusDB's ``$in`` slows down with the
    length of its list (measured: 100 ids 0.03 s, 2,000 ids 6.8 s); MongoDB looks
    each id up in the ``_id`` index. 20,000 messages: 13 s against SecantusDB."""
    result = AuditResult()
    order = [("window_end", 1), ("kafka.partition", 1), ("kafka.first_offset", 1)]
    chunk: list[dict[str, Any]] = []
    ids: list[str] = []  # the text ids the chunk's windows name (audit.py judges the rest)

    def audit_chunk() -> None:
        found = {doc["_id"]: doc for doc in raw.find({"_id": {"$in": ids}}, RAW_FIELDS)} if ids else {}
        audit_windows(chunk, found, result)
        chunk.clear()
        ids.clear()

    for window in kpis.find(_shaped(WINDOW_SHAPE, "window_end", since)).sort(order):
        chunk.append(window)
        named = window.get("message_uuids")
        if isinstance(named, list):
            ids.extend(i for i in named if isinstance(i, str))
        if len(ids) >= AUDIT_CHUNK_MESSAGES:
            audit_chunk()
    if chunk:
        audit_chunk()
    return result


def format_audit(result: AuditResult, raw_collection: str) -> str:
    if not result.windows:
        return "Auditoría: no hay ventanas KPI que auditar."
    head = (f"Auditoría de {windows_phrase(result.windows)} KPI ({result.messages} mensajes comprobados) "
            f"contra {raw_collection}")
    if not result.problems:
        return (head + ": todas cuadran. Cada una nombra mensajes que están en raw, de su partición y en "
                "orden; cada KPI es igual a su recálculo desde ellos y ningún mensaje está en dos ventanas.")
    lines = [f"{head}: {len(result.problems)} problemas en {windows_phrase(len(result.windows_with_problems))}"]
    lines += [f"  - {problem}" for problem in result.problems[:AUDIT_PROBLEMS_SHOWN]]
    if len(result.problems) > AUDIT_PROBLEMS_SHOWN:
        lines.append(f"  … y {len(result.problems) - AUDIT_PROBLEMS_SHOWN} más")
    return "\n".join(lines)
