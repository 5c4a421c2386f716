"""Exit codes of SPEC §6, shared by the scripts.

* 0: normal end (a signal, also one while still waiting for a server at start-up,
  ``--rounds``, ``--max-messages``, ``--idle-timeout``);
* 2: bad settings or flags: one line naming the setting and why (also a session
  timeout the broker refuses, known only when the consumer joins its group);
* 1: a failure retrying cannot cure (a server unreachable after
  ``--startup-timeout``, credentials refused, a consumer group another program
  uses in an incompatible way, messages that could not be sent): one clear line,
  no traceback.

Only a bug (an exception nobody expected) prints a traceback, through the
redacting formatter, so even then no secret is shown.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from metrics_pipeline.errors import RunFailure, StartupError, StartupStopped
from metrics_pipeline.log_setup import print_error_line
from metrics_pipeline.settings import SettingsError
from metrics_pipeline.storage import StorageFatal

log = logging.getLogger("metrics_pipeline")


def run_main(main: Callable[[Sequence[str] | None], int], prog: str,
             argv: Sequence[str] | None = None) -> int:
    try:
        return main(argv)
    except SettingsError as exc:  # usually before logging is set up; else one the broker refused
        _error_line(prog, f"configuración no válida: {exc}")
        return 2
    except StartupStopped as exc:
        log.info("%s", exc)
        return 0
    except (StartupError, StorageFatal, RunFailure) as exc:
        _error_line(prog, str(exc))
        return 1
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
        return 0
    except BrokenPipeError:  # the output went to a reader that stopped (`| head`)
        write_to_nowhere(sys.stdout)
        return 1
    except Exception:  # a bug: show it, redacted
        if logging.getLogger().handlers:
            log.critical("Error inesperado (es un fallo del programa, por favor avise):", exc_info=True)
        else:
            import traceback
            print_error_line(prog, "error inesperado:\n" + traceback.format_exc())
        return 1


def _error_line(prog: str, text: str) -> None:
    """One ERROR log line once logging is set up, else one line on stderr."""
    if logging.getLogger().handlers:
        log.error("%s", text)
    else:
        print_error_line(prog, text)


def write_to_nowhere(*streams: TextIO) -> None:
    """Point these streams at /dev/null: once their reader stopped (``| head``) or their
    terminal was closed, every later write would fail, Python's own final flush included."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in streams:
            os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def tolerate_unencodable_output() -> None:
    """Write what stdout's encoding cannot hold (Spanish on an ASCII terminal, a
    cp1252 pipe on Windows) as escapes (``\\xf3``), as Python already does on
    stderr, instead of failing with UnicodeEncodeError in ``--help`` or a report."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError):  # closed, or not a plain text stream
            pass


def ensure_standard_streams() -> None:
    """Open /dev/null on a standard descriptor the script was started without
    (``2>&-``, a service manager that closes them).

    Python then has no ``sys.stderr`` and logging could not start (the script exited
    1 without a word), and the first socket opened would take descriptor 2, where any
    stray write would land inside the Kafka or MongoDB protocol. The logs of such a
    run go nowhere, as its caller chose."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))


def exit_with(main: Callable[[Sequence[str] | None], int], prog: str) -> None:
    ensure_standard_streams()
    tolerate_unencodable_output()
    sys.exit(run_main(main, prog))
