"""Retrying a MongoDB write (or the read of a replay) while MongoDB is unreachable.

The batch stays in memory and nothing is committed to Kafka until the write
succeeds, so waiting loses nothing. Each failed attempt logs one WARNING with the
reason; the pause doubles from :data:`INITIAL_DELAY` up to :data:`MAX_DELAY`.
A stop request (SIGINT/SIGTERM) ends the wait with :class:`Stopped`: the batch was
not committed and will be read again after the restart. While MongoDB is known to
be down (``down``, shared by the writes of one consumer), a stop request also skips
the first attempt of the next writes: each would otherwise wait out the server
selection timeout before giving up, and a stop must not take that long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from metrics_pipeline.storage import StorageUnavailable

T = TypeVar("T")
INITIAL_DELAY = 0.5
MAX_DELAY = 10.0

log = logging.getLogger(__name__)


class Stopped(Exception):
    """A stop was requested while a write was waiting for MongoDB."""


def retry_while_unavailable(action: Callable[[], T], what: str, stop: threading.Event,
                            initial: float = INITIAL_DELAY, cap: float = MAX_DELAY,
                            down: threading.Event | None = None, doing: str = "guardar") -> T:
    down = down if down is not None else threading.Event()
    delay = initial
    attempts = 0
    started = time.monotonic()
    while True:
        if stop.is_set() and down.is_set():
            raise Stopped(what)
        try:
            result = action()
        except StorageUnavailable as exc:
            down.set()
            attempts += 1
            if stop.is_set():
                log.warning("MongoDB no disponible al %s %s: %s. No se confirma nada en Kafka; "
                            "parada pedida: no se reintenta", doing, what, exc)
                raise Stopped(what) from None
            log.warning("MongoDB no disponible al %s %s: %s. No se confirma nada en Kafka; "
                        "reintento %d en %.1f s", doing, what, exc, attempts, delay)
            if stop.wait(delay):
                raise Stopped(what) from None
            delay = min(delay * 2, cap)
            continue
        down.clear()
        if attempts:
            log.info("MongoDB responde de nuevo al %s %s, tras %d %s (%.1f s)", doing, what, attempts,
                     "reintento" if attempts == 1 else "reintentos", time.monotonic() - started)
        return result
