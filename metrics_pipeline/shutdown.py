"""SIGINT, SIGTERM and SIGHUP: ask the loop to stop at the next safe point.

SIGHUP is what a script gets when the terminal it runs in is closed: without a
handler it would die at once (safe, like a crash, but without committing what is
complete). Under ``nohup`` SIGHUP is ignored and stays ignored: the script goes on.

The first signal sets an Event that the loops check between batches and while they
wait, so the batch in hand is finished and committed before the script exits 0.
A second signal means "now": the process exits at once with code 130; nothing
committed is lost, and the consumer re-reads what it had not committed. The same
signal again within :data:`REPEAT_SECONDS` is the first one delivered twice, not a
second request: ``timeout`` signals the script and then its whole process group, and
the script may see both. While a script still waits for a server at start-up, the
first signal ends the wait at once (:mod:`metrics_pipeline.startup`). Earlier still,
while Python loads the libraries (about half a second), :func:`exit_at_once_on_signal`
makes a signal end the script with code 0 and no traceback: nothing has been done yet.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

REPEAT_SECONDS = 0.5  # see the module doc


def stop_signals() -> list[signal.Signals]:
    """The signals that mean "stop": SIGINT (Ctrl-C), SIGTERM and, where the system
    has it and it is not ignored (``nohup``), SIGHUP (the terminal was closed)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        signals.append(hangup)
    return signals


def exit_at_once_on_signal() -> None:
    """Until :func:`install_stop_handlers` replaces it: a signal exits 0 at once.

    Without it, a Ctrl-C while kafka-python and pymongo are being imported prints
    a KeyboardInterrupt traceback. The report script keeps it for its whole run.
    """
    def handle(_signum: int, _frame: object) -> None:
        os._exit(0)

    for signum in stop_signals():
        signal.signal(signum, handle)


def install_stop_handlers() -> threading.Event:
    stop = threading.Event()
    first_signum: int | None = None  # the first signal, and when it came
    first_at = 0.0

    def handle(signum: int, _frame: object) -> None:
        nonlocal first_signum, first_at
        name = signal.Signals(signum).name
        now = time.monotonic()
        if first_signum is not None:
            if signum == first_signum and now - first_at < REPEAT_SECONDS:
                log.info("Señal %s repetida al instante: es la misma petición de parada", name)
                return
            log.warning("Segunda señal %s: salida inmediata", name)
            logging.shutdown()
            os._exit(130)
        first_signum, first_at = signum, now
        log.info("Señal %s recibida: se termina lo que está en curso y se sale", name)
        stop.set()

    for signum in stop_signals():
        signal.signal(signum, handle)
    return stop

