"""Run the real scripts as subprocesses against real local servers, like a user.

Each test gets its own topic, consumer group and database on the shared servers,
so tests never see each other's data. The scripts run with a clean environment
(none of the developer's settings leak in) from a temporary working directory
(so no ``.env`` is picked up unless the test writes one).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from pymongo import MongoClient

from metrics_pipeline.settings import CONSUMER_OPTIONS, PRODUCER_OPTIONS, REPORT_OPTIONS

REPO = Path(__file__).resolve().parents[2]
PRODUCER = REPO / "productor_metrics_iabd06.py"
CONSUMER = REPO / "consumidor_metrics_iabd06.py"
REPORT = REPO / "informe_kpis_iabd06.py"

_SETTING_VARS = {o.env for o in PRODUCER_OPTIONS + CONSUMER_OPTIONS + REPORT_OPTIONS if o.env}
_counter = itertools.count()
STARTED: list["Running"] = []  # every background script, killed after each test


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Running:
    """A script started in the background; its output goes to a file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 120) -> int:
        return self.process.wait(timeout)

    def story(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log other than one per message or window
        (sent, stored window, batch), headed by the log's name: for failure messages."""
        kept = [line for line in self.text().splitlines() if not any(
            routine in line for routine in ("Enviada métrica", "Ventana KPI", "Lote guardado"))]
        return "\n".join([f"--- {self.log_path.name} (exit {self.process.poll()})", *kept[-lines:]])

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait_for(self, needle: str, timeout: float = 60, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {needle!r}:\n{self.text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} after {timeout} s:\n{self.text()[-3000:]}")


@dataclass
class Pipeline:
    bootstrap: str
    mongo_uri: str
    workdir: Path
    name: str
    partitions: int = 1
    window_size: int = 20
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_test(cls, bootstrap: str, mongo_uri: str, workdir: Path, test_name: str, **kwargs: Any) -> "Pipeline":
        base = "".join(c if c.isalnum() else "_" for c in test_name)[:40]
        return cls(bootstrap, mongo_uri, workdir, f"{base}_{next(_counter)}_{uuid.uuid4().hex[:6]}", **kwargs)

    @property
    def topic(self) -> str:
        return f"t_{self.name}"

    @property
    def database(self) -> str:
        return f"db_{self.name}"[:60]

    @property
    def group(self) -> str:
        return f"g_{self.name}"

    def env(self, **extra: str) -> dict[str, str]:
        settings = dict(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, KAFKA_TOPIC=self.topic, KAFKA_GROUP_ID=self.group,
            KAFKA_TOPIC_PARTITIONS=str(self.partitions), MONGODB_URI=self.mongo_uri,
            MONGODB_DATABASE=self.database, KPI_WINDOW_SIZE=str(self.window_size),
            KAFKA_SESSION_TIMEOUT_MS="6000", STARTUP_TIMEOUT_SECONDS="30")
        settings.update(self.extra_env)
        settings.update(extra)
        return clean_env(**settings)

    # -- running the scripts -------------------------------------------------------

    def run(self, script: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], cwd=self.workdir, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def start(self, script: Path, *args: str, env: dict[str, str] | None = None, label: str = "") -> Running:
        log_path = self.workdir / f"{script.stem}{label}-{next(_counter)}.log"
        log = open(log_path, "wb")
        process = subprocess.Popen([sys.executable, str(script), *args], cwd=self.workdir,
                                   env=env or self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        running = Running(process, log_path)
        STARTED.append(running)
        return running

    def produce(self, rounds: int, *args: str, servers: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--servers", servers] if servers else []
        done = self.run(PRODUCER, "--rounds", str(rounds), "--interval", "0", *extra, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def consume(self, *args: str, idle: float = 3.0) -> subprocess.CompletedProcess[str]:
        done = self.run(CONSUMER, "--idle-timeout", str(idle), *args)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    # -- direct access, for setting up and checking -------------------------------

    @property
    def db(self) -> Any:
        return MongoClient(self.mongo_uri, tz_aware=True)[self.database]

    def create_topic(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics({self.topic: {"num_partitions": self.partitions, "replication_factor": -1}})
        finally:
            admin.close()

    def send_raw(self, items: list[tuple[bytes | None, bytes | None]], compression: str | None = None
                 ) -> list[tuple[int, int]]:
        """Send raw key/value pairs in order; returns their (partition, offset)."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False,
                                 max_request_size=2 * 1024 * 1024, compression_type=compression)
        try:
            futures = [producer.send(self.topic, key=k, value=v) for k, v in items]
            producer.flush()
            return [(m.partition, m.offset) for m in (f.get(30) for f in futures)]
        finally:
            producer.close()


    def topic_records(self, timeout: float = 60) -> list[Any]:
        """Every record of the topic, from the beginning of each partition to its end
        offset now (no group). Read until those offsets, not until the topic has been
        quiet for a while: a busy machine can take seconds for the first fetch."""
        reader = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                               auto_offset_reset="earliest")
        try:
            partitions = [TopicPartition(self.topic, n) for n in range(self.partitions)]
            reader.assign(partitions)
            end = reader.end_offsets(partitions)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while any(reader.position(tp) < end[tp] for tp in partitions):
                assert time.monotonic() < deadline, f"{len(records)} records read in {timeout} s, end offsets {end}"
                for batch in reader.poll(timeout_ms=500).values():
                    records.extend(batch)
            return records
        finally:
            reader.close()

    def topic_message_ids(self) -> set[str]:
        return {json.loads(r.value)["message_uuid"] for r in self.topic_records()}


def producer_summary(log: str) -> tuple[int, int, int]:
    """(sent, resent, failed) from the producer's last line."""
    match = re.search(r"(\d+) métricas? enviadas?, (\d+) reenvíos?, (\d+) fallidas?", log)
    assert match, f"no producer summary in:\n{log[-2000:]}"
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def valid_message(server_id: str = "web01", **overrides: Any) -> dict[str, Any]:
    message = {
        "server_id": server_id,
        "timestamp_utc": "2026-11-26T15:04:05.123456+00:00",
        "metrics": {"cpu_percent": 42.17, "memory_percent": 63.5, "disk_io_mbps": 12.34,
                    "network_mbps": 77.01, "error_count": 1},
        "message_uuid": str(uuid.uuid4()),
    }
    message.update(overrides)
    return message


def encode(message: Any) -> bytes:
    return json.dumps(message).encode("utf-8")


@dataclass(frozen=True)
class Record:
    """A Kafka record as the ingestor reads it, for feeding it directly."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
