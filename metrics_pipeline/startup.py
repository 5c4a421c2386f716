"""Waiting for a server at start-up (Kafka, MongoDB), the same way for both.

:func:`wait_for_server` calls an attempt until it succeeds:

1. the attempt runs on a daemon thread: it may block for seconds (a Kafka
   bootstrap, a MongoDB server selection), and a SIGINT/SIGTERM meanwhile must end
   the wait at once with :class:`~metrics_pipeline.errors.StartupStopped` (exit 0:
   nothing was sent, read or stored yet), leaving the attempt behind;
2. an attempt that raises :class:`NotReady` (no answer yet, a timeout) logs one
   WARNING with its reason and is tried again after a pause that doubles from
   :data:`INITIAL_DELAY` up to :data:`MAX_DELAY`;
3. after ``--startup-timeout`` seconds the wait ends with
   :class:`~metrics_pipeline.errors.StartupError` (exit 1), one line naming the
   server and the last reason;
4. anything else the attempt raises ends the wait as it is: a refused login is a
   StartupError at once, since retrying cannot cure it. So does ``give_up``,
   asked every 0.1 s while an attempt runs, when it returns an error: a client
   library that only logs a refused login and retries it until its own timeout
   (kafka-python) is left behind as soon as the refusal is known;
5. an attempt that does not come back at all is not waited for past the timeout:
   each attempt is given the seconds left, but a client library may still hang (a
   TLS client of kafka-python waits for ever for the greeting of a broker that
   speaks no TLS). An attempt still running after :data:`SLOW_ATTEMPT` seconds logs
   one WARNING; one still running :data:`HANG_GRACE` seconds after the timeout ends
   the wait like step 3, with ``silent`` as the reason.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from metrics_pipeline.errors import StartupError, StartupStopped

log = logging.getLogger(__name__)
T = TypeVar("T")

INITIAL_DELAY = 0.5
MAX_DELAY = 5.0
SLOW_ATTEMPT = 15.0  # seconds: longer than any attempt given its own limit (Kafka's: 10 s)
HANG_GRACE = 2.0     # seconds past the timeout before an attempt is taken as hung
SILENT = "el servidor acepta la conexión pero no responde"


class NotReady(Exception):
    """The server did not answer this attempt; the message is the reason."""


class _Hung(Exception):
    """The attempt outlived its deadline (step 5 of the module doc)."""


def wait_for_server(what: str, attempt: Callable[[float], T], stop: threading.Event, timeout: float,
                    nothing_done: str, silent: str = SILENT,
                    give_up: Callable[[], Exception | None] = lambda: None) -> T:
    """``attempt(seconds_left)`` until it returns (see the module doc).

    ``what`` names the server in every line ("Kafka (localhost:29092)");
    ``nothing_done`` ends the line of a stop during the wait; ``silent`` is the
    reason given when an attempt never comes back (step 5); ``give_up``: see step 4.
    """
    stopped = StartupStopped(f"Parada pedida mientras se esperaba a {what}: {nothing_done}")
    deadline = time.monotonic() + timeout
    delay = INITIAL_DELAY

    def still_waiting() -> None:
        log.warning("%s no responde: el intento de conexión lleva %g s sin respuesta; se espera como mucho "
                    "hasta --startup-timeout (%g s)", what, SLOW_ATTEMPT, timeout)

    while True:
        remaining = deadline - time.monotonic()
        started = time.monotonic()
        try:
            return run_unless_stopped(functools.partial(attempt, remaining), stop, stopped,
                                      give_up_at=deadline + HANG_GRACE,
                                      slow=(started + SLOW_ATTEMPT, still_waiting), give_up=give_up)
        except NotReady as exc:
            reason = str(exc)
        except _Hung:
            raise StartupError(f"No se pudo conectar a {what} en {timeout:g} s: {silent}") from None
        if not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupError(f"No se pudo conectar a {what} en {timeout:g} s: {reason}")
            log.warning("%s no responde: %s; reintento en %.1f s", what, reason, min(delay, remaining))
            stop.wait(min(delay, remaining))
        if stop.is_set():
            raise stopped
        delay = min(delay * 2, MAX_DELAY)


def run_unless_stopped(attempt: Callable[[], T], stop: threading.Event, stopped: BaseException,
                       give_up_at: float = math.inf,
                       slow: tuple[float, Callable[[], None]] = (math.inf, lambda: None),
                       give_up: Callable[[], Exception | None] = lambda: None) -> T:
    """``attempt()``, unless ``stop`` is set first: then raise ``stopped`` at once and
    leave the attempt behind on its daemon thread (the process is about to exit).
    Likewise :class:`_Hung` once ``time.monotonic()`` reaches ``give_up_at``, and the
    error ``give_up()`` returns, if any; ``slow`` = (when, callback): called once if
    the attempt is still running then."""
    slow_at, on_slow = slow
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
        if (reason := give_up()) is not None:
            raise reason
        now = time.monotonic()
        if now >= give_up_at:
            raise _Hung()
        if now >= slow_at:
            slow_at = math.inf
            on_slow()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
