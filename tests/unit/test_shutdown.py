"""metrics_pipeline/shutdown.py: what SIGINT, SIGTERM and SIGHUP do, in a real process."""

from __future__ import annotations

import subprocess
import textwrap

from tests.support.child import run_snippet


def run_with_stop_handlers(body: str) -> subprocess.CompletedProcess[str]:
    """``body`` in a child process whose stop handlers are installed (``stop``: their
    Event) and whose log lines are ``LEVEL message`` on stderr."""
    return run_snippet("""
        import logging, os, signal, time
        from metrics_pipeline.shutdown import install_stop_handlers
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        stop = install_stop_handlers()
    """ + textwrap.indent(textwrap.dedent(body), " " * 8))


def test_the_first_signal_asks_to_stop_and_the_second_exits_130_at_once() -> None:
    done = run_with_stop_handlers("""
        os.kill(os.getpid(), signal.SIGTERM)
        print("stop pedido:", stop.is_set(), flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("no debería llegar aquí", flush=True)
    """)
    assert done.returncode == 130
    assert done.stdout == "stop pedido: True\n"
    assert done.stderr.splitlines() == ["INFO Señal SIGTERM recibida: se termina lo que está en curso y se sale",
                                        "WARNING Segunda señal SIGINT: salida inmediata"]


def test_the_same_signal_twice_at_once_is_one_request_to_stop() -> None:
    # `timeout` sends SIGTERM to the script and then to its process group: the
    # script may see it twice, microseconds apart. That is not "stop now".
    done = run_with_stop_handlers("""
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        print("sigue:", stop.is_set(), flush=True)
        time.sleep(0.7)
        os.kill(os.getpid(), signal.SIGTERM)
        print("no debería llegar aquí", flush=True)
    """)
    assert done.returncode == 130
    assert done.stdout == "sigue: True\n"
    assert done.stderr.splitlines() == ["INFO Señal SIGTERM recibida: se termina lo que está en curso y se sale",
                                        "INFO Señal SIGTERM repetida al instante: es la misma petición de parada",
                                        "WARNING Segunda señal SIGTERM: salida inmediata"]


def test_a_signal_while_the_libraries_load_is_a_quiet_exit_0() -> None:
    done = run_snippet("""
        import os, signal
        from metrics_pipeline.shutdown import exit_at_once_on_signal
        exit_at_once_on_signal()
        os.kill(os.getpid(), signal.SIGINT)
        print("no debería llegar aquí", flush=True)
    """)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_closing_the_terminal_sighup_asks_to_stop_like_sigterm() -> None:
    done = run_with_stop_handlers("""
        os.kill(os.getpid(), signal.SIGHUP)
        print("stop pedido:", stop.is_set(), flush=True)
    """)
    assert (done.returncode, done.stdout) == (0, "stop pedido: True\n")
    assert done.stderr == "INFO Señal SIGHUP recibida: se termina lo que está en curso y se sale\n"


def test_under_nohup_sighup_stays_ignored() -> None:
    done = run_snippet("""
        import os, signal
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does before starting the script
        from metrics_pipeline.shutdown import exit_at_once_on_signal, install_stop_handlers, stop_signals
        exit_at_once_on_signal()
        stop = install_stop_handlers()
        os.kill(os.getpid(), signal.SIGHUP)
        print("sigue:", not stop.is_set(), [s.name for s in stop_signals()], flush=True)
    """)
    assert (done.returncode, done.stdout, done.stderr) == (0, "sigue: True ['SIGINT', 'SIGTERM']\n", "")
