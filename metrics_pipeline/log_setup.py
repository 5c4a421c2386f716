"""Logging of the scripts: one line per event, with time and level, no secrets.

* Every line goes through :class:`~metrics_pipeline.redaction.RedactingFormatter`,
  and a message's line breaks are escaped (:class:`OneLineFormatter`): text from
  outside (a MongoDB error that quotes a message's field, a library's message) cannot
  split an event or forge a line of its own.
* kafka-python reports a broker outage with dozens of English lines per second.
  :class:`KafkaLogBridge` folds them into :class:`KafkaStatus`, which logs one
  Spanish WARNING when Kafka stops answering, a reminder every
  :data:`KafkaStatus.REMINDER_SECONDS`, and one INFO line when it answers again.
  Other kafka-python warnings and errors pass through as WARNING lines, at most once
  a minute per kind of message (numbers aside), except its diagnostics of its own
  slow I/O loop, which are DEBUG. Of its INFO lines one is news: a committed offset
  Kafka no longer has (:data:`_OUT_OF_RANGE`), said as a Spanish WARNING.
* Python warnings (e.g. pymongo's "unknown URI option") become log lines too.
* An exception no code expected in another thread (ours or a library's) is logged
  like one in the main thread (CRITICAL, with its traceback, redacted), instead of
  Python printing it raw on stderr, where a secret it quoted would be shown.

The bridge writes its lines while the logging module is still inside the handling
of kafka-python's record. CPython 3.13.4 and 3.13.5 silently drop every record a
thread logs at that moment, from any logger (gh-91555; reverted in 3.13.6, and by
Debian's own 3.13.5): the bridge and :class:`KafkaStatus` hand their records to the
handlers directly (:func:`_log_from_handler`) so no Python version loses them.
"""

from __future__ import annotations

import io
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from metrics_pipeline.redaction import RedactingFormatter, Redactor

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# kafka-python's words for a server that accepted the TCP connection and closed it
# without an answer: what a SASL or TLS listener of Apache Kafka does to a client that
# speaks plain Kafka to it, what a TLS 1.3 listener does to a client without the
# certificate it asks for (and what most servers that are not Kafka do). Which words
# depends on what the client was doing when the close reached it: reading ("socket
# disconnected"), writing ("Broken pipe"), or either after a reset.
SERVER_CLOSED = re.compile(r"socket disconnected|Broken pipe|Connection reset|ECONNRESET", re.IGNORECASE)
_CONNECTION_TROUBLE = re.compile(
    r"KafkaConnectionError|ECONNREFUSED|Connection refused|No node available|" + SERVER_CLOSED.pattern +
    r"|Connection lost|Unable to bootstrap|coordinator dead|NodeNotReady|Connection failed"
    r"|Metadata refresh: failed|timed out|KafkaTimeoutError",
    re.IGNORECASE)
# kafka-python reports a refused login only as a log line, then keeps retrying the
# bootstrap until its timeout: these say retrying cannot cure it.
_AUTH_TROUBLE = re.compile(r"SaslAuthenticationFailed|UnsupportedSaslMechanism|IllegalSaslState"
                           r"|AuthenticationFailed|Authentication failed")
# How kafka-python wraps the broker's refusal: "Bootstrap connection to bootstrap-0
# failed: [Error 58] SaslAuthenticationFailedError: SaslAuthenticationFailedError:
# <the broker's message>". Only the error's name and the broker's words are kept.
_AUTH_WRAPPING = re.compile(r"^(?:(?:Bootstrap connection to \S+|<.*>: SaslHandshake|Connection) failed: )?"
                            r"(?:\[Error \d+\] )?")
_REPEATED_NAME = re.compile(r"\b(\w+Error): \1\b:?")
# A broker certificate this client does not trust (or not for that name): kafka-python
# retries the handshake until its timeout, but retrying cannot cure it either.
_TLS_UNTRUSTED = re.compile(r"certificate verify failed[^(]*", re.IGNORECASE)
# kafka-python leaves the group when poll() was not called for max_poll_interval_ms:
# for us, the writer waiting for MongoDB. Said in Spanish, with what happens next.
_POLL_TIMEOUT = re.compile(r"poll timeout has expired", re.IGNORECASE)
_POLL_TIMEOUT_LINE = ("El consumidor lleva más de KAFKA_MAX_POLL_INTERVAL_MS sin leer de Kafka (esperando a "
                      "MongoDB): deja el grupo y volverá a entrar en cuanto pueda leer; lo no confirmado se "
                      "relee sin contar nada dos veces")
# kafka-python, in English, each time a connection logs in with SASL_PLAINTEXT.
# Said once per process, in Spanish, with what to do about it.
_IN_THE_CLEAR = re.compile(r"in the clear")
_IN_THE_CLEAR_LINE = ("KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: el inicio de sesión y los mensajes viajan sin cifrar "
                      "(con PLAIN, también la contraseña); fuera de una red de confianza, use SASL_SSL")
# kafka-python 3 times the steps of its own I/O loop and warns, in English, when one
# takes over 0.1 s ("Task ... ran for 0.124s ... blocking the event loop"). It does
# while a backlog is drained: decoding a large fetch shares the GIL with our writer
# thread. Nothing for the user to do: DEBUG only.
_SLOW_TASK = re.compile(r"ran for [\d.]+s \(>[\d.]+s threshold\)")
# kafka-python lines (in English) that one of our own lines already says, in Spanish
# and with what happens next: a bootstrap retry ("Kafka no responde"), a send that
# failed ("Reenviando la métrica..."), a commit that failed ("No se pudieron confirmar
# los offsets..."), an assignment or a read cut short by a topic or a connection that
# went away. DEBUG only.
_SAID_BY_US = re.compile(r"Bootstrap \S+ not ready; waiting|Failed to produce messages to topic-partition"
                         r"|OffsetCommit for group \S+ failed|No partition metadata for topic"
                         r"|Error receiving network data")
# kafka-python lines that only kafka-python can tell, said in Spanish (at most once a
# minute each, like any other kafka-python line).
_SESSION_EXPIRED = re.compile(r"Heartbeat session expired")
_TRANSLATED = (
    # Said twice by kafka-python ("Heartbeat session expired, marking coordinator
    # dead", then "Marking the coordinator dead (node 1) for group g: Heartbeat session
    # expired."), once by us. Not "Kafka no responde": a process that was frozen (a
    # stalled VM, SIGSTOP) finds on waking that its session expired, with Kafka
    # answering all along; a Kafka that really stopped answering is said by the
    # connection errors that come with it.
    (_SESSION_EXPIRED,
     "La sesión de este consumidor en el grupo caducó: Kafka no recibió sus latidos en KAFKA_SESSION_TIMEOUT_MS "
     "(¿Kafka no respondía, o este proceso o su máquina estuvieron parados?): vuelve a entrar en el grupo; lo no "
     "confirmado se relee sin contar nada dos veces"),
    (re.compile(r"Heartbeat: local member_id was not recognized"),
     "Kafka ya no reconoce a este consumidor en el grupo (su sesión caducó: ¿estuvo parado o sin conexión?): vuelve "
     "a entrar; lo no confirmado se relee sin contar nada dos veces"),
    (re.compile(r"Topic (\S+) not found in cluster metadata"),
     "Kafka no tiene el tema {0} (¿un broker que se está reiniciando o que perdió sus datos, o un tema "
     "borrado?): se sigue reintentando"),
)
# What makes two lines "the same kind of message" for the once-a-minute limit: some
# kafka-python lines arrive already formatted, with addresses and timings inside.
_VARYING_PARTS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_ERROR_WORDS = re.compile(r"Error\b|failed", re.IGNORECASE)
# kafka-python (INFO) when the consumer's position is no longer in the partition's log:
# the topic's retention deleted messages before they were read (a consumer stopped for
# longer than retention.ms), or the topic was created again. It then starts from the
# earliest offset left (auto_offset_reset), as it must; what was deleted unread was lost
# in Kafka, before any consumer had it, and the user is told.
_OUT_OF_RANGE = re.compile(r"Fetch offset (\d+) is out of range for .*?partition=(\d+)")
_OUT_OF_RANGE_LINE = ("Kafka ya no tiene el offset %s de la partición %s: la retención del tema lo borró antes de "
                      "que se leyera, o el tema se creó de nuevo. Se sigue desde el primer offset que queda; lo "
                      "borrado sin leer ya no está en Kafka y no se puede guardar")
_BACKOFF = re.compile(r"\s*\(backoff [^)]*\)")
_NO_NODE = re.compile(r"No node available")  # see KafkaStatus.SETTLING_SECONDS


class KafkaStatus:
    """Is Kafka answering? Logged once per change, not once per retry."""

    REMINDER_SECONDS = 30.0
    # Kafka can come back with nothing to prove it (an idle consumer keeps its group,
    # reads nothing, commits nothing): after this long without a complaint, the next
    # one starts a new outage instead of a reminder of an old one.
    QUIET_SECONDS = 60.0
    # Right after Kafka is back, kafka-python may still say "No node available for
    # metadata refresh" while its other connections wait out their reconnect backoff
    # (seen 12 ms after a send was acknowledged): for this long, that line alone is not
    # a new outage.
    SETTLING_SECONDS = 2.0

    def __init__(self, logger: logging.Logger | None = None, clock=time.monotonic) -> None:
        self._log = logger or logging.getLogger("metrics_pipeline.kafka")
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_reminder = 0.0
        self._last_complaint = 0.0
        self._back_at = -math.inf
        self.bootstrap = "Kafka"
        # What kafka-python last complained about, for the start-up error line:
        # its own exception then only says "Unable to bootstrap".
        self.last_error: str | None = None
        self.auth_failure: str | None = None
        self.tls_failure: str | None = None  # "certificate verify failed: <why>"
        # kafka-python's words (SERVER_CLOSED) the last time a server closed a
        # connection without an answer, even if a later attempt ended otherwise: one
        # cut short by the start-up deadline says only "Timeout during ApiVersions check".
        self.server_closed: str | None = None

    def mark_down(self, reason: str, waited: float = 0.0, weak: bool = False) -> None:
        """Kafka is not answering, for ``waited`` seconds already (a request that got
        no answer in that time), or from now. A ``weak`` sign is ignored while Kafka is
        just back (SETTLING_SECONDS)."""
        now = self._clock()
        with self._lock:
            if weak and self._down_since is None and now - self._back_at < self.SETTLING_SECONDS:
                return
            if self._down_since is not None and now - self._last_complaint >= self.QUIET_SECONDS:
                self._down_since = None  # it came back unseen; this is another outage
            self._last_complaint = now
            if self._down_since is None:
                self._down_since = now - max(waited, 0.0)
                self._last_reminder = now
                _log_from_handler(self._log, logging.WARNING, "Kafka (%s) no responde: %s; se sigue reintentando",
                                  self.bootstrap, reason)
            elif now - self._last_reminder >= self.REMINDER_SECONDS:
                self._last_reminder = now
                _log_from_handler(self._log, logging.WARNING, "Kafka (%s) sigue sin responder desde hace %.0f s: %s",
                                  self.bootstrap, now - self._down_since, reason)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def mark_up(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            self._back_at = self._clock()
            seconds = self._back_at - self._down_since
            self._down_since = None
        self._log.info("Conexión con Kafka (%s) restablecida tras %.1f s", self.bootstrap, seconds)


class KafkaLogBridge(logging.Handler):
    """Receives kafka-python's records and turns them into our lines."""

    PASS_THROUGH_EVERY_SECONDS = 60.0

    def __init__(self, status: KafkaStatus, clock=time.monotonic) -> None:
        super().__init__(level=logging.INFO)  # INFO only for _OUT_OF_RANGE, see emit
        self.status = status
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._warned_in_the_clear = False
        self._log = logging.getLogger("metrics_pipeline.kafka")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed library record must never break logging
            text = str(record.msg)
        if record.levelno < logging.WARNING:
            if lost := _OUT_OF_RANGE.search(text):
                _log_from_handler(self._log, logging.WARNING, _OUT_OF_RANGE_LINE, *lost.groups())
            return
        if _AUTH_TROUBLE.search(text):
            self.status.auth_failure = login_failure(text)
        if untrusted := _TLS_UNTRUSTED.search(text):
            self.status.tls_failure = _short(untrusted.group(0).strip())
        if closed := SERVER_CLOSED.search(text):
            self.status.server_closed = closed.group(0)
        if _ERROR_WORDS.search(text) and "Unable to bootstrap" not in text:
            self.status.last_error = _short(_BACKOFF.sub("", text))
        if _CONNECTION_TROUBLE.search(text) and not _SESSION_EXPIRED.search(text):
            self.status.mark_down(_short(text), weak=bool(_NO_NODE.search(text)))
            return
        if _POLL_TIMEOUT.search(text):
            _log_from_handler(self._log, logging.WARNING, "%s", _POLL_TIMEOUT_LINE)
            return
        if _IN_THE_CLEAR.search(text):
            level = logging.DEBUG if self._warned_in_the_clear else logging.WARNING
            self._warned_in_the_clear = True
            _log_from_handler(self._log, level, "%s", _IN_THE_CLEAR_LINE)
            return
        if _SLOW_TASK.search(text) or _SAID_BY_US.search(text):
            _log_from_handler(self._log, logging.DEBUG, "kafka-python: %s", _short(text, 300))
            return
        spanish = next((line.format(*found.groups()) for pattern, line in _TRANSLATED
                        if (found := pattern.search(text))), None)
        # Translated lines are one kind per Spanish sentence, whatever kafka-python's words.
        kind = spanish or f"{record.name}:{_VARYING_PARTS.sub('#', str(record.msg))}"
        now = self._clock()
        if now - self._last_seen.get(kind, -1e9) < self.PASS_THROUGH_EVERY_SECONDS:
            return
        self._last_seen[kind] = now
        if spanish is not None:
            _log_from_handler(self._log, logging.WARNING, "%s", spanish)
            return
        # At most WARNING: kafka-python retries what it reports, and our ERROR lines
        # are kept for what the scripts themselves give up on.
        _log_from_handler(self._log, min(record.levelno, logging.WARNING), "kafka-python: %s", _short(text, 300))


def _log_from_handler(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """``logger.log(level, msg, *args)`` that also works inside another handler's emit.

    It skips ``Logger.isEnabledFor`` and ``Logger.handle``, which CPython 3.13.4/3.13.5
    make say "disabled" while the thread is handling another record; levels, handlers
    and propagation apply as usual (our loggers have no filters: secrets are masked by
    the formatter).
    """
    if not logger.disabled and level >= logger.getEffectiveLevel() and level > logger.manager.disable:
        logger.callHandlers(logger.makeRecord(logger.name, level, __file__, 0, msg, args, None))


def login_failure(text: str) -> str:
    """A refused login as kafka-python tells it (in a log line or an exception's
    text), without its wrapping: the error's name and the broker's own words
    ("SaslAuthenticationFailedError: Authentication failed: Invalid username or
    password")."""
    text = _AUTH_WRAPPING.sub("", _BACKOFF.sub("", text), count=1)
    return _short(_REPEATED_NAME.sub(r"\1:", text).rstrip(":"), 300)


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """'1 ronda', '2 rondas', '0 mensajes': counts in the log lines read as Spanish
    (``plural``: when it is not ``singular`` + 's')."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    # kafka-python prefixes many lines with "<KafkaConnection ...>: "; keep the reason.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BatchingStreamHandler(logging.StreamHandler):
    """Writes lines into a buffer that is flushed every FLUSH_SECONDS, at once for a
    WARNING or worse, and at exit.

    The producer logs every message sent from kafka-python's I/O thread. A flush per
    line is a system call per line, and each one hands the GIL to the thread that
    builds the next messages: the sends then wait on the log (measured: a third of
    the producer's time). Batching the writes removes that without dropping a line;
    a process killed with -9 loses at most the last FLUSH_SECONDS of INFO lines.
    """

    FLUSH_SECONDS = 0.1

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._dirty = False
        self._closed = False
        threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text)
                self._dirty = True
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()
            self._dirty = False

    def close(self) -> None:
        self.flush()
        self._closed = True
        super().close()

    def _flush_periodically(self) -> None:
        while not self._closed:
            time.sleep(self.FLUSH_SECONDS)
            if self._dirty:
                try:
                    self.flush()
                except (ValueError, OSError):  # stream closed at exit
                    return


def _buffered_stderr() -> TextIO:
    """A buffered text stream on file descriptor 2, whatever PYTHONUNBUFFERED says.

    Except on a Windows console: there Python's own sys.stderr writes through the
    console's Unicode API, while UTF-8 bytes written to the descriptor would show
    "mÃ©trica" under the console's code page. (Not run on Windows: there is none here.)
    """
    if sys.platform == "win32" and sys.stderr.isatty():
        return sys.stderr
    raw = io.FileIO(sys.stderr.fileno(), "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=1 << 16), encoding="utf-8",
                            errors="replace", write_through=False)


class OneLineFormatter(RedactingFormatter):
    """One event, one line: CR and LF in the message are written as ``\\r``, ``\\n``.
    A traceback, added after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if "\n" in record.message or "\r" in record.message:
            record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


def configure_logging(level: str, secrets: Iterable[str] = (), stream: TextIO | None = None) -> KafkaStatus:
    """Set up the root logger; return the KafkaStatus the loops report to."""
    # The producer logs every message sent; skip what our format does not print
    # (the logging HOWTO's "Optimization" section): caller lookup, thread and
    # process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    redactor = Redactor(secrets)
    handler = BatchingStreamHandler(stream if stream is not None else _buffered_stderr())
    handler.setFormatter(OneLineFormatter(LOG_FORMAT, redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)

    status = KafkaStatus()
    kafka_logger = logging.getLogger("kafka")
    for old in list(kafka_logger.handlers):
        kafka_logger.removeHandler(old)
    kafka_logger.addHandler(KafkaLogBridge(status))
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.INFO)  # for _OUT_OF_RANGE

    # pymongo's own logs are structured debug output (a JSON line per command, with
    # its documents), and matplotlib's INFO lines (e.g. "generated new fontManager"
    # on a first run) are no news to our users: both speak from WARNING up, even
    # with LOG_LEVEL=DEBUG (our own DEBUG lines already say what each write did).
    for library in ("pymongo", "matplotlib"):
        logging.getLogger(library).setLevel(max(root.level, logging.WARNING))
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    return status


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: see the module doc (SystemExit ends a thread quietly, as in Python)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("metrics_pipeline").critical(
        "Error inesperado en el hilo %s (es un fallo del programa, por favor avise):", name,
        exc_info=args.exc_value)  # the exception carries its traceback


def quiet_kafka_client() -> None:
    """Silence kafka-python while closing: its socket chatter then is no news."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def print_error_line(prog: str, message: str) -> None:
    """One line on stderr, for errors before logging is set up (settings)."""
    for handler in logging.getLogger().handlers:
        handler.flush()  # keep the order of what was already logged
    sys.stderr.write(Redactor()(f"{prog}: error: {message}") + "\n")
    sys.stderr.flush()
