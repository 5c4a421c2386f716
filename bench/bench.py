"""Throughput benchmark (``make bench``): ours against the naive consumer and the database.

In one run, on the same local servers (Tansu for Kafka, SecantusDB for MongoDB) and
the same backlog of ``--messages`` messages built by our producer with --interval 0:

1. the producer's send rate with --interval 0 (first to last confirmed send);
2. the database's ceiling: insert_many of the same raw documents in batches of
   1,000, with our write concern (j: true), no Kafka; measured right before and
   right after 3, and their mean used (the shared machine drifts by 10-20 % within
   minutes, and a single measurement on one side of 3 tilts the ratio);
3. our consumer's drain rate, from the first record received to the last batch
   committed (KPI windows included, start-up and group join excluded);
4. the naive reference consumer (bench/naive_consumer.py: insert_one and a commit
   per message) over the first ``--naive-messages`` of the same backlog;
5. 3 and 4 again through tools/tcp_proxy.py, 20 ms each way in front of
   MongoDB, like a remote Atlas cluster (the naive one over ``--naive-proxy-messages``);
6. our consumer's peak memory (VmHWM) while draining ``--memory-messages``
   (100,000) and while draining the first backlog, to show it does not grow with it;
7. our consumer's CPU time per message (user + system, start-up excluded: the CPU of
   draining the backlog minus that of a run that reads 20 messages), i.e. how fast
   it could go on one core if the database cost nothing;
8. the naive consumer's two round trips apart (``ROUND_TRIPS`` synchronous offset
   commits, then as many insert_one with j: true): what it pays per message, and
   the ratio that would be left with a database that cost nothing, where it would
   still pay its commit and ours would still pay its CPU.

Prints a table and writes it, with the machine, versions and command, to
BENCHMARKS.md (between the result markers; the analysis below them is kept).
Rates are ratios within one run: the machine is shared and noisy.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402
from pymongo import ASCENDING, DESCENDING, MongoClient  # noqa: E402

from metrics_pipeline.documents import raw_document  # noqa: E402
from metrics_pipeline.message import parse_message  # noqa: E402
from metrics_pipeline.storage import journaled  # noqa: E402
from tests.support.audit import KPIS, RAW  # noqa: E402
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline, Running  # noqa: E402
from tools.arguments import at_least, tool_parser  # noqa: E402
from tools.local_stack import SecantusServer, TansuServer, free_port, port_in_use, tansu_binary  # noqa: E402

BEGIN, END = "<!-- resultados:inicio -->", "<!-- resultados:fin -->"
ROUND_TRIPS = 500
_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
_BATCH = re.compile(r"Lote guardado en [\d.]+ s \(\d+ msg/s\), ([\d.]+) s después de llegar de Kafka: "
                    r"(\d+) mensajes?")


def _ts(line: str) -> float:
    found = _TS.match(line)
    if found is None:
        raise ValueError(f"línea de log sin hora: {line[:80]!r}")
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def producer_rate(log: str) -> tuple[int, float]:
    sent = [line for line in log.splitlines() if "Enviada métrica de" in line]
    return len(sent), len(sent) / max(_ts(sent[-1]) - _ts(sent[0]), 1e-3)


def consumer_rate(log: str) -> tuple[int, float]:
    batches = [(line, found) for line in log.splitlines() if (found := _BATCH.search(line))]
    first_line, first = batches[0]
    start = _ts(first_line) - float(first.group(1))
    end = _ts(batches[-1][0])
    messages = sum(int(m.group(2)) for _, m in batches)
    return messages, messages / max(end - start, 1e-3)


def peak_rss_mb(running: Running, timeout: float) -> float:
    """Poll the high-water mark of the resident set until the process exits."""
    peak = 0
    deadline = time.monotonic() + timeout
    path = f"/proc/{running.process.pid}/status"
    while running.process.poll() is None and time.monotonic() < deadline:
        try:
            for line in open(path):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.1)
    running.wait(max(deadline - time.monotonic(), 1))
    return peak / 1024


@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    verdict: str = ""


def _check(ok: bool) -> str:
    return "cumple" if ok else "NO cumple"


def main() -> int:
    parser = tool_parser("Benchmark de rendimiento del consumidor (lo explica bench/README.md).")
    parser.add_argument("--messages", type=at_least(20, int), default=20_000, metavar="N",
                        help="atraso principal: lo envía el productor y lo vacían nuestro consumidor "
                             "(local y por el proxy) y el techo de la base de datos")
    parser.add_argument("--servers", type=at_least(1, int), default=100, metavar="N",
                        help="ids de servidor del productor")
    parser.add_argument("--naive-messages", type=at_least(20, int), default=3_000, metavar="N",
                        help="mensajes que vacía el consumidor ingenuo contra MongoDB local")
    parser.add_argument("--naive-proxy-messages", type=at_least(20, int), default=300, metavar="N",
                        help="mensajes que vacía el consumidor ingenuo a través del proxy")
    parser.add_argument("--memory-messages", type=at_least(20, int), default=100_000, metavar="N",
                        help="atraso de la medida de memoria")
    parser.add_argument("--delay-ms", type=at_least(0, float), default=20.0, metavar="MS",
                        help="retardo del proxy en cada sentido, en ms")
    parser.add_argument("--data-dir", default=str(ROOT / ".bench-data"), metavar="DIRECTORIO",
                        help="datos y logs de la ejecución (se vacía al empezar)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), metavar="FICHERO",
                        help="dónde escribir la tabla de resultados")
    args = parser.parse_args()
    command = "make bench" if len(sys.argv) == 1 else "python bench/bench.py " + " ".join(sys.argv[1:])

    data = Path(args.data_dir)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    kafka = TansuServer(free_port(), data).start()
    mongo = SecantusServer(free_port(), data / "mongo", data).start()
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, str(ROOT / "tools" / "tcp_proxy.py"), "--listen",
                              f"127.0.0.1:{proxy_port}", "--target", f"127.0.0.1:{mongo.port}",
                              "--delay-ms", str(args.delay_ms)])
    proxy_uri = f"mongodb://127.0.0.1:{proxy_port}/?directConnection=true"
    servers = ",".join(f"srv{i:03d}" for i in range(args.servers))
    rows: list[Row] = []

    def say(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    try:
        while not port_in_use(proxy_port):
            time.sleep(0.05)
        backlog = Pipeline(kafka.address, mongo.uri, data, "bench")
        # 1. Producer.
        rounds = args.messages // args.servers
        say(f"productor: {rounds * args.servers} mensajes con --interval 0")
        done = backlog.run(PRODUCER, "--rounds", str(rounds), "--interval", "0", "--servers", servers, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        sent, producer = producer_rate(done.stderr)
        total = sent

        # 2. Database ceiling: the same raw documents, insert_many, our write concern and index.
        say("techo de la base de datos: insert_many de los mismos documentos")
        reader = KafkaConsumer(bootstrap_servers=kafka.address, enable_auto_commit=False,
                               auto_offset_reset="earliest", consumer_timeout_ms=3000, max_poll_records=5000)
        reader.assign([TopicPartition(backlog.topic, 0)])
        records = [r for r in reader][:total]
        reader.close()
        now = datetime.now().astimezone()
        docs = [raw_document(parse_message(r.value), r.topic, r.partition, r.offset, now) for r in records]
        client: MongoClient[dict[str, Any]] = MongoClient(mongo.uri)
        ceiling_before = _ceiling(client["bench_ceiling_before"], docs)

        # 3. Ours, local MongoDB, with the peak memory of this smaller backlog and, as
        # the only child to end meanwhile, its CPU time (7).
        say("nuestro consumidor contra MongoDB local")
        ours_local = Pipeline(kafka.address, mongo.uri, data, "bench")
        ours_local.extra_env = {"MONGODB_DATABASE": "bench_ours", "KAFKA_GROUP_ID": "bench_ours"}
        cpu_before = _children_cpu()
        running = ours_local.start(CONSUMER, "--max-messages", str(total), label="-ours-local")
        rss_small = peak_rss_mb(running, 600)
        cpu_drain = _children_cpu() - cpu_before
        assert running.process.returncode == 0, running.text()[-2000:]
        _, ours = consumer_rate(running.text())
        stored = client["bench_ours"][RAW].count_documents({})
        windows = client["bench_ours"][KPIS].count_documents({})
        assert (stored, windows) == (total, total // 20), (stored, windows)
        say("techo de la base de datos otra vez, justo después de nuestro consumidor")
        ceiling_after = _ceiling(client["bench_ceiling_after"], docs)
        ceiling = (ceiling_before + ceiling_after) / 2
        say("techo sin el índice secundario (solo referencia: lo que cuesta ese índice)")
        bare = _ceiling(client["bench_ceiling_bare"], docs, indexed=False)

        say("nuestro consumidor leyendo solo 20 mensajes (su CPU de arranque)")
        start_only = Pipeline(kafka.address, mongo.uri, data, "bench")
        start_only.extra_env = {"MONGODB_DATABASE": "bench_start", "KAFKA_GROUP_ID": "bench_start"}
        cpu_before = _children_cpu()
        assert start_only.run(CONSUMER, "--max-messages", "20", timeout=300).returncode == 0
        cpu_per_message = (cpu_drain - (_children_cpu() - cpu_before)) / (total - 20)

        # 4. Naive, local MongoDB.
        say(f"consumidor ingenuo contra MongoDB local ({args.naive_messages} mensajes)")
        naive = _naive(kafka.address, backlog.topic, "bench_naive", mongo.uri, args.naive_messages)
        say(f"sus dos viajes por mensaje, por separado ({ROUND_TRIPS} commits y {ROUND_TRIPS} insert_one)")
        commit_ms, insert_ms = _round_trips(kafka.address, backlog.topic, client["bench_round_trips"])

        # 5. Through the latency proxy.
        say(f"nuestro consumidor a través del proxy ({args.delay_ms:g} ms por sentido)")
        ours_remote = Pipeline(kafka.address, proxy_uri, data, "bench")
        ours_remote.extra_env = {"MONGODB_DATABASE": "bench_ours_proxy", "KAFKA_GROUP_ID": "bench_ours_proxy"}
        running = ours_remote.start(CONSUMER, "--max-messages", str(total), label="-ours-proxy")
        running.wait(900)
        assert running.process.returncode == 0, running.text()[-2000:]
        _, ours_proxy = consumer_rate(running.text())
        assert client["bench_ours_proxy"][RAW].count_documents({}) == total
        say(f"consumidor ingenuo a través del proxy ({args.naive_proxy_messages} mensajes)")
        naive_proxy = _naive(kafka.address, backlog.topic, "bench_naive_proxy", proxy_uri, args.naive_proxy_messages)

        # 6. Peak memory on the big backlog.
        big = Pipeline(kafka.address, mongo.uri, data, "bench_big")
        rounds_big = args.memory_messages // args.servers
        say(f"productor: {rounds_big * args.servers} mensajes para medir la memoria")
        done = big.run(PRODUCER, "--rounds", str(rounds_big), "--interval", "0", "--servers", servers,
                       env=big.env(LOG_LEVEL="WARNING"), timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        say("nuestro consumidor vaciando ese atraso")
        running = big.start(CONSUMER, "--max-messages", str(rounds_big * args.servers), label="-memory")
        rss_big = peak_rss_mb(running, 900)
        assert running.process.returncode == 0, running.text()[-2000:]
        _, ours_big = consumer_rate(running.text())
    finally:
        proxy.terminate()
        kafka.kill()
        mongo.stop()

    rows = [
        Row("productor, --interval 0", f"{producer:,.0f} msg/s", ">= 5.000 msg/s", _check(producer >= 5000)),
        Row(f"techo de la base de datos (insert_many con el índice de SPEC §3 y j:true, como el consumidor; "
            f"antes {ceiling_before:,.0f}, después {ceiling_after:,.0f})", f"{ceiling:,.0f} docs/s"),
        Row("  el mismo techo sin el índice secundario (referencia)", f"{bare:,.0f} docs/s"),
        Row("nuestro consumidor, MongoDB local", f"{ours:,.0f} msg/s"),
        Row(f"consumidor ingenuo, MongoDB local ({args.naive_messages} msgs)", f"{naive:,.1f} msg/s"),
        Row("nuestro / ingenuo, local", f"{ours / naive:,.1f}x", ">= 40x", _check(ours / naive >= 40)),
        Row("nuestro / techo de la base de datos", f"{ours / ceiling:.2f}", ">= 0,7", _check(ours / ceiling >= 0.7)),
        Row("  nuestro / techo sin el índice secundario (referencia)", f"{ours / bare:.2f}"),
        Row(f"nuestro consumidor, proxy {args.delay_ms:g} ms", f"{ours_proxy:,.0f} msg/s"),
        Row(f"consumidor ingenuo, proxy {args.delay_ms:g} ms ({args.naive_proxy_messages} msgs)",
            f"{naive_proxy:,.1f} msg/s"),
        Row("nuestro / ingenuo, proxy", f"{ours_proxy / naive_proxy:,.0f}x", ">= 100x",
            _check(ours_proxy / naive_proxy >= 100)),
        Row("CPU de nuestro consumidor por mensaje (sin el arranque)", f"{cpu_per_message * 1e6:.0f} µs"),
        Row("  => máximo con una base de datos sin coste (1 núcleo)", f"{1 / cpu_per_message:,.0f} msg/s"),
        Row(f"el ingenuo por mensaje, medido aparte: commit a Kafka + insert_one con j:true "
            f"(=> {1000 / (commit_ms + insert_ms):,.0f} msg/s)", f"{commit_ms:.2f} + {insert_ms:.2f} ms"),
        Row("  => nuestro / ingenuo con una base de datos sin coste (nuestra CPU frente a su commit)",
            f"{commit_ms / 1000 / cpu_per_message:,.1f}x"),
        Row(f"memoria máxima, atraso de {total:,} msgs", f"{rss_small:.0f} MB"),
        Row(f"memoria máxima, atraso de {rounds_big * args.servers:,} msgs ({ours_big:,.0f} msg/s)",
            f"{rss_big:.0f} MB", "<= 200 MB", _check(rss_big <= 200)),
    ]
    table = _table(rows)
    print()
    print(table)
    _write(Path(args.output), table, command, total)
    print(f"\nResultados escritos en {args.output}. Para repetir: {command}")
    return 0


def _ceiling(database, docs: list[dict], indexed: bool = True) -> float:
    """insert_many of the raw documents in batches of 1,000 into a new collection
    with our write concern and (unless ``indexed`` is False) the index of SPEC §3,
    which the consumer's raw collection has too: docs/s."""
    collection = database.get_collection(RAW, write_concern=journaled(database.client.write_concern))
    if indexed:
        collection.create_index([("server_id", ASCENDING), ("timestamp", DESCENDING)])
    started = time.perf_counter()
    for i in range(0, len(docs), 1000):
        collection.insert_many(docs[i:i + 1000], ordered=False)  # each has its _id: not modified
    return len(docs) / (time.perf_counter() - started)


def _children_cpu() -> float:
    """User + system seconds of the children that have ended (and been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _round_trips(bootstrap: str, topic: str, database) -> tuple[float, float]:
    """Milliseconds of one synchronous offset commit (to partition 0 of ``topic``,
    in a group of its own) and of one insert_one with j: true (into a new
    collection): the naive consumer's two round trips, each ROUND_TRIPS times."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="bench_round_trips", enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.commit({partition: OffsetAndMetadata(0, "", -1)})  # connects and finds the coordinator
    started = time.perf_counter()
    for offset in range(1, ROUND_TRIPS + 1):
        consumer.commit({partition: OffsetAndMetadata(offset, "", -1)})
    commit_ms = (time.perf_counter() - started) * 1000 / ROUND_TRIPS
    consumer.close()
    collection = database.get_collection(RAW, write_concern=journaled(database.client.write_concern))
    collection.insert_one({"warm": "up"})
    started = time.perf_counter()
    for i in range(ROUND_TRIPS):
        collection.insert_one({"server_id": f"srv{i % 100:03d}", "i": i})
    return commit_ms, (time.perf_counter() - started) * 1000 / ROUND_TRIPS


def _naive(bootstrap: str, topic: str, database: str, uri: str, messages: int) -> float:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "naive_consumer.py"), "--bootstrap-servers",
                           bootstrap, "--topic", topic, "--group-id", database, "--mongodb-uri", uri,
                           "--database", database, "--max-messages", str(messages)],
                          capture_output=True, text=True, timeout=1800)
    match = re.search(r"NAIVE_RESULT messages=(\d+) seconds=([\d.]+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr[-2000:]
    return int(match.group(1)) / float(match.group(2))


def _table(rows: list[Row]) -> str:
    lines = ["| medida | resultado | objetivo | |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {r.name} | {r.value} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    memory = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    tansu = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("kafka-python", "pymongo", "secantusdb"))
    return (f"- máquina: {cpu}, {os.cpu_count()} núcleos, {memory / 1024 / 1024:.0f} GiB, "
            f"{platform.system()} {platform.release()}\n"
            f"- Python {platform.python_version()}; {versions}; {tansu}\n"
            f"- servidores: Tansu (Kafka, memoria) y SecantusDB (MongoDB, WiredTiger, --standalone) en "
            f"127.0.0.1, en la misma máquina que los clientes")


def _write(path: Path, table: str, command: str, messages: int) -> None:
    block = (f"{BEGIN}\n\nÚltima ejecución: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
             f"atraso de {messages:,} mensajes. Orden: `{command}`\n\n{_machine()}\n\n{table}\n\n{END}")
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
