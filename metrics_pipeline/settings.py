"""Settings of the scripts: command-line flag, environment, `.env` file, default.

Precedence, highest first:

1. the command-line flag (``--topic x``);
2. a real environment variable (``KAFKA_TOPIC=x``);
3. the ``.env`` file in the working directory (read with python-dotenv, never
   written into ``os.environ``);
4. the default of the table below.

An empty environment value counts as "not set", so a copied ``.env.example`` with
blank lines behaves like the defaults. Every setting is declared once, in the
``*_OPTIONS`` tables, next to its help text; ``--help`` is generated from them.

A bad value raises :class:`SettingsError`, which names the variable and the flag;
the scripts turn it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from metrics_pipeline.alerts import AlertThresholds
from metrics_pipeline.message import MAX_SERVER_ID_LENGTH
from metrics_pipeline.redaction import before_options, mongodb_uri_secrets, register_secret
from metrics_pipeline.spanish_argparse import spanish_parser

DEFAULT_SERVER_IDS = ("web01", "web02", "db01", "app01", "cache01")
# A KPI document lists the ids of its window's messages and counts them per server
# id: with this many messages, all from distinct ids of MAX_SERVER_ID_LENGTH
# four-byte characters, it is ~10.5 MB, under MongoDB's 16 MB per document
# (tests/unit/test_documents.py checks it). A larger window could never be stored.
MAX_WINDOW_SIZE = 10_000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")  # the ones that use KAFKA_SSL_*
SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")  # the ones that use KAFKA_SASL_*
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SOURCES = ("simulated", "psutil")
# Kafka's protocol carries counts and timeouts (partitions, session and poll
# timeouts) as 32-bit integers; no integer setting needs more.
MAX_INT = 2**31 - 1
# Waits in seconds: far beyond anything meant, and below the longest a thread can
# wait on every platform (threading.TIMEOUT_MAX, ~49 days on Windows).
MAX_SECONDS = 30 * 24 * 3600


class SettingsError(Exception):
    """A setting has a value the scripts cannot use (exit code 2)."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


# --------------------------------------------------------------------------
# Value parsers: text in, typed value out, ValueError with a Spanish reason.
# --------------------------------------------------------------------------

SHOWN_CHARACTERS = 60  # of a bad value quoted in an error line, which stays one short line
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")


def _shown(value: object, end: bool = False) -> str:
    """A bad value as an error line quotes it: repr() of text, at most SHOWN_CHARACTERS;
    with ``end``, a long one keeps its end (a path: where it points)."""
    shown = repr(value) if isinstance(value, str) else str(value)
    if len(shown) <= SHOWN_CHARACTERS:
        return shown
    return "'…" + shown[-(SHOWN_CHARACTERS - 2):] if end else shown[:SHOWN_CHARACTERS - 1] + "…"


def _int(minimum: int, maximum: int | None = MAX_INT) -> Callable[[str], int]:
    def parse(text: str) -> int:
        written = text.strip()
        try:
            value = int(written)
        except ValueError:
            if _INTEGER_RE.fullmatch(written):  # more digits than Python reads (4,300)
                size = "pequeño" if written.startswith("-") else "grande"
                raise ValueError(f"tiene {len(written.lstrip('+-'))} cifras: es demasiado {size}") from None
            raise ValueError(f"debe ser un número entero, no {_shown(text)}") from None
        if value < minimum:
            raise ValueError(f"debe ser un entero >= {minimum}, no {_shown(value)}")
        if maximum is not None and value > maximum:
            raise ValueError(f"debe ser un entero <= {maximum}, no {_shown(value)}")
        return value
    return parse


def _float(minimum: float, *, strict: bool = False, maximum: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"debe ser un número, no {_shown(text)}") from None
        if math.isnan(value) or (math.isinf(value) and "inf" in text.lower()):
            raise ValueError(f"debe ser un número finito, no {_shown(text)}")
        # Past here an infinity was written as a number (1e999): it is out of range.
        shown = f"{value:g}" if math.isfinite(value) else _shown(text.strip())
        if value < minimum or (strict and value == minimum):
            sign = ">" if strict else ">="
            raise ValueError(f"debe ser un número {sign} {minimum:g}, no {shown}")
        if maximum is not None and value > maximum:
            raise ValueError(f"debe ser un número <= {maximum:.15g}, no {shown}")
        if math.isinf(value):
            raise ValueError(f"debe ser un número finito, no {shown}")
        return value
    return parse


def _seconds(*, strict: bool = False) -> Callable[[str], float]:
    return _float(0, strict=strict, maximum=MAX_SECONDS)


def _threshold(parse: Callable[[str], float]) -> Callable[[str], float | None]:
    """A KPI threshold read with ``parse``; ``off`` (or ``none``) disables the alert.

    The bounds are those of the KPI: a percentage above 100, or an error sum that is
    not a whole number, would be a threshold no window can cross meaningfully, and a
    typo there would silence the alert without a word."""
    def read(text: str) -> float | None:
        if text.strip().lower() in ("off", "none", "no"):
            return None
        return parse(text)
    return read


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    """One of `choices`, in any case (``info``, ``PSUTIL``); returned as spelled there."""
    canonical = {choice.upper(): choice for choice in choices}

    def parse(text: str) -> str:
        value = canonical.get(text.strip().upper())
        if value is None:
            raise ValueError(f"{_shown(text)} no es válido: los valores posibles son {', '.join(choices)}")
        return value
    return parse


def _bootstrap_servers(text: str) -> str:
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise ValueError("debe tener al menos un servidor host:puerto")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536:
            raise ValueError(f"cada servidor debe tener la forma host:puerto, no {_shown(server)}")
    return ",".join(servers)


_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _topic(text: str) -> str:
    value = text.strip()
    if not _TOPIC_RE.match(value) or value in (".", ".."):
        raise ValueError(
            "un tema de Kafka solo admite letras, números, '.', '_' y '-' (1 a 249 caracteres)"
        )
    return value


def _non_empty(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("no puede estar vacío")
    return value


def _png_path(text: str) -> str:
    value = _non_empty(text)
    if not value.lower().endswith(".png"):
        raise ValueError(f"el gráfico es un PNG: el nombre debe acabar en .png, no {_shown(value)}")
    # Checked now, before a report that may take a while: a directory written wrong is
    # the likeliest mistake. Whether the directory lets us write is known only on writing.
    folder = os.path.dirname(value) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"la carpeta {_shown(folder, end=True)} no existe")
    if os.path.isdir(value):
        raise ValueError(f"{_shown(value, end=True)} es una carpeta, no un fichero")
    return value


def _server_ids(text: str) -> tuple[str, ...]:
    ids = tuple(s.strip() for s in text.split(","))
    if not ids or any(not s for s in ids):
        raise ValueError("debe ser una lista de identificadores no vacíos separados por comas")
    too_long = [s for s in ids if len(s) > MAX_SERVER_ID_LENGTH]
    if too_long:
        raise ValueError(f"un identificador tiene {len(too_long[0])} caracteres; el máximo es "
                         f"{MAX_SERVER_ID_LENGTH} (el consumidor rechazaría sus métricas)")
    if len(set(ids)) != len(ids):
        raise ValueError("tiene identificadores repetidos")
    return ids


ENV_EXAMPLE_PLACEHOLDERS = ("<usuario>", "<contraseña>", "<cluster>")


def _mongodb_uri(text: str) -> str:
    value = text.strip()
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("debe empezar por mongodb:// o mongodb+srv://")
    authority = before_options(value)
    placeholders = [marker for marker in ENV_EXAMPLE_PLACEHOLDERS if marker in authority]
    if placeholders:  # .env.example's Atlas line, uncommented as it is
        raise ValueError(f"todavía lleva {', '.join(placeholders)} de .env.example: cambie cada marcador por "
                         f"su valor de MongoDB Atlas")
    if "/" in authority and authority.index("/") < authority.rfind("@"):
        # user:P@ss/2026@host: pymongo would take "ss" for the host (and print it in
        # every error) and "2026@host" for the database.
        raise ValueError("tiene una '@' después de una '/': si la contraseña o el usuario llevan '/', '@' o ':', "
                         "escríbalos codificados (/ → %2F, @ → %40, : → %3A)")
    # pymongo checks the rest of the syntax when the client is built (without
    # any network access); see storage.open_client.
    return value


_BAD_DB_CHARS = re.compile(r'[/\\. "$\x00]')


def _database(text: str) -> str:
    value = text.strip()
    if len(value.encode()) > 63:  # MongoDB's limit, in bytes
        raise ValueError(f"un nombre de base de datos tiene como mucho 63 bytes, no {len(value.encode())}")
    if not value or _BAD_DB_CHARS.search(value):
        raise ValueError("un nombre de base de datos no puede estar vacío ni contener / \\ . \" $ o espacios")
    return value


def _collection(text: str) -> str:
    value = text.strip()
    if not value or "$" in value or "\x00" in value or value.startswith("system."):
        raise ValueError("un nombre de colección no puede estar vacío, contener '$' ni empezar por 'system.'")
    return value


def _since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"debe ser una fecha ISO 8601 (p. ej. 2026-11-26 o 2026-11-26T15:00), "
                         f"no {_shown(text)}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise ValueError(f"{_shown(text)} en UTC cae fuera de los años 1 a 9999") from None


def _text(text: str) -> str:
    return text


def _existing_file(text: str) -> str:
    path = os.path.expanduser(text.strip())
    if not os.path.isfile(path):
        raise ValueError(f"no existe el fichero {path!r}")
    return path


def _ca_file(text: str) -> str:
    """A PEM file of CA certificates that TLS can load (checked now: a wrong path or
    file is a setting to fix, not a broker that does not answer)."""
    path = _existing_file(text)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"{path!r} no es un certificado PEM que TLS pueda leer ({exc})") from None
    return path


# --------------------------------------------------------------------------
# The option tables.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One setting: where it is read from, its default and how it is parsed."""

    name: str
    flag: str
    env: str | None
    default: str | None
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALOR"
    secret: bool = False
    unset: str = "sin valor"  # what --help says the default is when there is none


KAFKA_OPTIONS = (
    Option("bootstrap_servers", "--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:29092",
           _bootstrap_servers, "servidores de Kafka, host:puerto separados por comas", "HOST:PUERTO"),
    Option("topic", "--topic", "KAFKA_TOPIC", "system-metrics-topic-iabd06", _topic,
           "tema de Kafka de las métricas", "TEMA"),
    Option("partitions", "--partitions", "KAFKA_TOPIC_PARTITIONS", "1", _int(1),
           "particiones con las que se crea el tema si no existe (uno existente se usa tal cual)", "N"),
    Option("security_protocol", "--security-protocol", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
           _choice(SECURITY_PROTOCOLS), "protocolo de seguridad de Kafka: " + ", ".join(SECURITY_PROTOCOLS),
           "PROTOCOLO"),
    Option("ssl_cafile", "--ssl-cafile", "KAFKA_SSL_CAFILE", None, _ca_file,
           "con SSL o SASL_SSL: fichero PEM de la CA que firmó el certificado del broker, si el sistema no "
           "la conoce (p. ej. el ca.pem de un Kafka con CA propia)", "FICHERO"),
    Option("ssl_certfile", "--ssl-certfile", "KAFKA_SSL_CERTFILE", None, _existing_file,
           "con SSL o SASL_SSL: certificado PEM de este cliente, si el broker pide uno (p. ej. el "
           "service.cert de Aiven); va con --ssl-keyfile", "FICHERO"),
    Option("ssl_keyfile", "--ssl-keyfile", "KAFKA_SSL_KEYFILE", None, _existing_file,
           "la clave privada PEM, sin contraseña, del certificado de --ssl-certfile", "FICHERO"),
    Option("sasl_mechanism", "--sasl-mechanism", "KAFKA_SASL_MECHANISM", None, _choice(SASL_MECHANISMS),
           "mecanismo SASL: " + ", ".join(SASL_MECHANISMS), "MECANISMO"),
    Option("sasl_username", "--sasl-username", "KAFKA_SASL_USERNAME", None, _non_empty,
           "usuario SASL", "USUARIO"),
    Option("sasl_password", "--sasl-password", "KAFKA_SASL_PASSWORD", None, _text,
           "contraseña SASL (mejor en el entorno o en .env que en la línea de órdenes; nunca se muestra)",
           "CONTRASEÑA", secret=True),
)

COMMON_OPTIONS = (
    Option("log_level", "--log-level", "LOG_LEVEL", "INFO", _choice(LOG_LEVELS),
           "nivel de log: " + ", ".join(LOG_LEVELS), "NIVEL"),
    Option("startup_timeout", "--startup-timeout", "STARTUP_TIMEOUT_SECONDS", "60", _seconds(strict=True),
           "segundos de espera a cada servidor al arrancar antes de salir con código 1", "SEGUNDOS"),
)

MONGO_OPTIONS = (
    Option("mongodb_uri", "--mongodb-uri", "MONGODB_URI", "mongodb://localhost:27017", _mongodb_uri,
           "URI de MongoDB (mongodb:// o mongodb+srv:// de Atlas); la contraseña nunca se muestra",
           "URI", secret=True),
    Option("database", "--database", "MONGODB_DATABASE", "monitoring_iabd06", _database,
           "base de datos de MongoDB (la que pueda nombrar la URI no cuenta aquí: solo sirve para "
           "autenticarse)", "NOMBRE"),
    Option("raw_collection", "--raw-collection", "MONGODB_RAW_COLLECTION", "system_metrics_raw_iabd06",
           _collection, "colección de mensajes en bruto", "COLECCIÓN"),
    Option("kpi_collection", "--kpi-collection", "MONGODB_KPI_COLLECTION", "system_metrics_kpis_iabd06",
           _collection, "colección de ventanas KPI", "COLECCIÓN"),
)

DEFAULT_DEADLETTER_COLLECTION = "system_metrics_deadletter_iabd06"
DEADLETTER_OPTION = Option(
    "deadletter_collection", "--deadletter-collection", "MONGODB_DEADLETTER_COLLECTION",
    DEFAULT_DEADLETTER_COLLECTION, _collection, "colección de mensajes no válidos (dead-letter)",
    "COLECCIÓN")

PRODUCER_OPTIONS = KAFKA_OPTIONS + (
    Option("interval", "--interval", "PRODUCER_INTERVAL_SECONDS", "10", _seconds(),
           "segundos entre el inicio de una ronda y el de la siguiente (0 = sin pausa)", "SEGUNDOS"),
    Option("server_ids", "--servers", "SERVER_IDS", ",".join(DEFAULT_SERVER_IDS), _server_ids,
           "identificadores de servidor separados por comas", "IDS"),
    Option("source", "--source", "METRICS_SOURCE", "simulated", _choice(SOURCES),
           "origen de las métricas: simulated (valores del curso) o psutil (esta máquina, de verdad; "
           "su primera ronda sale un intervalo después de arrancar, para medirlo entero)",
           "ORIGEN"),
    Option("rounds", "--rounds", None, None, _int(1),
           "enviar N rondas completas, vaciar el buffer y salir", "N", unset="hasta que se pare"),
    Option("seed", "--seed", None, None, _int(-(2**63), None),
           "semilla del generador aleatorio, para repetir una simulación (solo con --source simulated)", "S",
           unset="ninguna, otra simulación cada vez"),
) + COMMON_OPTIONS

CONSUMER_OPTIONS = KAFKA_OPTIONS + (
    Option("group_id", "--group-id", "KAFKA_GROUP_ID", "grupo_iabd06_id", _non_empty,
           "grupo de consumidores de Kafka", "GRUPO"),
    Option("session_timeout_ms", "--session-timeout-ms", "KAFKA_SESSION_TIMEOUT_MS", "10000", _int(1000),
           "timeout de sesión del grupo en ms (una incorporación al grupo tarda del orden de la mitad)",
           "MS"),
    Option("max_poll_interval_ms", "--max-poll-interval-ms", "KAFKA_MAX_POLL_INTERVAL_MS", "300000", _int(1000),
           "ms sin leer de Kafka (p. ej. esperando a que vuelva MongoDB) tras los que el consumidor deja el "
           "grupo; vuelve a entrar al leer de nuevo, sin perder ni duplicar nada", "MS"),
    Option("batch_size", "--batch-size", "CONSUMER_BATCH_SIZE", "2000", _int(1),
           "máximo de mensajes por lectura de Kafka (y por escritura en bloque en MongoDB)", "N"),
) + MONGO_OPTIONS + (
    DEADLETTER_OPTION,
    Option("window_size", "--window-size", "KPI_WINDOW_SIZE", "20", _int(1, MAX_WINDOW_SIZE),
           f"mensajes válidos por ventana KPI (hasta {MAX_WINDOW_SIZE})", "N"),
    Option("alert_cpu_avg", "--alert-cpu-avg", "ALERT_CPU_AVG", "80", _threshold(_float(0, maximum=100)),
           "alerta si la CPU media de una ventana supera este valor (off = sin alerta)", "PORCENTAJE"),
    Option("alert_memory_avg", "--alert-memory-avg", "ALERT_MEMORY_AVG", "90", _threshold(_float(0, maximum=100)),
           "alerta si la memoria media de una ventana supera este valor (off = sin alerta)", "PORCENTAJE"),
    Option("alert_error_sum", "--alert-error-sum", "ALERT_ERROR_SUM", "10", _threshold(_int(0)),
           "alerta si la suma de errores de una ventana supera este valor (off = sin alerta)", "N"),
    Option("max_messages", "--max-messages", None, None, _int(1),
           "parar tras consumir N mensajes (válidos o no) y guardar y confirmar lo que producen", "N",
           unset="sin límite"),
    Option("idle_timeout", "--idle-timeout", None, None, _seconds(strict=True),
           "parar tras S segundos sin mensajes nuevos, contados desde la última asignación de "
           "particiones (sin todas las del tema asignadas, no antes de 2 timeouts de sesión)", "S",
           unset="sin límite"),
) + COMMON_OPTIONS

REPORT_OPTIONS = MONGO_OPTIONS + (
    Option("last", "--last", None, "10", _int(1),
           "número de ventanas KPI recientes en la tabla (el gráfico dibuja todas las de --since, como mucho "
           "las 2.000 últimas)", "N"),
    Option("since", "--since", None, None, _since,
           "solo ventanas y mensajes desde esta fecha ISO 8601 (UTC si no lleva zona)", "FECHA",
           unset="todas"),
    Option("output", "--output", None, "informe_kpis_iabd06.png", _png_path,
           "fichero PNG del gráfico (acabado en .png)", "FICHERO"),
    Option("chart", "--chart", None, "yes", _choice(("yes", "no")),
           "dibujar el gráfico PNG: yes o no", "yes|no"),
    Option("audit", "--audit", None, "no", _choice(("yes", "no")),
           "comprobar cada ventana KPI contra los mensajes en bruto que nombra (código 1 si algo no "
           "cuadra): yes o no", "yes|no"),
) + COMMON_OPTIONS


# --------------------------------------------------------------------------
# Typed settings.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    topic: str
    partitions: int
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    startup_timeout: float = 60.0

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS


@dataclass(frozen=True)
class MongoSettings:
    uri: str = field(repr=False)
    database: str
    raw_collection: str
    kpi_collection: str
    deadletter_collection: str
    startup_timeout: float = 60.0


@dataclass(frozen=True)
class ProducerSettings:
    kafka: KafkaSettings
    interval: float
    server_ids: tuple[str, ...]
    server_ids_given: bool
    source: str
    rounds: int | None
    seed: int | None
    log_level: str

    @property
    def secrets(self) -> tuple[str, ...]:
        return _secrets(self.kafka, None)


@dataclass(frozen=True)
class ConsumerSettings:
    kafka: KafkaSettings
    mongo: MongoSettings
    group_id: str
    session_timeout_ms: int
    max_poll_interval_ms: int
    batch_size: int
    window_size: int
    alerts: AlertThresholds
    max_messages: int | None
    idle_timeout: float | None
    log_level: str

    @property
    def secrets(self) -> tuple[str, ...]:
        return _secrets(self.kafka, self.mongo)


@dataclass(frozen=True)
class ReportSettings:
    mongo: MongoSettings
    last: int
    since: datetime | None
    output: str
    chart: bool
    audit: bool
    log_level: str

    @property
    def secrets(self) -> tuple[str, ...]:
        return _secrets(None, self.mongo)


def _may_hold_a_secret(text: str) -> bool:
    """A secret setting's whole text is masked, except a URI with no credentials in it
    (``mongodb://localhost:27017``): error lines must be able to name the server."""
    if "://" not in text:
        return True
    return "@" in text or re.search(r"(?i)password|token|secret|key", text) is not None


def _secrets(kafka: KafkaSettings | None, mongo: MongoSettings | None) -> tuple[str, ...]:
    found: list[str] = []
    if kafka is not None and kafka.sasl_password:
        found.append(kafka.sasl_password)
    if mongo is not None:
        found += mongodb_uri_secrets(mongo.uri)
    return tuple(found)


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------

def _build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    parser = spanish_parser(description, prog=prog)
    for option in options:
        where = f"variable {option.env}; " if option.env else ""
        default = option.default if option.default is not None else option.unset
        parser.add_argument(option.flag, dest=option.name, metavar=option.metavar, default=None,
                            help=f"{option.help} ({where}por defecto: {default})")
    return parser


# Python reads bytes of an argument or environment value that are not UTF-8 (a
# terminal or a script in Latin-1) as lone surrogates, which no library can send on.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
UNDECODABLE = ("no es texto UTF-8: tiene bytes en otra codificación (¿un terminal o un script en Latin-1?); "
               "escríbalo en UTF-8")


def _resolve(options: Sequence[Option], args: argparse.Namespace, environ: Mapping[str, str],
             dotenv: Mapping[str, str | None]) -> tuple[dict[str, Any], set[str]]:
    """Apply the precedence rule; return typed values and the names the user set."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    for option in options:
        text = getattr(args, option.name)
        origin = option.flag
        if text is None and option.env:
            for source in (environ, dotenv):
                candidate = source.get(option.env)
                if candidate is not None and candidate.strip() != "":
                    text = candidate
                    origin = option.env
                    break
        if text is None:
            text = option.default
            origin = "default"
        else:
            given.add(option.name)
        if option.secret and text:
            register_secret(text if _may_hold_a_secret(text) else None)
            for secret in mongodb_uri_secrets(text) if "://" in text else []:
                register_secret(secret if secret not in ENV_EXAMPLE_PLACEHOLDERS else None)
        if text is None:
            values[option.name] = None
            continue
        label = f"{option.env} ({option.flag})" if option.env else option.flag
        if origin == option.env:
            label = f"{option.env} (o {option.flag})"
        if _SURROGATE_RE.search(text):
            raise SettingsError(label, UNDECODABLE)
        try:
            values[option.name] = option.parse(text)
        except ValueError as exc:
            raise SettingsError(label, str(exc)) from None
    return values, given


def _kafka(values: dict[str, Any], startup_timeout: float) -> KafkaSettings:
    protocol = values["security_protocol"]
    if protocol in SASL_PROTOCOLS:
        if not values["sasl_mechanism"]:
            raise SettingsError("KAFKA_SASL_MECHANISM (--sasl-mechanism)",
                                f"es obligatorio con KAFKA_SECURITY_PROTOCOL={protocol}")
        if not values["sasl_username"] or not values["sasl_password"]:
            raise SettingsError("KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD",
                                f"son obligatorios con KAFKA_SECURITY_PROTOCOL={protocol}")
    for option in KAFKA_OPTIONS:  # a setting the protocol would silently ignore
        for prefix, protocols in (("ssl_", TLS_PROTOCOLS), ("sasl_", SASL_PROTOCOLS)):
            if option.name.startswith(prefix) and values[option.name] and protocol not in protocols:
                raise SettingsError(f"{option.env} ({option.flag})", f"solo sirve con KAFKA_SECURITY_PROTOCOL="
                                    f"{' o '.join(protocols)} (ahora {protocol})")
    _check_client_certificate(values["ssl_certfile"], values["ssl_keyfile"])
    return KafkaSettings(
        bootstrap_servers=values["bootstrap_servers"], topic=values["topic"],
        partitions=values["partitions"], security_protocol=protocol,
        sasl_mechanism=values["sasl_mechanism"], sasl_username=values["sasl_username"],
        sasl_password=values["sasl_password"], ssl_cafile=values["ssl_cafile"],
        ssl_certfile=values["ssl_certfile"], ssl_keyfile=values["ssl_keyfile"],
        startup_timeout=startup_timeout)


def no_password_prompt() -> bytes:
    """The ``password`` callback of ``load_cert_chain``: an encrypted key is an error,
    not a prompt that OpenSSL would show on the terminal and wait on."""
    raise ValueError("la clave está cifrada con una contraseña")


def _check_client_certificate(certfile: str | None, keyfile: str | None) -> None:
    """Both or neither, and a pair TLS can load now, without asking for a password
    (OpenSSL would prompt for one on the terminal, inside kafka-python)."""
    if bool(certfile) != bool(keyfile):
        missing = "KAFKA_SSL_KEYFILE (--ssl-keyfile)" if certfile else "KAFKA_SSL_CERTFILE (--ssl-certfile)"
        raise SettingsError(missing, "el certificado de cliente y su clave van juntos: falta este")
    if certfile and keyfile:
        try:
            ssl.create_default_context().load_cert_chain(certfile, keyfile, password=no_password_prompt)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise SettingsError("KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE",
                                f"TLS no puede usar {certfile!r} con la clave {keyfile!r} ({exc}); la clave "
                                f"debe ser la de ese certificado, en PEM y sin contraseña") from None


MAX_NAMESPACE_BYTES = 255  # MongoDB's limit for "database.collection"


def _mongo(values: dict[str, Any]) -> MongoSettings:
    # KPI ids (topic:partition:first_offset) and dead-letter ids (topic:partition:offset)
    # have the same shape: one collection for two of them would mix and collide.
    collections = [("MONGODB_RAW_COLLECTION (--raw-collection)", values["raw_collection"]),
                   ("MONGODB_KPI_COLLECTION (--kpi-collection)", values["kpi_collection"])]
    if values.get("deadletter_collection"):
        collections.append(("MONGODB_DEADLETTER_COLLECTION (--deadletter-collection)",
                            values["deadletter_collection"]))
    taken: dict[str, str] = {}  # name -> the setting that has it
    for label, name in collections:
        if name in taken:
            raise SettingsError(label, f"{name!r} ya es {taken[name]}: cada colección necesita su propio nombre")
        taken[name] = label.split()[0]
        namespace = len(f"{values['database']}.{name}".encode())
        if namespace > MAX_NAMESPACE_BYTES:
            raise SettingsError(label, f"base de datos, punto y colección suman {namespace} bytes; MongoDB admite "
                                       f"como mucho {MAX_NAMESPACE_BYTES}")
    return MongoSettings(
        uri=values["mongodb_uri"], database=values["database"],
        raw_collection=values["raw_collection"], kpi_collection=values["kpi_collection"],
        deadletter_collection=values.get("deadletter_collection") or DEFAULT_DEADLETTER_COLLECTION,
        startup_timeout=values["startup_timeout"])


def _load(prog: str, description: str, options: Sequence[Option], argv: Sequence[str] | None,
          environ: Mapping[str, str] | None, dotenv_path: str | None) -> tuple[dict[str, Any], set[str]]:
    parser = _build_parser(prog, description, options)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    env = os.environ if environ is None else environ
    dotenv: Mapping[str, str | None] = {}
    path = ".env" if dotenv_path is None else dotenv_path
    if path and os.path.lexists(path):  # a directory or a broken link there is a mistake, not "no .env"
        dotenv = _read_dotenv(path)
    return _resolve(options, args, env, dotenv)


def _read_dotenv(path: str) -> Mapping[str, str | None]:
    """The values of a ``.env`` file, or SettingsError naming what is wrong with it.

    python-dotenv skips a line it cannot parse with an English warning, and the
    setting on it silently takes its default; a file not in UTF-8 (an editor's
    Latin-1, with an accent in a value) makes it raise. Both are bad settings here.
    Only line numbers are named: a line may hold a password."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise SettingsError(path, "no es un fichero (¿un directorio?): los ajustes van en un fichero .env")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise SettingsError(path, f"no se puede leer: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SettingsError(path, f"no está en UTF-8 (línea {line}): guárdelo con codificación UTF-8") from None
    bindings = list(parse_stream(io.StringIO(text)))
    bad = [str(_first_line(binding.original)) for binding in bindings if binding.error]
    if bad:
        lines = f"la línea {bad[0]} no tiene" if len(bad) == 1 else f"las líneas {', '.join(bad)} no tienen"
        raise SettingsError(path, f"{lines} la forma NOMBRE=valor (¿unas comillas sin cerrar?)")
    values = dict(dotenv_values(stream=io.StringIO(text)))
    last = {binding.key: binding for binding in bindings if binding.key is not None}
    for name, binding in last.items():
        if _SINGLE_QUOTED.match(binding.original.string):
            values[name] = binding.value  # as written: no ${...} expanded (see _SINGLE_QUOTED)
    return values


# python-dotenv expands ${NAME} in every value; docker compose (which reads the same
# .env for the containers of docker-compose.yml) and the shell do not expand inside
# single quotes. So a password written 'a${b' is the same password for both.
_SINGLE_QUOTED = re.compile(r"\s*(?:export\s+)?(?:'[^']*'|[^=\s]+)\s*=\s*'")


def _first_line(original: Any) -> int:
    """The line of a python-dotenv statement's first character that is not blank
    (its own line number counts the blank lines before it)."""
    blank = original.string[:len(original.string) - len(original.string.lstrip())]
    return int(original.line) + blank.count("\n")


def load_producer_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                           dotenv_path: str | None = None,
                           prog: str = "productor_metrics_iabd06.py") -> ProducerSettings:
    values, given = _load(prog, "Envía métricas de servidores al tema de Kafka, una por servidor y ronda.",
                          PRODUCER_OPTIONS, argv, environ, dotenv_path)
    if values["source"] == "psutil" and "server_ids" in given and len(values["server_ids"]) != 1:
        raise SettingsError("SERVER_IDS (--servers)",
                            "con METRICS_SOURCE=psutil solo se mide esta máquina: indique un único id")
    if values["source"] == "psutil" and values["seed"] is not None:
        raise SettingsError("--seed", "con METRICS_SOURCE=psutil las métricas son medidas, no aleatorias: "
                                      "--seed solo sirve con la simulación")
    return ProducerSettings(
        kafka=_kafka(values, values["startup_timeout"]), interval=values["interval"],
        server_ids=values["server_ids"], server_ids_given="server_ids" in given,
        source=values["source"], rounds=values["rounds"], seed=values["seed"],
        log_level=values["log_level"])


def load_consumer_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                           dotenv_path: str | None = None,
                           prog: str = "consumidor_metrics_iabd06.py") -> ConsumerSettings:
    values, _ = _load(prog, "Guarda cada métrica de Kafka en MongoDB una sola vez y calcula KPIs "
                      "por ventanas de N mensajes.", CONSUMER_OPTIONS, argv, environ, dotenv_path)
    return ConsumerSettings(
        kafka=_kafka(values, values["startup_timeout"]), mongo=_mongo(values),
        group_id=values["group_id"], session_timeout_ms=values["session_timeout_ms"],
        max_poll_interval_ms=values["max_poll_interval_ms"], batch_size=values["batch_size"],
        window_size=values["window_size"],
        alerts=AlertThresholds(cpu_percent_avg=values["alert_cpu_avg"],
                               memory_percent_avg=values["alert_memory_avg"],
                               error_count_sum=values["alert_error_sum"]),
        max_messages=values["max_messages"], idle_timeout=values["idle_timeout"],
        log_level=values["log_level"])


def load_report_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                         dotenv_path: str | None = None,
                         prog: str = "informe_kpis_iabd06.py") -> ReportSettings:
    values, _ = _load(prog, "Muestra las últimas ventanas KPI, un resumen por servidor y dibuja "
                      "un gráfico PNG.", REPORT_OPTIONS, argv, environ, dotenv_path)
    return ReportSettings(mongo=_mongo(values), last=values["last"], since=values["since"],
                          output=values["output"], chart=values["chart"] == "yes",
                          audit=values["audit"] == "yes", log_level=values["log_level"])
