"""Scenario 1: kill -9 of the consumer at random moments while it drains a backlog."""

from __future__ import annotations

import random
import time

import pytest

from tests.support.audit import RAW, audit
from tests.support.pipeline import CONSUMER, Pipeline

pytestmark = pytest.mark.slow


def test_kill_9_at_random_moments_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    pipeline.extra_env["KAFKA_SESSION_TIMEOUT_MS"] = "3000"  # a killed member is noticed sooner
    rng = random.Random(20261126)
    pipeline.produce(1400)  # 7,000 messages waiting in Kafka
    total = 1400 * 5
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
    assert progress[-1] < total, "the backlog was drained before the last kill: make it bigger"
    assert sum(b > a for a, b in zip(progress, progress[1:])) >= 5, f"kills did not land mid-drain: {progress}"

    done = pipeline.consume(idle=3)
    assert "Traceback" not in done.stderr
    report = audit(pipeline.db, valid=total)
    assert report.windows == total // 20 and report.pending == {0: total % 20}
