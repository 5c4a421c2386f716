"""tools/local_stack.py, as `make stack` runs it: a stop signal stops both servers; a
server that dies stops the other, with a line saying which."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.pipeline import REPO, clean_env
from tools.local_stack import free_port, port_in_use


def _start_stack(tmp_path: Path) -> tuple[subprocess.Popen[str], int, int]:
    """`make stack` on free ports, once it says it is ready: (process, Kafka port, MongoDB port)."""
    kafka_port, mongo_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "local_stack.py"), "--kafka-port",
                                str(kafka_port), "--mongo-port", str(mongo_port), "--data-dir", str(tmp_path)],
                               cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    assert "Ctrl-C para parar" in process.stdout.readline()
    return process, kafka_port, mongo_port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_both_servers(tmp_path: Path, signum: int) -> None:
    process, kafka_port, mongo_port = _start_stack(tmp_path)
    try:
        assert port_in_use(kafka_port) and port_in_use(mongo_port)
        process.send_signal(signum)
        assert process.wait(30) == 0
        deadline = time.monotonic() + 10
        while (port_in_use(kafka_port) or port_in_use(mongo_port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_in_use(kafka_port) and not port_in_use(mongo_port), "a server outlived `make stack`"
    finally:
        process.kill()


def test_a_server_that_dies_stops_the_stack_with_a_line_saying_which(tmp_path: Path) -> None:
    process, kafka_port, _ = _start_stack(tmp_path)
    try:
        servers = psutil.Process(process.pid).children()
        tansu = [p for p in servers if "tansu" in p.name()]
        assert len(servers) == 2 and len(tansu) == 1
        tansu[0].kill()
        assert process.wait(30) == 1
        _, alive = psutil.wait_procs(servers, timeout=30)
        assert alive == [], "the other server outlived `make stack`"
        assert process.stderr is not None
        error = process.stderr.read()
        assert error.startswith("Tansu (Kafka) ha terminado sin que nadie lo parara (código -9); últimas "
                                f"líneas de su log ({tmp_path}/tansu-{kafka_port}.log):")
        assert "Traceback" not in error
    finally:
        process.kill()
