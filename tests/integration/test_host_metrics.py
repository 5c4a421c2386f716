"""--source psutil: the producer reports this machine's real metrics, valid end to end."""

from __future__ import annotations

import socket

from tests.support.audit import DEADLETTER, RAW
from tests.support.pipeline import PRODUCER, Pipeline


def test_psutil_source_sends_valid_plausible_messages_for_this_host(pipeline: Pipeline) -> None:
    done = pipeline.run(PRODUCER, "--source", "psutil", "--rounds", "4", "--interval", "0.3")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"Enviada métrica de {socket.gethostname()} a Kafka") == 4
    # The first round measures a full interval too, from the moment Kafka is ready.
    assert "Primera medida dentro de 0.3 s" in done.stderr
    pipeline.consume()
    docs = list(pipeline.db[RAW].find())
    assert len(docs) == 4 and pipeline.db[DEADLETTER].count_documents({}) == 0
    for doc in docs:
        m = doc["metrics"]
        assert doc["server_id"] == socket.gethostname()
        assert 0 <= m["cpu_percent"] <= 100 and 0 < m["memory_percent"] <= 100
        assert m["disk_io_mbps"] >= 0 and m["network_mbps"] >= 0
        assert isinstance(m["error_count"], int) and m["error_count"] >= 0
        assert round(m["cpu_percent"], 2) == m["cpu_percent"]
    # Rounds are 0.3 s apart, start to start.
    stamps = sorted(doc["timestamp"] for doc in docs)
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    assert all(0.2 <= gap <= 1.5 for gap in gaps), gaps


def test_psutil_source_takes_a_single_given_server_id(pipeline: Pipeline) -> None:
    done = pipeline.run(PRODUCER, "--source", "psutil", "--servers", "mi-portatil", "--rounds", "1", "--interval", "0")
    assert done.returncode == 0, done.stderr
    assert "Enviada métrica de mi-portatil a Kafka" in done.stderr
    # Counts agree with their nouns; --interval 0 is said as such.
    assert "1 servidor (mi-portatil) sin pausa entre rondas, 1 ronda" in done.stderr
    assert "Fin del productor: 1 ronda, 1 métrica enviada, 0 reenvíos, 0 fallidas" in done.stderr
