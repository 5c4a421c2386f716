"""The one-command demo, end to end, on free ports (make demo uses 29092 and 27017)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support.pipeline import REPO, clean_env
from tools.local_stack import free_port

DEMO = REPO / "tools" / "demo.py"


def test_demo_runs_the_pipeline_shows_windows_and_ends_with_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--rounds", "9", "--interval", "0.2", "--kafka-port", str(free_port()),
         "--mongo-port", str(free_port()), "--data-dir", str(tmp_path)],
        env=clean_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("Ventana KPI") == 2  # 45 messages: two windows of 20
    # The producer starts once the consumer has its partition: windows close live.
    assert out.index("Particiones asignadas") < out.index("Productor y consumidor en marcha")
    assert "Productor: código 0; consumidor: código 0" in out
    assert "Últimas 2 ventanas KPI (de 2)" in out and "Resumen por servidor" in out
    assert (tmp_path / "informe_kpis_iabd06.png").stat().st_size > 10_000
    assert "Servidores locales parados." in out
    assert "Traceback" not in out + done.stderr


def test_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(DEMO), "--rounds", "1", "--kafka-port", str(port), "--mongo-port",
             str(free_port()), "--data-dir", str(tmp_path)],
            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"El puerto {port} (Kafka) ya está en uso" in done.stderr
