"""Scenario 1: kill -9 of the consumer at random moments while it drains a backlog."""

from __future__ import annotations

import random
import time

import pytest

from tests.support.audit import KPIS, RAW, audit
from tests.support.pipeline import CONSUMER, Pipeline
from tests.support.waiting import committed_offsets

pytestmark = pytest.mark.slow


def test_kill_9_at_random_moments_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    pipeline.extra_env["KAFKA_SESSION_TIMEOUT_MS"] = "3000"  # a killed member is noticed sooner
    rng = random.Random(20261126)
    # 20,000 messages waiting in Kafka. A run drains up to ~1,700 of them before its
    # kill (2026-12-07, batches of 5-20, in ~0.5 s); 7,000 were once all drained
    # before the last of six kills on a fast machine under load.
    pipeline.produce(4000)
    total = 4000 * 5
    raw = pipeline.db[RAW]

    progress = [0]
    for kill in range(6):
        consumer = pipeline.start(CONSUMER, "--batch-size", str(rng.choice([5, 9, 20])), label=f"-kill{kill}")
        consumer.wait_for("Particiones asignadas", timeout=60)
        consumer.wait_for("Lote guardado", timeout=30)  # it is draining
        time.sleep(rng.uniform(0.0, 0.4))
        consumer.kill()  # SIGKILL: no cleanup, no commit, no goodbye
        progress.append(raw.count_documents({}))
        assert "Traceback" not in consumer.text()
    assert progress[-1] < total, f"the backlog was drained before the last kill: make it bigger: {progress}"
    assert sum(b > a for a, b in zip(progress, progress[1:])) >= 5, f"kills did not land mid-drain: {progress}"

    done = pipeline.consume(idle=3)
    assert "Traceback" not in done.stderr
    report = audit(pipeline.db, valid=total)
    assert report.windows == total // 20 and report.pending == {0: total % 20}


def test_windows_written_but_not_committed_keep_their_size_when_the_setting_changes(own_kafka, mongo_server,
                                                                                     tmp_path, request) -> None:
    # Kafka hangs, so the commits of the batches the consumer is writing never land;
    # the consumer is killed, and restarted with another KPI_WINDOW_SIZE (5 -> 4).
    kafka = own_kafka()
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name, window_size=5)
    p.extra_env["KAFKA_SESSION_TIMEOUT_MS"] = "3000"
    p.produce(40)  # 200 messages
    consumer = p.start(CONSUMER, "--batch-size", "5")
    consumer.wait_for("Ventana KPI", timeout=60, count=3)
    with kafka.frozen():
        time.sleep(1.5)  # the batches in hand are written to MongoDB; their commits hang
        consumer.kill()
    committed = committed_offsets(p.bootstrap, p.group, p.topic, 1)[0] or 0
    kpis = p.db[KPIS]
    written_ahead = kpis.count_documents({"kafka.first_offset": {"$gte": committed}})
    assert written_ahead >= 1, "no window was written without its commit: the scenario did not happen"

    done = p.consume("--window-size", "4", idle=3)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("KPI_WINDOW_SIZE es ahora 4") == written_ahead
    assert p.db[RAW].count_documents({}) == 200
    windows = sorted(kpis.find(), key=lambda k: k["kafka"]["first_offset"])
    sizes = [k["message_count"] for k in windows]
    assert all(size == 5 for size in sizes[:committed // 5 + written_ahead])
    assert all(size == 4 for size in sizes[committed // 5 + written_ahead:])
    # The windows tile the partition from offset 0: none skips a message, none repeats one.
    expected_first = 0
    for kpi in windows:
        assert kpi["kafka"]["first_offset"] == expected_first, kpi["_id"]
        assert kpi["kafka"]["last_offset"] == expected_first + kpi["message_count"] - 1
        expected_first = kpi["kafka"]["last_offset"] + 1
    counted = [u for k in windows for u in k["message_uuids"]]
    assert len(counted) == len(set(counted)) and 200 - len(counted) < 4
