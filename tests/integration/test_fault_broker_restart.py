"""Scenario 3: the broker restarts under both scripts.

The local broker keeps nothing across a restart (memory storage): the topic, its
messages and the group's offsets are gone, as after a topic deleted and created again
on Apache Kafka. So the audit covers what was produced after the restart: every
message the producer saw confirmed by the new broker must be stored exactly once, in
exact windows, and every failed send must be an ERROR line that the producer counted.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime

import pytest

from tests.support.audit import KPIS, RAW, _check_kpis
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

_CONFIRMED = re.compile(r"^(\S+ \S+) DEBUG \S+: message_uuid (\S+) confirmado", re.M)


def test_both_scripts_ride_out_a_broker_restart(own_kafka, mongo_server, tmp_path, request) -> None:
    kafka = own_kafka()
    p = Pipeline.for_test(kafka.address, mongo_server.uri, tmp_path, request.node.name)
    producer = p.start(PRODUCER, "--rounds", "120", "--interval", "0.2", env=p.env(LOG_LEVEL="DEBUG"))
    consumer = p.start(CONSUMER)
    consumer.wait_for("Ventana KPI", timeout=60, count=3)

    kafka.kill()
    restarted_at = time.time()
    time.sleep(3)
    kafka.start()  # same port, empty: the topic and the group are gone
    assert producer.wait(240) in (0, 1)

    log = producer.text()
    after = {uuid for stamp, uuid in _CONFIRMED.findall(log)
             if datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() > restarted_at + 0.5}
    sent = int(re.search(r"(\d+) métricas enviadas", log).group(1))
    failed = int(re.search(r"(\d+) fallidas", log).group(1))
    assert sent + failed == 600 and len(after) > 100
    assert log.count("No se pudo enviar la métrica") == failed
    assert (producer.process.returncode == 1) == (failed > 0)
    assert re.search(r"WARNING \S+: Kafka \(\S+\) no responde", log)

    raw = p.db[RAW]
    wait_until(lambda: raw.count_documents({"_id": {"$in": list(after)}}) == len(after), 90,
               "every message confirmed after the restart to be stored")
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(15) == 0
    clog = consumer.text()
    assert "Traceback" not in clog and "Traceback" not in log
    assert re.search(r"WARNING \S+: Kafka \(\S+\) no responde", clog)
    assert "Conexión con Kafka" in clog and "restablecida" in clog

    # Exact windows, nothing in two of them, every KPI recomputable from raw.
    raw_docs = {d["_id"]: d for d in raw.find()}
    seen: set[str] = set()
    for kpi in p.db[KPIS].find():
        ids = kpi["message_uuids"]
        assert len(ids) == len(set(ids)) == 20 and seen.isdisjoint(ids)
        seen.update(ids)
        _check_kpis(kpi, [raw_docs[i] for i in ids])
    assert len(raw_docs) <= 600
