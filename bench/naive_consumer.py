"""The naive reference consumer: how the course exercise is usually written.

Kept only as the benchmark's baseline. DO NOT USE IT: one ``insert_one`` and one
offset commit per message (a network round trip each), a KPI document every 20
messages of whatever partition, no validation, no idempotence (a replay stores
duplicates), no retries.

    python bench/naive_consumer.py --bootstrap-servers H:P --topic T --group-id G \
        --mongodb-uri URI --database DB --max-messages N

Prints ``NAIVE_RESULT messages=N seconds=S`` (from the first message received to the
last commit) for bench/bench.py.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer
from pymongo import MongoClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--max-messages", type=int, required=True)
    args = parser.parse_args()

    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap_servers, group_id=args.group_id,
                             auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000)
    client: MongoClient[dict[str, Any]] = MongoClient(args.mongodb_uri)
    db = client[args.database]
    raw, kpis = db["system_metrics_raw_iabd06"], db["system_metrics_kpis_iabd06"]

    window: list[dict] = []
    count = 0
    started = None
    window_started = time.time()
    while count < args.max_messages:
        for records in consumer.poll(timeout_ms=1000, max_records=args.max_messages - count).values():
            for message in records:
                if started is None:
                    started = window_started = time.time()
                data = json.loads(message.value)
                raw.insert_one(data)           # one round trip per message
                consumer.commit()              # and another one
                count += 1
                window.append(data)
                if len(window) == 20:
                    metrics = [m["metrics"] for m in window]
                    elapsed = time.time() - window_started
                    kpis.insert_one({
                        "timestamp": datetime.now(timezone.utc),
                        "cpu_percent_avg": sum(m["cpu_percent"] for m in metrics) / 20,
                        "memory_percent_avg": sum(m["memory_percent"] for m in metrics) / 20,
                        "disk_io_mbps_avg": sum(m["disk_io_mbps"] for m in metrics) / 20,
                        "network_mbps_avg": sum(m["network_mbps"] for m in metrics) / 20,
                        "error_count_sum": sum(m["error_count"] for m in metrics),
                        "tasa_procesamiento_msg_seg": 20 / elapsed if elapsed else 0.0,
                    })
                    window = []
                    window_started = time.time()
    seconds = time.time() - (started or time.time())
    consumer.close()
    print(f"NAIVE_RESULT messages={count} seconds={seconds:.6f}", flush=True)


if __name__ == "__main__":
    main()
