"""SIGINT and SIGTERM: ask the loop to stop at the next safe point.

The first signal sets an Event that the loops check between batches and while they
wait, so the batch in hand is finished and committed before the script exits 0.
A second signal means "now": the process exits at once with code 130; nothing
committed is lost, and the consumer re-reads what it had not committed.

At start-up, while a script still waits for a server, an attempt may block for
seconds (a Kafka bootstrap, a MongoDB server selection): :func:`run_unless_stopped`
runs it on a daemon thread, so a stop ends the wait at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def install_stop_handlers() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("Segunda señal %s: salida inmediata", name)
            logging.shutdown()
            os._exit(130)
        log.info("Señal %s recibida: se termina lo que está en curso y se sale", name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def run_unless_stopped(attempt: Callable[[], T], stop: threading.Event, stopped: BaseException) -> T:
    """``attempt()``, unless ``stop`` is set first: then raise ``stopped`` at once and
    leave the attempt behind on its daemon thread (the process is about to exit)."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = attempt()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="startup-attempt", daemon=True).start()
    while not done.wait(0.1):
        if stop.is_set():
            raise stopped
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
