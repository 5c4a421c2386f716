"""Scenario 3: the broker restarts under both scripts.

Three restarts, because a real broker and the local one differ:

* Apache Kafka keeps its data across a restart. To the clients that restart is a
  broker that stops answering and comes back with everything in place. The first
  test reproduces that on the network: the scripts reach Tansu through
  tools/tcp_proxy.py, which is stopped for 5 s and started again. The second kills
  the broker process itself (kill -9) and starts it again 5 s later on the same
  port, with its data kept in S3 (moto's server, tools/local_stack.py) instead of in
  memory. In both, nothing may be lost or doubled: the full audit must hold.
* Tansu with memory storage keeps nothing across a restart: the topic, its
  messages and the group's offsets are gone, as after a topic deleted and created
  again; what the old log held unread goes with it. The second test checks what must
  hold anyway: both scripts log the outage, reconnect and go on; the topic comes back
  as the producer creates it (KAFKA_TOPIC_PARTITIONS), not as the broker would
  auto-create it; everything in the new log is stored; nothing is stored twice;
  every window written is exact; every failed send is an ERROR line that the
  producer counted. (Until the clients stopped asking for auto-created topics,
  producer and consumer could both trigger Tansu's auto-creation at once, and Tansu
  could serve two logs under one name.) The last test: a consumer left without
  partitions while the topic was missing gets them once it is back.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

import pytest
from kafka import KafkaAdminClient

from tests.support.audit import KPIS, RAW, check_kpis, audit
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, producer_summary
from tests.support.waiting import wait_until
from tools.local_stack import S3Server, ServerProcess, TansuServer, TcpProxy, free_port

pytestmark = pytest.mark.slow

_OUTAGE = re.compile(r"WARNING \S+: Kafka \(\S+\) no responde")


def test_a_broker_restart_that_keeps_the_data_loses_and_doubles_nothing(mongo_server, own_servers, tmp_path,
                                                                         request) -> None:
    broker_port, proxy_port = free_port(), free_port()
    kafka = TansuServer(broker_port, tmp_path, advertised_port=proxy_port).start()
    proxy = TcpProxy(proxy_port, broker_port, tmp_path).start()
    own_servers.extend([kafka, proxy])
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name)
    # The proxy goes: connections reset, new ones refused; when it is back, so is the
    # broker with its topic, messages and group offsets.
    _restart_under_both_scripts_and_audit(p, proxy)


def test_a_broker_killed_and_restarted_with_its_data_loses_and_doubles_nothing(mongo_server, own_servers, tmp_path,
                                                                                request) -> None:
    # The broker process itself dies (kill -9, as a crashed or OOM-killed Kafka) and
    # comes back on the same port with its storage: Tansu on S3 (moto), so that the
    # topic, its messages and the group's committed offsets outlive the process, as
    # Apache Kafka's log and __consumer_offsets outlive a `docker compose restart`.
    s3 = S3Server(free_port(), tmp_path).start()
    own_servers.append(s3)
    kafka = TansuServer(free_port(), tmp_path, s3=s3).start()
    own_servers.append(kafka)
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name)
    consumer_log = _restart_under_both_scripts_and_audit(p, kafka)
    assert len(p.topic_message_ids()) == 600, "the broker kept its log: every message sent is in it"
    assert "se ha vuelto a crear" not in consumer_log, "the topic was kept, not created again"


def _restart_under_both_scripts_and_audit(p: Pipeline, server: ServerProcess) -> str:
    """120 rounds sent and consumed while ``server`` (the broker, or the proxy in
    front of it) is killed for 5 s and started again with the broker's data in
    place: everything stored once, the full audit. Returns the consumer's log."""
    producer = p.start(PRODUCER, "--rounds", "120", "--interval", "0.2")
    consumer = p.start(CONSUMER)
    consumer.wait_for("Ventana KPI", timeout=60, count=3)

    server.kill()
    time.sleep(5)
    server.start()
    assert producer.wait(240) == 0, producer.text()[-2000:]
    sent, _, failed = producer_summary(producer.text())
    assert (sent, failed) == (600, 0)

    wait_until(lambda: p.db[RAW].count_documents({}) == sent, 90, "every message to be stored")
    wait_until(lambda: p.db[KPIS].count_documents({}) == sent // 20, 30, "every window to be written")
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0
    for log in (producer.text(), consumer.text()):
        assert "Traceback" not in log
        assert _OUTAGE.search(log) and "restablecida" in log
    audit(p.db, valid=sent)
    return consumer.text()


def test_busy_consumers_outlive_a_broker_killed_again_and_again(own_kafka, mongo_server, tmp_path, request) -> None:
    # Two consumers busy with a steady stream over three partitions; the broker is
    # killed ten times, down 1 s each, each time soon after the group's last rejoin.
    # kafka-python may then raise out of poll() the connection error of its
    # coordinator lookup: Kafka down, to be waited out, never a crash (before the
    # consumer did so, this test failed in 4 runs of 4 here, 2026-12-07). After the
    # last restart both consumers may be handed no partition at once; they join again
    # as new members, and the group must then hand the partitions out (while they
    # also sent a LeaveGroup, Tansu never did: 3 runs in about 120).
    kafka = own_kafka()
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name, partitions=3)
    p.create_topic()
    producer = p.start(PRODUCER, "--rounds", "1000000", "--interval", "0.05",
                       "--servers", ",".join(f"s{i}" for i in range(20)))
    consumers = [p.start(CONSUMER, label=f"-{i}") for i in range(2)]
    for consumer in consumers:
        consumer.wait_for("Lote guardado", timeout=60)
    for _ in range(10):
        kafka.kill()
        time.sleep(1)
        kafka.start()  # empty: the producer creates the topic again
        time.sleep(2.5)  # mid-rejoin, often: where the crash was
        assert [c.process.poll() for c in consumers] == [None, None], [c.text()[-3000:] for c in consumers]
    def stored_batches() -> int:
        return sum(c.text().count("Lote guardado") for c in consumers)
    before = stored_batches()
    wait_until(lambda: stored_batches() > before, 60, "a batch stored after the last restart",
               logs=lambda: "\n".join(r.story() for r in (producer, *consumers)))
    for running in (producer, *consumers):
        running.signal(signal.SIGTERM)
        code = running.wait(15)
        assert code == 0 or (running is producer and code == 1), code  # 1: a send that finally failed
        assert "Traceback" not in running.text() and " CRITICAL " not in running.text()


def test_both_scripts_go_on_after_a_broker_that_lost_its_data(own_kafka, mongo_server, tmp_path, request) -> None:
    kafka = own_kafka()
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name)
    producer = p.start(PRODUCER, "--rounds", "80", "--interval", "0.2")
    consumer = p.start(CONSUMER)
    consumer.wait_for("Ventana KPI", timeout=60, count=3)

    kafka.kill()
    time.sleep(3)
    kafka.start()  # same port, empty: the topic and the group are gone
    assert producer.wait(240) in (0, 1)
    log = producer.text()
    sent, _, failed = producer_summary(log)
    assert sent + failed == 400
    assert log.count("No se pudo enviar la métrica") == failed
    assert (producer.process.returncode == 1) == (failed > 0)

    # The topic came back as the scripts create it, not as the broker would have: the
    # clients never ask for an auto-created topic (kafka-python 3.0.x asked anyway and
    # Tansu gave it 4 partitions), the producer creates it with KAFKA_TOPIC_PARTITIONS.
    # Unless Tansu (not Kafka) takes a produce request for the topic it lost as an
    # order to create it again (1 run in 6 here): then the producer never sees it
    # missing, and the topic has the one partition the request was for. Right after
    # either, Tansu may describe the topic with no partition at all (1 CI run in 7 on
    # 27 Nov; README, "Límites conocidos"). Never the 4 of a topic the clients let
    # the broker auto-create.
    partitions = _partitions(p)
    topic_lines = [line for line in log.splitlines() if "tema" in line.lower()]
    assert partitions in (0, 1), (partitions, topic_lines)
    assert "creado de nuevo" not in log or "creado de nuevo (particiones: 1)" in log, topic_lines
    # Everything in the new log gets stored (what the old log held unread went with it).
    # Read it once Tansu describes the topic with its partition again: with none, no
    # reader (the consumer included) knows where to fetch from.
    # Tansu may also never describe it again (in CI on 28 Nov: 400 sends acknowledged
    # into the topic it had auto-created, and 60 s later still "not found" to every
    # metadata request, the test's included). Then no client can read it: check what
    # still holds and say why the rest cannot be checked.
    try:
        wait_until(lambda: _partitions(p) == 1, 60, "the topic described with its partition again")
    except AssertionError as timed_out:
        # Only that broker bug: Kafka took every send after its restart. A topic missing
        # because nothing created it again (the producer's sends then fail) is a failure.
        if failed or not _acknowledged_after_restart(log):
            raise
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(15) == 0
        assert "Traceback" not in log + consumer.text()
        _check_nothing_doubled_and_windows_exact(p, sent)
        pytest.skip(f"Tansu acknowledged the producer's {sent} sends, but after its restart it describes the "
                    f"topic with {_partitions(p)} partitions ({timed_out}): nothing can read it, so whether all "
                    "of it is stored cannot be checked")
    raw = p.db[RAW]
    new_log = p.topic_message_ids()
    assert len(new_log) >= 50, (len(new_log), _partitions(p), topic_lines)
    # Unless Tansu broke its own log: acknowledging a send at an offset it had already
    # acknowledged for another (in CI on 28 Nov, and in 1 run of 14 here just after;
    # in CI: after auto-creating the topic for a produce request, it described it as
    # missing, took the producer's CreateTopics and served a second log over the
    # first: 125 acknowledged sends at offsets given twice, and its storage logging
    # AlreadyExists). A broker whose offsets mean two messages has no "new log" to
    # check the consumer against; the checks below still hold, and then the test says
    # why it cannot check this one.
    rewritten = _offsets_acknowledged_twice(log)
    try:
        wait_until(lambda: raw.count_documents({"_id": {"$in": list(new_log)}}) == len(new_log),
                   90, "every message of the new log stored")
        unstored = ""
    except AssertionError as timed_out:
        if not rewritten:
            raise
        unstored = str(timed_out)
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0
    clog = consumer.text()
    for text in (log, clog):
        assert "Traceback" not in text and _OUTAGE.search(text) and "restablecida" in text

    _check_nothing_doubled_and_windows_exact(p, sent)
    if unstored:
        pytest.skip(f"Tansu acknowledged sends at {len(rewritten)} offsets it had already given to others "
                    f"(e.g. {sorted(rewritten)[:5]}): its log is not one log, so whether all of it was stored "
                    f"cannot be checked ({unstored})")


def _check_nothing_doubled_and_windows_exact(p: Pipeline, sent: int) -> None:
    """Nothing stored twice (the _id is the message_uuid), every window exact and
    recomputable from raw, no message in two windows."""
    raw_docs = {d["_id"]: d for d in p.db[RAW].find()}
    assert len(raw_docs) <= sent
    seen: set[str] = set()
    for kpi in p.db[KPIS].find():
        ids = kpi["message_uuids"]
        assert len(ids) == len(set(ids)) == 20 and seen.isdisjoint(ids)
        seen.update(ids)
        check_kpis(kpi, [raw_docs[i] for i in ids])


def _acknowledged_after_restart(producer_log: str) -> int:
    """How many sends the broker acknowledged once it was back."""
    after = producer_log.split("restablecida", 1)[1] if "restablecida" in producer_log else ""
    return after.count("Enviada métrica de ")


def _offsets_acknowledged_twice(producer_log: str) -> set[int]:
    """Offsets the broker acknowledged for two sends once it was back: in a log,
    one offset is one record (a resent message gets a new offset)."""
    if "restablecida" not in producer_log:
        return set()  # the test fails on that below
    after = producer_log.split("restablecida", 1)[1]
    acknowledged = re.findall(r"Enviada métrica de \S+ a Kafka \(partición 0, offset (\d+)\)", after)
    offsets = Counter(int(n) for n in acknowledged)
    return {offset for offset, times in offsets.items() if times > 1}


def test_a_consumer_left_without_partitions_gets_the_topic_created_again(own_kafka, mongo_server, tmp_path,
                                                                        request) -> None:
    # The broker comes back empty and the consumer rejoins its group while the topic
    # does not exist: no partitions. Tansu answers its later rejoins with that same
    # empty assignment; the consumer must join again as a new member once the topic
    # is back, here created by a producer started after that rejoin.
    kafka = own_kafka()
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name)
    consumer = p.start(CONSUMER)
    p.produce(4)
    consumer.wait_for("Ventana KPI", timeout=60)
    kafka.kill()
    time.sleep(1)
    kafka.start()
    consumer.wait_for("Particiones asignadas del tema", timeout=30, count=2)
    assignments = re.findall(r"Particiones asignadas del tema \S+: (.*)", consumer.text())
    assert assignments[1] == "ninguna", "the topic is missing: nothing to assign"
    time.sleep(2)
    p.produce(4)  # creates the topic again, with KAFKA_TOPIC_PARTITIONS
    new_log = p.topic_message_ids()
    raw = p.db[RAW]
    wait_until(lambda: raw.count_documents({"_id": {"$in": list(new_log)}}) == 20, 60,
               "the 20 messages of the new topic stored")
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0
    log = consumer.text()
    assert "Traceback" not in log and "se ha vuelto a crear" in log
    assert raw.count_documents({}) == 40 and p.db[KPIS].count_documents({}) == 2
    assert _partitions(p) == 1  # as the producer created it: the consumer never asked the broker to


def _partitions(p: Pipeline) -> int:
    admin = KafkaAdminClient(bootstrap_servers=p.bootstrap)
    try:
        (topic,) = admin.describe_topics([p.topic])
        return len(topic["partitions"])
    finally:
        admin.close()
