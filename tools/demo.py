"""The one-command demo (``make demo``): the whole pipeline on this machine.

1. starts the local Kafka (Tansu) on 29092 and MongoDB (SecantusDB) on 27017, the
   ports the scripts use by default (it stops if a port is taken, saying which);
2. starts the consumer and, once it has its partitions, the producer, exactly as a
   user would (Ctrl-C meanwhile, or a consumer that exits, and the producer never starts);
3. shows every KPI window as it is written (full logs in .demo-data/);
4. on Ctrl-C (or after ``--rounds``) stops the producer, lets the consumer finish,
   prints the KPI report and its chart, and stops everything it started. Closing
   the terminal does the same (SIGHUP): the servers and scripts run in sessions of
   their own, so nothing else would stop them and they would keep the ports taken.
   A server that dies meanwhile stops the demo too, with a line saying which (exit 1).

Each demo starts with an empty MongoDB (``--keep-data`` keeps the previous one):
the local Kafka keeps nothing between runs, so old and new data would not match.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics_pipeline.cli import tolerate_unencodable_output, write_to_nowhere  # noqa: E402
from metrics_pipeline.shutdown import stop_signals  # noqa: E402
from tools.arguments import at_least, port_number, tool_parser  # noqa: E402
from tools.local_stack import SecantusServer, ServerProcess, TansuServer, port_in_use  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JOIN_WAIT_SECONDS = 60.0  # at most, before starting the producer anyway
SHOW = ("Ventana KPI", "Alerta", "WARNING", "ERROR", "CRITICAL", "Particiones asignadas", "Fin del",
        ": error:")  # the last: a script's one-line error before its logging is set up (bad settings)


def _show(line: str) -> None:
    """Print a script's line on the terminal. A terminal closed before the SIGHUP
    handler ran fails the write (EIO): the line is in the log already, so from then on
    the output goes nowhere, and the pump goes on copying the script's lines to its log."""
    try:
        print(line, flush=True)
    except OSError:
        write_to_nowhere(sys.stdout, sys.stderr)


def _watch_servers(servers: tuple[ServerProcess, ...], interrupted: threading.Event) -> threading.Event:
    """Stop the demo when a server it started dies (a crash, a kill from outside):
    the scripts would otherwise wait for it, retrying for ever. Says which one and
    why, sets ``interrupted`` (the demo then stops like on Ctrl-C) and the event
    returned, after which the demo exits 1."""
    lost = threading.Event()

    def run() -> None:
        while not interrupted.wait(0.5):
            for server in servers:
                if server.died():
                    _show(server.death_notice())
                    lost.set()
                    interrupted.set()
                    return

    threading.Thread(target=run, name="vigia-servidores", daemon=True).start()
    return lost


def _pump(name: str, process: subprocess.Popen[bytes], log_path: Path, show_all: bool,
          assigned: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        assert process.stdout is not None
        with open(log_path, "ab") as log:
            for raw in iter(process.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                if assigned is not None and "Particiones asignadas" in line:
                    assigned.set()
                if show_all or any(word in line for word in SHOW):
                    _show(f"[{name}] {line}")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _start(script: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(REPO / script), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes], name: str, timeout: float = 20) -> None:
    """Stop a script as Ctrl-C would (the scripts treat SIGTERM and SIGINT alike).

    SIGTERM, not SIGINT: a script stopped in its first milliseconds, before its own
    handler is installed, then just ends, where SIGINT would print Python's
    KeyboardInterrupt traceback into its log."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{name} no terminó en {timeout:g} s; se fuerza", flush=True)
            process.kill()
            process.wait()


def main() -> int:
    parser = tool_parser("Demo del pipeline completo en esta máquina.")
    parser.add_argument("--rounds", type=at_least(1, int), default=None, metavar="N",
                        help="rondas del productor (por defecto: hasta Ctrl-C)")
    parser.add_argument("--interval", type=at_least(0, float), default=1.0, metavar="SEGUNDOS",
                        help="segundos entre rondas")
    parser.add_argument("--data-dir", default=str(REPO / ".demo-data"), metavar="DIRECTORIO",
                        help="datos de los servidores de la demo y sus logs")
    parser.add_argument("--keep-data", action="store_true", help="no vaciar el MongoDB de la demo anterior")
    parser.add_argument("--kafka-port", type=port_number, default=29092, metavar="PUERTO",
                        help="puerto del Kafka local")
    parser.add_argument("--mongo-port", type=port_number, default=27017, metavar="PUERTO",
                        help="puerto del MongoDB local")
    args = parser.parse_args()

    data = Path(args.data_dir)
    for port, what, hint in ((args.kafka_port, "Kafka", "¿un 'docker compose up' en marcha?"),
                             (args.mongo_port, "MongoDB", "¿un mongod o un contenedor mongo en marcha?")):
        if port_in_use(port):
            print(f"El puerto {port} ({what}) ya está en uso {hint} Párelo antes de la demo.", file=sys.stderr)
            return 1
    if not args.keep_data and (data / "mongo").exists():
        shutil.rmtree(data / "mongo")
    data.mkdir(parents=True, exist_ok=True)

    interrupted = threading.Event()

    def on_stop_signal(signum: int, _frame: object) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            # The terminal is gone: a failed print would end the thread that copies a
            # script's output to its log, and the script would block on a full pipe.
            write_to_nowhere(sys.stdout, sys.stderr)
        interrupted.set()

    for signum in stop_signals():
        signal.signal(signum, on_stop_signal)

    kafka = TansuServer(args.kafka_port, data)
    mongo = SecantusServer(args.mongo_port, data / "mongo", data)
    producer = consumer = None
    try:
        print(f"Arrancando Kafka (Tansu) en localhost:{args.kafka_port} y MongoDB (SecantusDB) en "
              f"localhost:{args.mongo_port}...", flush=True)
        kafka.start()
        mongo.start()
        server_lost = _watch_servers((kafka, mongo), interrupted)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{args.kafka_port}",
               "MONGODB_URI": f"mongodb://localhost:{args.mongo_port}", "LOG_LEVEL": "INFO"}
        consumer_args = ["--idle-timeout", "8"] if args.rounds else []
        producer_args = ["--interval", str(args.interval)] + (["--rounds", str(args.rounds)] if args.rounds else [])
        consumer = _start("consumidor_metrics_iabd06.py", consumer_args, env)
        assigned = threading.Event()
        pumps = [_pump("consumidor", consumer, data / "consumidor.log", show_all=False, assigned=assigned)]
        # The producer starts once the consumer has its partitions (a group join takes
        # a few seconds): then every window closes as it fills, at the producer's pace,
        # instead of all of them at once from a backlog.
        print("Esperando a que el consumidor entre en su grupo de Kafka...", flush=True)
        deadline = time.monotonic() + JOIN_WAIT_SECONDS
        while not assigned.is_set() and consumer.poll() is None and not interrupted.is_set() \
                and time.monotonic() < deadline:
            interrupted.wait(0.2)
        if interrupted.is_set() or consumer.poll() is not None:
            # Ctrl-C, or a consumer that could not start (its error is shown above):
            # nothing would store what the producer sends, so it never starts.
            _stop(consumer, "el consumidor")
            for pump in pumps:
                pump.join(5)
            if interrupted.is_set():
                print("Demo interrumpida antes de arrancar el productor.", flush=True)
                return 1 if server_lost.is_set() else 0
            print(f"El consumidor terminó con código {consumer.returncode} antes de entrar en su grupo; "
                  f"el productor no se arranca (log completo en {data}/consumidor.log).", flush=True)
            return 1
        producer = _start("productor_metrics_iabd06.py", producer_args, env)
        pumps.append(_pump("productor", producer, data / "productor.log", show_all=False))
        print(f"Productor y consumidor en marcha (una ronda cada {args.interval:g} s, una ventana KPI cada "
              f"KPI_WINDOW_SIZE mensajes, 20 por defecto). Logs completos en {data}/. "
              + ("Espere al final de las rondas." if args.rounds else "Ctrl-C para parar."), flush=True)

        while not interrupted.is_set() and producer.poll() is None:
            interrupted.wait(0.2)
        _stop(producer, "el productor")
        # With --rounds the consumer stops by itself once it has read everything (its
        # --idle-timeout); without, the producer only ends on Ctrl-C or an error.
        while args.rounds and consumer.poll() is None and not interrupted.is_set():
            interrupted.wait(0.2)
        _stop(consumer, "el consumidor")
        for pump in pumps:
            pump.join(5)
        print(f"Productor: código {producer.returncode}; consumidor: código {consumer.returncode}", flush=True)

        if server_lost.is_set():
            return 1  # the report would wait for a MongoDB that is gone, or show a run cut short
        report = REPO / "informe_kpis_iabd06.py"
        if report.exists():
            print("\nInforme de KPIs:", flush=True)
            subprocess.run([sys.executable, str(report), "--output", str(data / "informe_kpis_iabd06.png"),
                            "--audit", "yes"], cwd=REPO, env=env)
        return 0 if producer.returncode == 0 and consumer.returncode == 0 else 1
    finally:
        for process in (producer, consumer):
            if process is not None and process.poll() is None:
                process.kill()
        kafka.stop()
        mongo.stop()
        print("Servidores locales parados.", flush=True)


if __name__ == "__main__":
    tolerate_unencodable_output()
    sys.exit(main())
