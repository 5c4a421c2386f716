"""tools/local_stack.py, as `make stack` runs it: a stop signal stops both servers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pipeline import REPO, clean_env
from tools.local_stack import free_port, port_in_use


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_both_servers(tmp_path: Path, signum: int) -> None:
    kafka_port, mongo_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "local_stack.py"), "--kafka-port",
                                str(kafka_port), "--mongo-port", str(mongo_port), "--data-dir", str(tmp_path)],
                               cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        assert b"Ctrl-C para parar" in process.stdout.readline()
        assert port_in_use(kafka_port) and port_in_use(mongo_port)
        process.send_signal(signum)
        assert process.wait(30) == 0
        deadline = time.monotonic() + 10
        while (port_in_use(kafka_port) or port_in_use(mongo_port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_in_use(kafka_port) and not port_in_use(mongo_port), "a server outlived `make stack`"
    finally:
        process.kill()
