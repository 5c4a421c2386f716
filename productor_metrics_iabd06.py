#!/usr/bin/env python3
"""Producer: sends server metrics to the Kafka topic system-metrics-topic-iabd06.

Reads its settings (flags, environment, .env), makes sure Kafka answers and the
topic exists, then sends one JSON message per server every --interval seconds
until stopped (Ctrl-C / SIGTERM) or until --rounds rounds are sent.
Run with --help for every setting. The logic lives in the metrics_pipeline package.
"""

from __future__ import annotations

from metrics_pipeline.shutdown import exit_at_once_on_signal

if __name__ == "__main__":
    exit_at_once_on_signal()  # a Ctrl-C while the libraries below load: exit 0, no traceback

import random
from collections.abc import Sequence

from metrics_pipeline.cli import exit_with
from metrics_pipeline.errors import RunFailure
from metrics_pipeline.host_metrics import HostMetricsSource, default_server_id
from metrics_pipeline.kafka_connection import ensure_topic
from metrics_pipeline.log_setup import configure_logging, counted
from metrics_pipeline.producer_loop import MetricsProducer, MetricsSource, open_producer
from metrics_pipeline.settings import load_producer_settings
from metrics_pipeline.shutdown import install_stop_handlers
from metrics_pipeline.simulation import SimulatedSource


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_producer_settings(argv)
    kafka_status = configure_logging(settings.log_level, settings.secrets)
    kafka_status.bootstrap = settings.kafka.bootstrap_servers
    stop = install_stop_handlers()

    source: MetricsSource
    if settings.source == "psutil":
        server_id = settings.server_ids[0] if settings.server_ids_given else default_server_id()
        source = HostMetricsSource(server_id)
    else:
        source = SimulatedSource(settings.server_ids, random.Random(settings.seed))

    ensure_topic(settings.kafka, "productor_metrics_iabd06", stop, kafka_status)
    producer = MetricsProducer(open_producer(settings.kafka), settings.kafka, source, stop,
                               kafka_status, settings.interval, settings.rounds)
    stats = producer.run()

    if stats.failed:
        failed = counted(stats.failed, "métrica no se pudo enviar", "métricas no se pudieron enviar")
        raise RunFailure(f"{failed} a Kafka ({counted(stats.sent, 'enviada')} en {counted(stats.rounds, 'ronda')})")
    return 0


if __name__ == "__main__":
    exit_with(main, "productor_metrics_iabd06.py")
