"""The one-command demo, end to end, on free ports (make demo uses 29092 and 27017)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil

from tests.support.pipeline import REPO, clean_env
from tools.local_stack import free_port

DEMO = REPO / "tools" / "demo.py"


def test_demo_runs_the_pipeline_shows_windows_and_ends_with_the_report(tmp_path: Path) -> None:
    done = subprocess.run(_demo_command(tmp_path, rounds=9), env=clean_env(), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("Ventana KPI") == 2  # 45 messages: two windows of 20
    # The producer starts once the consumer has its partition: windows close live.
    assert out.index("Particiones asignadas") < out.index("Productor y consumidor en marcha")
    assert "Productor: código 0; consumidor: código 0" in out
    assert "Últimas 2 ventanas KPI (de 2)" in out and "Resumen por servidor" in out
    assert (tmp_path / "informe_kpis_iabd06.png").stat().st_size > 10_000
    assert "Auditoría de 2 ventanas KPI (40 mensajes comprobados) contra system_metrics_raw_iabd06: todas cuadran." in out
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


def test_demo_refuses_bad_flags_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    # make demo DEMO_ROUNDS=0 used to run until Ctrl-C, as if no count had been given.
    for flag, value, reason in (("--rounds", "0", "debe ser >= 1"), ("--interval", "-1", "debe ser >= 0"),
                                ("--kafka-port", "70000", "un puerto va de 1 a 65535")):
        done = subprocess.run([sys.executable, str(DEMO), flag, value, "--data-dir", str(tmp_path)],
                              env=clean_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"argumento {flag}: {reason}" in done.stderr
        assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # nothing started


def _demo_command(tmp_path: Path, rounds: int | None = 3) -> list[str]:
    """The demo on free ports; ``rounds=None``: until stopped."""
    return [sys.executable, str(DEMO), *(["--rounds", str(rounds)] if rounds else []), "--interval", "0.2",
            "--kafka-port", str(free_port()), "--mongo-port", str(free_port()), "--data-dir", str(tmp_path)]


def _kill_all(processes: list) -> None:
    """Whatever of these is still running (subprocess.Popen or psutil.Process)."""
    for process in processes:
        try:
            process.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def test_demo_does_not_start_the_producer_when_the_consumer_cannot_start(tmp_path: Path) -> None:
    done = subprocess.run(_demo_command(tmp_path), env=clean_env(KPI_WINDOW_SIZE="cero"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "KPI_WINDOW_SIZE" in done.stdout  # the consumer's own error line, shown
    assert "El consumidor terminó con código 2 antes de entrar en su grupo; el productor no se arranca" in done.stdout
    assert not (tmp_path / "productor.log").exists()
    assert "Servidores locales parados." in done.stdout


def test_ctrl_c_while_the_consumer_joins_stops_the_demo_without_starting_the_producer(tmp_path: Path) -> None:
    demo = subprocess.Popen(_demo_command(tmp_path), env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if line.startswith("Esperando a que el consumidor"):
                demo.send_signal(signal.SIGINT)
                break
        rest, _ = demo.communicate(timeout=60)
    finally:
        demo.kill()
    out = "".join(seen) + rest
    assert demo.returncode == 0, out
    assert "Demo interrumpida antes de arrancar el productor." in out
    assert not (tmp_path / "productor.log").exists()
    assert "Servidores locales parados." in out and "Traceback" not in out
    # The consumer was stopped in its first milliseconds: no traceback in its log either
    # (the demo sends SIGTERM for this; with SIGINT one was possible, though never seen here).
    assert "Traceback" not in (tmp_path / "consumidor.log").read_text(errors="replace")


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """What a terminal shows, until ``marker`` (or AssertionError after ``timeout``)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} not shown in {timeout:g} s: {seen.decode(errors='replace')[-2000:]}"
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 65536)
    return seen


def test_closing_the_terminal_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    # A student closes the terminal window instead of pressing Ctrl-C. The servers and
    # scripts run in sessions of their own, so the hang-up (SIGHUP) reaches only the
    # demo: it must stop them, or they keep running and the ports stay taken.
    terminal, tty = os.openpty()
    demo = subprocess.Popen(
        _demo_command(tmp_path, rounds=None), env=clean_env(), stdin=tty, stdout=tty, stderr=tty, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # the tty is its controlling terminal
    os.close(tty)
    started: list[psutil.Process] = []
    try:
        _read_until(terminal, b"Ventana KPI", timeout=120)
        started = psutil.Process(demo.pid).children(recursive=True)
        assert len(started) >= 4  # Tansu, SecantusDB, the consumer, the producer
        os.close(terminal)  # the window closes: the kernel hangs up the terminal
        assert demo.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(started, timeout=30)
        assert alive == []
    finally:
        _kill_all([demo, *started])
    consumer_log = (tmp_path / "consumidor.log").read_text()
    assert "Señal SIGTERM recibida" in consumer_log and "Fin del consumidor (señal de parada)" in consumer_log
    assert "Fin del productor" in (tmp_path / "productor.log").read_text()


def test_a_server_that_dies_stops_the_demo_with_a_line_saying_which(tmp_path: Path) -> None:
    # Without a watch the scripts would retry for ever and the demo would wait with them.
    demo = subprocess.Popen(_demo_command(tmp_path, rounds=None), env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started: list[psutil.Process] = []
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "Ventana KPI" in line:
                break
        started = psutil.Process(demo.pid).children(recursive=True)
        mongo = [p for p in started if "secantusd" in " ".join(p.cmdline())]
        assert len(mongo) == 1
        mongo[0].kill()
        rest, _ = demo.communicate(timeout=60)
        _, alive = psutil.wait_procs(started, timeout=30)
        assert alive == [], "the demo left a server or a script running"
    finally:
        _kill_all([demo, *started])
    out = "".join(seen) + rest
    assert demo.returncode == 1, out
    assert "SecantusDB (MongoDB) ha terminado sin que nadie lo parara (código -9)" in out
    assert "Informe de KPIs" not in out  # it would wait for the MongoDB that is gone
    assert "Servidores locales parados." in out and "Traceback" not in out
