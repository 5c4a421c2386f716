"""Soak run (``make soak``): a long stretch with faults injected, then a full audit.

Not part of CI (it takes minutes). It starts its own Kafka and MongoDB, a producer
sending ``--messages`` metrics from 20 servers, and two consumers in one group over a
three-partition topic. Every ``--fault-every`` seconds it injects the next fault of
the cycle:

* kill -9 of a consumer (restarted 1-3 s later);
* SIGTERM of a consumer (restarted at once), once the group is stable (see
  wait_group_stable);
* kill -9 of MongoDB for 10 s (restarted on the same port and data);
* a burst of 3-9 poison messages of random kinds (those of tests/support/poison.py:
  they must all reach the dead-letter collection);
* MongoDB frozen (SIGSTOP) for 8 s: open connections that never answer;
* Kafka frozen (SIGSTOP) for 8 s, the same for the broker;
* with ``--consumer-freezes`` only: a consumer frozen (SIGSTOP) for 10 s, longer than
  its 6 s session: the other takes its partitions, and it wakes as a zombie with a
  batch and open windows that are no longer its own;
* with ``--kafka-restarts`` only: kill -9 of Kafka for 5 s (restarted on the same
  port with its data: that Tansu keeps its topic, messages and group offsets in S3,
  see tools/local_stack.py). Tansu then reads every batch back from moto's S3 server,
  in Python, and slows down as the topic grows (52,000 messages: the consumers had
  stored 41,000 when the soak gave up waiting); hence a separate flag, for shorter
  runs (``--messages 10000``).

With ``--overlap`` the faults come at random moments (1 to ``--fault-every`` s apart)
and in random order, last a random while (MongoDB down 3-12 s, frozen 2-9 s, Kafka
frozen 2-8 s, with --kafka-restarts down 2-8 s) and overlap: the server faults run in the background, so a consumer may
be killed, or stopped with SIGTERM or SIGINT (which must end it with 0 within 10 s),
while MongoDB or Kafka is down. A stop is counted as failed otherwise.

When the producer is done and everything is stored (every complete window too), the
consumers are stopped and the audit of tests/support/audit.py runs:
raw = valid messages sent, dead-letter = poison sent, every window exact and
recomputable, no message in two windows. Exit 0 if the audit passes.
"""

from __future__ import annotations

import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from tests.support.audit import DEADLETTER, KPIS, RAW, audit  # noqa: E402
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, Running, producer_summary  # noqa: E402
from tests.support.poison import POISON  # noqa: E402
from tools.arguments import at_least, tool_parser  # noqa: E402
from tools.local_stack import S3Server, SecantusServer, TansuServer, free_port  # noqa: E402

# The faults, in the order the regular mode cycles through them: of fixed length one
# after another, or (--overlap) of random length.
FAULTS = ("kill", "signal", "mongo_down", "poison", "mongo_frozen", "kafka_frozen", "kafka_down", "consumer_frozen")
# Server faults: (which server, stopped (True) or frozen, seconds fixed, seconds with --overlap).
SERVER_FAULTS = {"mongo_down": ("MongoDB", True, 10, (3, 12)), "mongo_frozen": ("MongoDB", False, 8, (2, 9)),
                 "kafka_frozen": ("Kafka", False, 8, (2, 8)), "kafka_down": ("Kafka", True, 5, (2, 8))}
# A consumer frozen longer than its session (6 s: KAFKA_SESSION_TIMEOUT_MS of
# tests/support/pipeline.py), so the other one takes its partitions and it wakes as a
# zombie: seconds fixed, seconds with --overlap.
CONSUMER_FROZEN_SECONDS = 10, (7, 14)


def fault_name(kind: str, overlap: bool) -> str:
    """A fault's name in the audit ("MongoDB caído 10 s", "Kafka congelado 2-8 s")."""
    if kind in SERVER_FAULTS:
        server, stopped, seconds, (low, high) = SERVER_FAULTS[kind]
        return f"{server} {'caído' if stopped else 'congelado'} {f'{low}-{high}' if overlap else seconds} s"
    if kind == "consumer_frozen":
        seconds, (low, high) = CONSUMER_FROZEN_SECONDS
        return f"consumidor congelado {f'{low}-{high}' if overlap else seconds} s"
    return {"kill": "kill -9 consumidor", "signal": "SIGTERM o SIGINT consumidor" if overlap else "SIGTERM consumidor",
            "poison": "ráfaga de mensajes no válidos"}[kind]
CATCH_UP_SECONDS = 300  # after the producer's end, to store everything and write every window


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


class ServerFaults:
    """Faults of one server run in the background (``--overlap``), one at a time."""

    def __init__(self) -> None:
        self._busy = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, fault, *args) -> bool:
        if not self._busy.acquire(blocking=False):
            return False  # this server's previous fault is still under way

        def run() -> None:
            try:
                fault(*args)
            finally:
                self._busy.release()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return True

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def _server_fault(server, kill: bool, seconds: float) -> None:
    """kill -9 and restart on the same port and data, or SIGSTOP then SIGCONT."""
    if kill:
        log(f"fallo: kill -9 de {server.name} durante {seconds:.1f} s")
        server.kill()
        time.sleep(seconds)
        server.start()
    else:
        log(f"fallo: {server.name} congelado (SIGSTOP) durante {seconds:.1f} s")
        with server.frozen():
            time.sleep(seconds)


def _exit_code(process: Running, seconds: float) -> int | str:
    """The exit code, or (after a kill -9) why there is none: the soak reports, it does not crash."""
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        return f"sin salir en {seconds:.0f} s"


def _caught_up(db, sent: int) -> bool:
    """Everything stored, and every complete window of every partition written."""
    if db[RAW].count_documents({}) < sent:
        return False
    per_partition = db[RAW].aggregate([{"$group": {"_id": "$kafka.partition", "n": {"$sum": 1}}}])
    return db[KPIS].count_documents({}) == sum(doc["n"] // 20 for doc in per_partition)


def main() -> int:
    parser = tool_parser("Soak del pipeline con fallos inyectados; al final, la auditoría.")
    parser.add_argument("--messages", type=at_least(1, int), default=52_000, metavar="N",
                        help="mensajes válidos a enviar")
    parser.add_argument("--servers", type=at_least(1, int), default=20, metavar="N",
                        help="servidores simulados por ronda")
    parser.add_argument("--interval", type=at_least(0, float), default=0.05, metavar="SEGUNDOS",
                        help="segundos entre rondas")
    parser.add_argument("--fault-every", type=at_least(0.5, float), default=8.0, metavar="SEGUNDOS",
                        help="segundos entre fallos")
    parser.add_argument("--overlap", action="store_true",
                        help="fallos en momentos y orden al azar, de duración al azar y solapados")
    parser.add_argument("--seed", type=int, default=2026, metavar="S",
                        help="semilla de los fallos y de la simulación, para repetir una ejecución")
    parser.add_argument("--kafka-restarts", action="store_true",
                        help="los datos de Kafka en S3 (moto) y un fallo más: kill -9 de Kafka, que vuelve con "
                             "ellos (más lento: úselo con menos mensajes, p. ej. --messages 10000)")
    parser.add_argument("--consumer-freezes", action="store_true",
                        help="un fallo más: un consumidor congelado (SIGSTOP) más tiempo que su sesión, que al "
                             "despertar ya no es del grupo")
    parser.add_argument("--data-dir", default=str(ROOT / ".soak-data"), metavar="DIRECTORIO",
                        help="datos y logs de la ejecución (se vacía al empezar)")
    args = parser.parse_args()

    # SIGTERM must run the clean-up below too: the servers live in their own sessions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    data = Path(args.data_dir)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    s3 = S3Server(free_port(), data).start() if args.kafka_restarts else None
    kafka = TansuServer(free_port(), data, s3=s3).start()
    mongo = SecantusServer(free_port(), data / "mongo", data).start()
    p = Pipeline(kafka.address, mongo.uri, data, "soak", partitions=3)
    p.create_topic()
    rounds = -(-args.messages // args.servers)
    servers = ",".join(f"srv{i:03d}" for i in range(args.servers))
    # Kafka down only with --kafka-restarts: only a Kafka that keeps its data survives it.
    # The consumer freeze only when asked: without it, old seeds repeat their runs.
    kinds = [kind for kind in FAULTS if (kind != "kafka_down" or args.kafka_restarts)
             and (kind != "consumer_frozen" or args.consumer_freezes)]
    faults = {kind: 0 for kind in kinds}  # how many of each were injected
    mongo_faults, kafka_faults = ServerFaults(), ServerFaults()
    failed_stops: list[str] = []
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
            if args.overlap:
                next_fault = time.monotonic() + rng.uniform(1, args.fault_every)
                kind = rng.choice(kinds)  # the same draws as randrange(len(kinds)): old seeds repeat their runs
            else:
                next_fault = time.monotonic() + args.fault_every
                kind = kinds[cycle % len(kinds)]
                cycle += 1
            if args.overlap and kind == "signal":
                victim = rng.randrange(len(consumers))
                signum = rng.choice([signal.SIGTERM, signal.SIGINT])
                began = time.monotonic()
                consumers[victim].signal(signum)
                code = _exit_code(consumers[victim], 30)
                took = time.monotonic() - began
                faults[kind] += 1
                log(f"fallo: {signal.Signals(signum).name} del consumidor {victim} (salió con {code} en {took:.1f} s)")
                if code != 0 or took > 10:
                    failed_stops.append(f"{signal.Signals(signum).name}: {code} en {took:.1f} s")
                time.sleep(rng.uniform(0, 3))
                consumers[victim] = p.start(CONSUMER, label=f"-{victim}")
            elif kind in SERVER_FAULTS:
                which, stopped, seconds, (low, high) = SERVER_FAULTS[kind]
                faulty, running_faults = (mongo, mongo_faults) if which == "MongoDB" else (kafka, kafka_faults)
                if not args.overlap:  # one after another, of fixed length
                    faults[kind] += 1
                    _server_fault(faulty, stopped, seconds)
                elif running_faults.start(_server_fault, faulty, stopped, rng.uniform(low, high)):
                    faults[kind] += 1
            elif kind == "kill":
                victim = rng.randrange(len(consumers))
                consumers[victim].kill()
                faults[kind] += 1
                log(f"fallo: kill -9 del consumidor {victim}")
                time.sleep(rng.uniform(1, 3))
                consumers[victim] = p.start(CONSUMER, label=f"-{victim}")
            elif kind == "consumer_frozen":  # in the foreground: no signal or kill reaches it frozen
                victim = rng.randrange(len(consumers))
                fixed, (low, high) = CONSUMER_FROZEN_SECONDS
                frozen_for = rng.uniform(low, high) if args.overlap else float(fixed)
                consumers[victim].signal(signal.SIGSTOP)
                faults[kind] += 1
                log(f"fallo: consumidor {victim} congelado (SIGSTOP) durante {frozen_for:.1f} s")
                time.sleep(frozen_for)
                consumers[victim].signal(signal.SIGCONT)
            elif kind == "signal":
                wait_group_stable(consumers)
                victim = rng.randrange(len(consumers))
                consumers[victim].signal(signal.SIGTERM)
                code = _exit_code(consumers[victim], 30)
                faults[kind] += 1
                log(f"fallo: SIGTERM del consumidor {victim} (salió con {code})")
                consumers[victim] = p.start(CONSUMER, label=f"-{victim}")
            else:  # poison
                burst = [rng.choice(POISON) for _ in range(rng.randint(3, 9))]
                producer_raw = KafkaProducer(bootstrap_servers=p.bootstrap, acks="all", enable_idempotence=False,
                                             max_request_size=2**21)  # the near-1 MB value fits
                for _, value in burst:
                    producer_raw.send(p.topic, key=b"poison", value=value)
                producer_raw.flush()
                producer_raw.close()
                poison_sent += len(burst)
                faults[kind] += 1
                log(f"fallo: {len(burst)} mensajes no válidos ({', '.join(name for name, _ in burst)})")
        mongo_faults.join()
        kafka_faults.join()
        sent_text = producer.text()
        sent, _, failed = producer_summary(sent_text)
        log(f"productor terminado: {sent} enviadas, {failed} fallidas (código {producer.process.returncode})")

        client: MongoClient[dict[str, Any]] = MongoClient(mongo.uri, tz_aware=True)
        db = client[p.database]
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while time.monotonic() < deadline and not _caught_up(db, sent):
            time.sleep(1)
        if not _caught_up(db, sent):
            log(f"aviso: los consumidores no lo han guardado todo {CATCH_UP_SECONDS} s después del productor; "
                "se paran y se audita lo guardado (¿un grupo que no termina de reequilibrarse?)")
        wait_group_stable(consumers)
        for consumer in consumers:
            consumer.signal(signal.SIGTERM)
        codes = [_exit_code(consumer, 60) for consumer in consumers]
        elapsed = time.monotonic() - started
        # Every consumer's log, those killed or stopped on the way included.
        logs = "".join(path.read_text(errors="replace") for path in data.glob(f"{CONSUMER.stem}*.log"))
        tracebacks = logs.count("Traceback") + sent_text.count("Traceback")

        problems: list[str] = []
        try:
            report = audit(db, valid=sent, invalid=poison_sent)
        except AssertionError as exc:
            report = None
            problems.append(f"auditoría: {exc}")
        if failed:
            problems.append(f"{failed} envíos fallidos")
        if tracebacks:
            problems.append(f"{tracebacks} trazas en los logs")
        if set(codes) != {0}:
            problems.append(f"códigos de salida {codes} tras el SIGTERM final")
        if failed_stops:
            problems.append(f"{len(failed_stops)} paradas con señal fallidas (código distinto de 0 o más de 10 s)")
        verdict = "OK" if not problems else "FALLA: " + "; ".join(problems)
        print()
        print("Auditoría del soak")
        print(f"  duración                      {elapsed:8.0f} s")
        print(f"  mensajes válidos enviados     {sent:8d}")
        print(f"  envíos fallidos               {failed:8d}")
        print(f"  mensajes no válidos enviados  {poison_sent:8d}")
        for kind, count in faults.items():
            print(f"  fallo: {fault_name(kind, args.overlap):<30}{count:4d}")
        print(f"  documentos raw                {db[RAW].count_documents({}):8d}")
        print(f"  documentos dead-letter        {db[DEADLETTER].count_documents({}):8d}")
        print(f"  ventanas KPI                  {db[KPIS].count_documents({}):8d}")
        if report is not None:
            print(f"  mensajes aún sin ventana      {sum(report.pending.values()):8d}  (por partición: {report.pending})")
        print(f"  salida tras el SIGTERM final  {codes}")
        print(f"  trazas (Traceback) en logs    {tracebacks:8d}")
        if args.overlap:
            print(f"  paradas con señal fallidas    {len(failed_stops):8d}  {failed_stops or ''}")
        print(f"  resultado                     {verdict}")
        print(f"  para repetirlo: .venv/bin/python tools/soak.py {shlex.join(sys.argv[1:])}".rstrip())
        return 0 if not problems else 1
    finally:
        mongo_faults.join()  # a server a fault has stopped must not be restarted after this
        kafka_faults.join()
        for process in consumers + ([producer] if producer else []):
            process.kill()
        kafka.kill()
        if s3 is not None:
            s3.kill()
        mongo.stop()


if __name__ == "__main__":
    sys.exit(main())
