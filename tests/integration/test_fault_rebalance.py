"""Scenario 4: two consumers in one group over three partitions; one is killed and
restarted mid-stream. Rebalances must lose nothing, double nothing, and keep every
window inside one partition and exact."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.audit import KPIS, RAW, audit
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, producer_summary
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def test_rebalances_lose_nothing_and_double_nothing(pipeline: Pipeline) -> None:
    pipeline.partitions = 3
    servers = ",".join(f"srv{i:02d}" for i in range(12))
    rounds = 300  # 3,600 messages over ~30 s, so the restarted consumer joins mid-stream
    producer = pipeline.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.1", "--servers", servers)
    first = pipeline.start(CONSUMER, "--batch-size", "25", label="-a")
    second = pipeline.start(CONSUMER, "--batch-size", "25", label="-b")
    for consumer in (first, second):
        consumer.wait_for("Ventana KPI", timeout=90)

    first.kill()  # kill -9 mid-stream: its partitions move to the other consumer
    second.wait_for("Particiones asignadas", timeout=60, count=2)  # it took over the partitions
    time.sleep(2)
    restarted = pipeline.start(CONSUMER, "--batch-size", "25", label="-a2")
    restarted.wait_for("Lote guardado", timeout=90)
    assert producer.process.poll() is None, "the stream ended before the restarted consumer joined"

    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    assert sent == rounds * 12
    raw = pipeline.db[RAW]
    wait_until(lambda: raw.count_documents({}) == sent, 90, "both consumers to store everything")
    # Let the last complete windows be written before stopping.
    expected_windows = sum(n // 20 for n in _per_partition(raw).values())
    wait_until(lambda: pipeline.db[KPIS].count_documents({}) == expected_windows, 60, "the last windows")

    for consumer in (second, restarted):
        consumer.signal(signal.SIGINT)
    for consumer in (second, restarted):
        assert consumer.wait(15) == 0
        assert "Traceback" not in consumer.text()
    assert "Particiones asignadas" in second.text() and "Particiones asignadas" in restarted.text()

    report = audit(pipeline.db, valid=sent)
    assert len(report.pending) == 3 and report.windows == expected_windows


def _per_partition(raw) -> dict[int, int]:
    counts: dict[int, int] = {}
    for doc in raw.aggregate([{"$group": {"_id": "$kafka.partition", "n": {"$sum": 1}}}]):
        counts[doc["_id"]] = doc["n"]
    return counts
