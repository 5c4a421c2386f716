#!/usr/bin/env python3
"""KPI report: the last windows as a table, a per-server summary and a PNG chart.

Reads MongoDB with the same settings as the consumer (MONGODB_URI, database,
collections). --last N windows in the table, --since DATE to look only at recent
data, --output for the chart's file, --audit yes to check every window against the
raw messages it names. Run with --help for every setting.
"""

from __future__ import annotations

from metrics_pipeline.shutdown import exit_at_once_on_signal

if __name__ == "__main__":
    exit_at_once_on_signal()  # a Ctrl-C while the libraries below load: exit 0, no traceback

import logging
import threading
from collections.abc import Sequence

from pymongo.errors import PyMongoError

from metrics_pipeline import report
from metrics_pipeline.cli import exit_with
from metrics_pipeline.errors import RunFailure
from metrics_pipeline.log_setup import configure_logging
from metrics_pipeline.settings import load_report_settings
from metrics_pipeline.storage import MetricsStore, open_client, short_reason, wait_until_reachable

log = logging.getLogger("informe_kpis_iabd06")


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_report_settings(argv)
    configure_logging(settings.log_level, settings.secrets)
    client = open_client(settings.mongo, "informe_kpis_iabd06")
    wait_until_reachable(client, settings.mongo, threading.Event())
    store = MetricsStore(client, settings.mongo)

    try:
        windows = report.recent_windows(store.kpis, settings.since, settings.last)
        total = report.count_windows(store.kpis, settings.since)
        summary = report.server_summary(store.raw, settings.since)
        shown = report.chart_windows(store.kpis, settings.since) if settings.chart and windows else []
        foreign = report.foreign_documents(store.kpis, store.raw)
        audited = report.audit_stored_windows(store.kpis, store.raw, settings.since) if settings.audit else None
    except PyMongoError as exc:
        raise RunFailure(f"MongoDB falló al leer los datos del informe: {short_reason(exc)}") from None
    print(report.format_windows(windows, total))
    print()
    print(report.format_summary(summary, settings.since))
    if any(foreign):
        print("\n" + report.foreign_note(foreign, settings.mongo))

    if not windows and not summary and (missing := report.missing_collections_note(store.database, settings.mongo)):
        print("\n" + missing)
    if not windows:
        print(f"\nNo hay ventanas KPI en {settings.mongo.database}.{settings.mongo.kpi_collection}"
              + (" desde esa fecha" if settings.since else "") + ": ¿está el consumidor en marcha? "
              "No se dibuja el gráfico.")
    elif settings.chart:
        title = f"KPIs por ventana · {settings.mongo.database} ({report.windows_phrase(len(shown))})"
        try:
            width, height = report.draw_chart(shown, settings.output, title)
        except OSError as exc:
            raise RunFailure(f"No se pudo escribir el gráfico en {settings.output}: {exc.strerror or exc}") from None
        except (ValueError, OverflowError) as exc:  # values near the largest float
            raise RunFailure(f"No se pudo dibujar el gráfico: hay KPIs fuera de lo que matplotlib puede "
                             f"representar ({exc})") from None
        print(f"\nGráfico de {report.windows_phrase(len(shown))} guardado en {settings.output} ({width}x{height} px)")
    store.close()
    if audited is not None:
        print("\n" + report.format_audit(audited, settings.mongo.raw_collection))
        if audited.problems:
            raise RunFailure(f"La auditoría encontró {len(audited.problems)} problemas en "
                             f"{report.windows_phrase(len(audited.windows_with_problems))}")
    return 0


if __name__ == "__main__":
    exit_with(main, "informe_kpis_iabd06.py")
