"""Scenario 4: two consumers in one group over three partitions; one is killed and
restarted mid-stream. Rebalances must lose nothing, double nothing, and keep every
window inside one partition and exact."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.audit import KPIS, RAW, audit
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, Running, clean_env, producer_summary
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def test_rebalances_lose_nothing_and_double_nothing(pipeline: Pipeline) -> None:
    # One consumer killed mid-stream and restarted; then the restarted one stopped
    # while the stream goes on, so partitions it advanced go back to the other
    # consumer, which had them before (its windows of then must be gone).
    pipeline.partitions = 3
    servers = ",".join(f"srv{i:02d}" for i in range(12))
    rounds = 450  # 5,400 messages over ~45 s, so both changes happen mid-stream
    producer = pipeline.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.1", "--servers", servers)
    first = pipeline.start(CONSUMER, "--batch-size", "25", label="-a")
    second = pipeline.start(CONSUMER, "--batch-size", "25", label="-b")
    for consumer in (first, second):
        consumer.wait_for("Ventana KPI", timeout=90)

    first.kill()  # kill -9 mid-stream: its partitions move to the other consumer
    second.wait_for("Particiones asignadas", timeout=60, count=2)  # it took over the partitions
    time.sleep(2)
    restarted = pipeline.start(CONSUMER, "--batch-size", "25", label="-a2")
    restarted.wait_for("Ventana KPI", timeout=90)
    assert producer.process.poll() is None, "the stream ended before the restarted consumer joined"

    handed_back = second.text().count("Particiones asignadas") + 1
    restarted.signal(signal.SIGINT)  # its partitions go back to the other consumer
    assert restarted.wait(15) == 0
    second.wait_for("Particiones asignadas", timeout=60, count=handed_back)
    assert producer.process.poll() is None, "the stream ended before the partitions were handed back"
    assert re.search(r"Particiones asignadas del tema \S+: \[0, 1, 2\]\n(?![\s\S]*Particiones asignadas)",
                     second.text()), "precondition: the other consumer got every partition back"

    sent, expected_windows = _stream_stored(pipeline, producer, rounds * 12)

    second.signal(signal.SIGINT)
    assert second.wait(15) == 0
    for consumer in (second, restarted):
        assert "Traceback" not in consumer.text()
    assert "Particiones asignadas" in restarted.text()

    report = audit(pipeline.db, valid=sent)
    assert len(report.pending) == 3 and report.windows == expected_windows


def _stream_stored(pipeline: Pipeline, producer: Running, messages: int) -> tuple[int, int]:
    """Wait for the producer to send ``messages`` and for the consumers to store them
    all and write the windows they complete; returns (sent, windows expected)."""
    assert producer.wait(120) == 0
    sent, _, _ = producer_summary(producer.text())
    assert sent == messages
    raw = pipeline.db[RAW]
    wait_until(lambda: raw.count_documents({}) == sent, 90, "the consumers to store everything")
    # Let the last complete windows be written before stopping.
    expected_windows = sum(n // 20 for n in _per_partition(raw).values())
    # If they never come (or one too many does), the audit afterwards says which.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: pipeline.db[KPIS].count_documents({}) == expected_windows, 60, "the last windows")
    return sent, expected_windows


def _per_partition(raw) -> dict[int, int]:
    counts: dict[int, int] = {}
    for doc in raw.aggregate([{"$group": {"_id": "$kafka.partition", "n": {"$sum": 1}}}]):
        counts[doc["_id"]] = doc["n"]
    return counts


# A plain kafka-python member of the group. Its client id sorts before ours, so the
# range assignor hands it the only partition while it is in the group.
_FIRST_IN_LINE = """
import sys, time
from kafka import KafkaConsumer
consumer = KafkaConsumer(bootstrap_servers=sys.argv[1], group_id=sys.argv[2], client_id="aaa-primero",
                         enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=2000)
consumer.subscribe([sys.argv[3]])
printed = False
while True:
    consumer.poll(200)  # records are ignored: nothing is committed
    if consumer.assignment() and not printed:
        print("ASIGNADO", flush=True)
        printed = True
"""


@pytest.mark.parametrize("partitions, servers, ours_first", [
    (1, None, "ninguna"),  # the other member has the only partition
    (2, "srv00,srv01", "[1]"),  # srv00 is keyed to partition 0, srv01 to 1; the other member has 0
], ids=["nothing", "part"])
def test_idle_consumer_without_every_partition_waits_for_a_dead_members_share(
        pipeline: Pipeline, partitions: int, servers: str | None, ours_first: str) -> None:
    """A member that dies keeps its partitions until its session expires. A consumer
    run with --idle-timeout that meanwhile gets none of them, or only some, must wait
    for them, not exit with part of the backlog untouched."""
    pipeline.partitions = partitions
    pipeline.produce(50 // len((servers or "web01,web02,db01,app01,cache01").split(",")), servers=servers)
    first = subprocess.Popen([sys.executable, "-c", _FIRST_IN_LINE, pipeline.bootstrap, pipeline.group,
                              pipeline.topic], stdout=subprocess.PIPE, env=clean_env())
    try:
        assert first.stdout is not None and first.stdout.readline().startswith(b"ASIGNADO")
        ours = pipeline.start(CONSUMER, "--idle-timeout", "2",
                              env=pipeline.env(KAFKA_SESSION_TIMEOUT_MS="10000"))
        ours.wait_for("Particiones asignadas del tema", timeout=60)
        assert f": {ours_first}" in ours.text(), "precondition: the other member had partition 0"
    finally:
        first.kill()  # kill -9: its partition stays assigned to it until its session expires
        first.wait()

    assert ours.wait(90) == 0
    log = ours.text()
    assert "Traceback" not in log
    assert re.search(r"Fin del consumidor .*: 50 mensajes leídos, 50 guardados nuevos", log), log[-2000:]
    audit(pipeline.db, valid=50)


def test_a_consumer_frozen_past_its_session_comes_back_without_doubling_anything(pipeline: Pipeline) -> None:
    """A consumer frozen longer than its session (a stalled VM, a long GC pause:
    here SIGSTOP) is dropped from the group and the other member takes its partitions
    from the last committed window. When it wakes it still holds its batch and its
    open windows: what it then writes and commits must neither double nor lose
    anything, and the group must settle and go on."""
    pipeline.partitions = 2
    servers = ",".join(f"srv{i:02d}" for i in range(4))
    rounds = 450  # 1,800 messages over ~45 s: the frozen one wakes mid-stream even on a slow machine
    producer = pipeline.start(PRODUCER, "--rounds", str(rounds), "--interval", "0.1", "--servers", servers)
    zombie = pipeline.start(CONSUMER, "--batch-size", "25", label="-zombie")
    zombie.wait_for("Ventana KPI", timeout=90)
    other = pipeline.start(CONSUMER, "--batch-size", "25", label="-other")
    other.wait_for("Ventana KPI", timeout=90)

    taken_over = other.text().count("Particiones asignadas") + 1
    zombie.signal(signal.SIGSTOP)
    try:
        other.wait_for("Particiones asignadas", timeout=60, count=taken_over)
        assert re.search(r"Particiones asignadas del tema \S+: \[0, 1\]\n(?![\s\S]*Particiones asignadas)",
                         other.text()), "precondition: the other consumer took every partition"
        other.wait_for("Ventana KPI", timeout=30, count=other.text().count("Ventana KPI") + 2)
    finally:
        zombie.signal(signal.SIGCONT)
    assert producer.process.poll() is None, "the stream ended before the frozen consumer woke"

    sent, expected_windows = _stream_stored(pipeline, producer, rounds * 4)

    for consumer in (zombie, other):
        consumer.signal(signal.SIGINT)
    for consumer in (zombie, other):
        assert consumer.wait(15) == 0
        assert "Traceback" not in consumer.text()
    report = audit(pipeline.db, valid=sent)
    assert report.windows == expected_windows
    # On waking it says what happened to it, not that Kafka stopped answering.
    woke = zombie.text()
    assert "La sesión de este consumidor en el grupo caducó" in woke and "no responde" not in woke
