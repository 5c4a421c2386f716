#!/usr/bin/env python3
"""Consumer: stores every metric of Kafka in MongoDB once, and a KPI document per window.

Reads its settings (flags, environment, .env), waits for MongoDB and Kafka, then
reads the topic in the consumer group: every valid message goes to the raw
collection, every invalid one to the dead-letter collection, and every
KPI_WINDOW_SIZE valid messages of a partition make one KPI document. Offsets are
committed only once all of that is stored (see metrics_pipeline/ingest.py).
Run with --help for every setting.
"""

from __future__ import annotations

from metrics_pipeline.shutdown import exit_at_once_on_signal

if __name__ == "__main__":
    exit_at_once_on_signal()  # a Ctrl-C while the libraries below load: exit 0, no traceback

from collections.abc import Sequence

from metrics_pipeline.cli import exit_with
from metrics_pipeline.consumer_loop import MetricsConsumer
from metrics_pipeline.kafka_connection import ensure_topic
from metrics_pipeline.log_setup import configure_logging
from metrics_pipeline.settings import load_consumer_settings
from metrics_pipeline.shutdown import install_stop_handlers
from metrics_pipeline.storage import MetricsStore, open_client, wait_until_reachable


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_consumer_settings(argv)
    kafka_status = configure_logging(settings.log_level, settings.secrets)
    kafka_status.bootstrap = settings.kafka.bootstrap_servers
    stop = install_stop_handlers()

    client = open_client(settings.mongo, "consumidor_metrics_iabd06")
    wait_until_reachable(client, settings.mongo, stop)
    store = MetricsStore(client, settings.mongo)
    store.ensure_indexes()
    ensure_topic(settings.kafka, "consumidor_metrics_iabd06", stop, kafka_status)

    try:
        MetricsConsumer(settings, store, stop, kafka_status).run()
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    exit_with(main, "consumidor_metrics_iabd06.py")
