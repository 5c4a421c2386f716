"""Soak run (``make soak``): a long stretch with faults injected, then a full audit.

Not part of CI (it takes minutes). It starts its own Kafka and MongoDB, a producer
sending ``--messages`` metrics from 20 servers, and two consumers in one group over a
three-partition topic. Every ``--fault-every`` seconds it injects the next fault of
the cycle:

* kill -9 of a consumer (restarted 1-3 s later);
* SIGTERM of a consumer (restarted at once), once the group is stable (see
  wait_group_stable);
* kill -9 of MongoDB for 10 s (restarted on the same port and data);
* a burst of poison messages (they must all reach the dead-letter collection);
* MongoDB frozen (SIGSTOP) for 8 s: open connections that never answer;
* Kafka frozen (SIGSTOP) for 8 s, the same for the broker.

When the producer is done and everything is stored (every complete window too), the
consumers are stopped and the audit of tests/support/audit.py runs:
raw = valid messages sent, dead-letter = poison sent, every window exact and
recomputable, no message in two windows. Exit 0 if the audit passes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from tests.support.audit import DEADLETTER, KPIS, RAW, audit  # noqa: E402
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, Running, producer_summary  # noqa: E402
from tools.local_stack import SecantusServer, TansuServer, free_port  # noqa: E402

POISON = [b"", b"null", b"[1,2]", b'{"server_id": "x"', b"\xff\xfe", b'{"a": NaN}',
          b'{"server_id": "web01", "metrics": {"cpu_percent": true}}']


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def wait_group_stable(consumers: list[Running], timeout: float = 90) -> None:
    """Wait until every running consumer has its partitions (no rebalance under way).

    So that each SIGTERM stops a consumer with partitions and windows to commit. (A
    SIGTERM in mid-rebalance is safe too: the consumer then skips LeaveGroup, which
    Tansu 0.6 mishandles, see metrics_pipeline.consumer_loop; but it stops a consumer
    that has nothing to commit, and the group waits a session timeout for it.)
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("Particiones asignadas" in c.text() for c in consumers):
            time.sleep(2)
            return
        time.sleep(0.2)
    log("aviso: el grupo no se estabilizó a tiempo")


def _caught_up(db, sent: int) -> bool:
    """Everything stored, and every complete window of every partition written."""
    if db[RAW].count_documents({}) < sent:
        return False
    per_partition = db[RAW].aggregate([{"$group": {"_id": "$kafka.partition", "n": {"$sum": 1}}}])
    return db[KPIS].count_documents({}) == sum(doc["n"] // 20 for doc in per_partition)


def main() -> int:
    parser = argparse.ArgumentParser(description="Soak del pipeline con fallos inyectados.")
    parser.add_argument("--messages", type=int, default=52_000, help="mensajes válidos a enviar")
    parser.add_argument("--servers", type=int, default=20, help="servidores simulados por ronda")
    parser.add_argument("--interval", type=float, default=0.05, help="segundos entre rondas")
    parser.add_argument("--fault-every", type=float, default=8.0, help="segundos entre fallos")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--data-dir", default=str(ROOT / ".soak-data"))
    args = parser.parse_args()

    # SIGTERM must run the clean-up below too: the servers live in their own sessions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    data = Path(args.data_dir)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    kafka = TansuServer(free_port(), data).start()
    mongo = SecantusServer(free_port(), data / "mongo", data).start()
    p = Pipeline(kafka.address, mongo.uri, data, "soak", partitions=3)
    p.create_topic()
    rounds = -(-args.messages // args.servers)
    servers = ",".join(f"srv{i:03d}" for i in range(args.servers))
    faults: dict[str, int] = {"kill -9 consumidor": 0, "SIGTERM consumidor": 0, "MongoDB caído 10 s": 0,
                              "ráfaga de mensajes no válidos": 0, "MongoDB congelado 8 s": 0,
                              "Kafka congelado 8 s": 0}
    poison_sent = 0
    started = time.monotonic()
    consumers: list[Running] = []
    producer: Running | None = None
    try:
        producer = p.start(PRODUCER, "--rounds", str(rounds), "--interval", str(args.interval),
                           "--servers", servers)
        consumers = [p.start(CONSUMER, label=f"-{i}") for i in range(2)]
        log(f"soak: {rounds * args.servers} mensajes de {args.servers} servidores, 2 consumidores, 3 particiones")
        cycle = 0
        next_fault = time.monotonic() + args.fault_every
        while producer.process.poll() is None:
            time.sleep(0.2)
            if time.monotonic() < next_fault:
                continue
            next_fault = time.monotonic() + args.fault_every
            kind = cycle % len(faults)
            cycle += 1
            if kind == 0:
                victim = rng.randrange(len(consumers))
                consumers[victim].kill()
                faults["kill -9 consumidor"] += 1
                log(f"fallo: kill -9 del consumidor {victim}")
                time.sleep(rng.uniform(1, 3))
                consumers[victim] = p.start(CONSUMER, label=f"-{victim}")
            elif kind == 1:
                wait_group_stable(consumers)
                victim = rng.randrange(len(consumers))
                consumers[victim].signal(signal.SIGTERM)
                code = consumers[victim].wait(30)
                faults["SIGTERM consumidor"] += 1
                log(f"fallo: SIGTERM del consumidor {victim} (salió con {code})")
                consumers[victim] = p.start(CONSUMER, label=f"-{victim}")
            elif kind == 2:
                mongo.kill()
                faults["MongoDB caído 10 s"] += 1
                log("fallo: kill -9 de MongoDB durante 10 s")
                time.sleep(10)
                mongo.start()
            elif kind == 4:
                faults["MongoDB congelado 8 s"] += 1
                log("fallo: MongoDB congelado (SIGSTOP) durante 8 s")
                with mongo.frozen():
                    time.sleep(8)
            elif kind == 5:
                faults["Kafka congelado 8 s"] += 1
                log("fallo: Kafka congelado (SIGSTOP) durante 8 s")
                with kafka.frozen():
                    time.sleep(8)
            else:
                burst = [rng.choice(POISON) for _ in range(rng.randint(3, 9))]
                producer_raw = KafkaProducer(bootstrap_servers=p.bootstrap, acks="all", enable_idempotence=False)
                for value in burst:
                    producer_raw.send(p.topic, key=b"poison", value=value)
                producer_raw.flush()
                producer_raw.close()
                poison_sent += len(burst)
                faults["ráfaga de mensajes no válidos"] += 1
                log(f"fallo: {len(burst)} mensajes no válidos")
        sent_text = producer.text()
        sent, _, failed = producer_summary(sent_text)
        log(f"productor terminado: {sent} enviadas, {failed} fallidas (código {producer.process.returncode})")

        db = MongoClient(mongo.uri, tz_aware=True)[p.database]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _caught_up(db, sent):
            time.sleep(1)
        wait_group_stable(consumers)
        for consumer in consumers:
            consumer.signal(signal.SIGTERM)
        codes = [consumer.wait(60) for consumer in consumers]
        elapsed = time.monotonic() - started
        logs = "".join(c.text() for c in consumers)
        tracebacks = logs.count("Traceback") + sent_text.count("Traceback")

        try:
            report = audit(db, valid=sent, invalid=poison_sent)
            verdict = "OK"
        except AssertionError as exc:
            report = None
            verdict = f"FALLA: {exc}"
        print()
        print("Auditoría del soak")
        print(f"  duración                      {elapsed:8.0f} s")
        print(f"  mensajes válidos enviados     {sent:8d}")
        print(f"  envíos fallidos               {failed:8d}")
        print(f"  mensajes no válidos enviados  {poison_sent:8d}")
        for name, count in faults.items():
            print(f"  fallo: {name:<30}{count:4d}")
        print(f"  documentos raw                {db[RAW].count_documents({}):8d}")
        print(f"  documentos dead-letter        {db[DEADLETTER].count_documents({}):8d}")
        print(f"  ventanas KPI                  {db[KPIS].count_documents({}):8d}")
        if report is not None:
            print(f"  mensajes aún sin ventana      {sum(report.pending.values()):8d}  (por partición: {report.pending})")
        print(f"  códigos de salida (SIGTERM)   {codes}")
        print(f"  trazas (Traceback) en logs    {tracebacks:8d}")
        print(f"  resultado                     {verdict}")
        print(f"  para repetirlo: make soak  (o .venv/bin/python tools/soak.py --messages {args.messages})")
        ok = report is not None and failed == 0 and tracebacks == 0 and set(codes) == {0}
        return 0 if ok else 1
    finally:
        for process in consumers + ([producer] if producer else []):
            process.kill()
        kafka.kill()
        mongo.stop()


if __name__ == "__main__":
    sys.exit(main())
