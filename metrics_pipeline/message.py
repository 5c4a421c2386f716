"""The metric message: its schema (SPEC §2) and its validation.

:func:`parse_message` turns the raw bytes of a Kafka value into a
:class:`MetricMessage`, or raises :class:`InvalidMessage` with a Spanish sentence
saying what is wrong; that sentence is stored in the dead-letter collection.

Rules (anything else is invalid):

* the value is UTF-8 JSON text holding an object (standard JSON: no ``NaN`` or
  ``Infinity`` literals), nested at most :data:`MAX_NESTING_DEPTH` levels, the
  limit MongoDB itself puts on a document;
* ``server_id``: non-empty text (not only blanks, no NUL) of at most
  :data:`MAX_SERVER_ID_LENGTH` characters, like a host name. It becomes a field
  name in the KPI document's ``servers``: a window of long, distinct ids must still
  fit in one MongoDB document, and MongoDB refuses field names of more than 255
  parts separated by periods;
* ``timestamp_utc``: ISO 8601 text; without an offset it is read as UTC;
* ``metrics.cpu_percent``, ``metrics.memory_percent``: finite numbers in [0, 100];
* ``metrics.disk_io_mbps``, ``metrics.network_mbps``: finite numbers >= 0;
* ``metrics.error_count``: an integer >= 0 that fits in 64 bits, written without a
  fractional part (``2``, not ``2.0``);
* ``message_uuid``: a UUID in its 8-4-4-4-12 hexadecimal form;
* booleans are not numbers; extra fields are allowed and kept, except the names the
  consumer adds to the stored document (:data:`RESERVED_FIELDS`), which would be
  overwritten and are therefore rejected rather than silently lost.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PERCENT_FIELDS = ("cpu_percent", "memory_percent")
RATE_FIELDS = ("disk_io_mbps", "network_mbps")
RESERVED_FIELDS = ("_id", "timestamp", "kafka", "ingested_at")
MAX_NESTING_DEPTH = 100
NESTING_ERROR = f"el mensaje anida más de {MAX_NESTING_DEPTH} niveles (límite de MongoDB)"
MAX_SERVER_ID_LENGTH = 253  # the longest host name
MAX_INT64 = 2**63 - 1

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class InvalidMessage(ValueError):
    """The message breaks a rule; ``str(exc)`` says which, in Spanish."""


@dataclass(frozen=True, slots=True)
class MetricMessage:
    """A valid message: the object as received plus its parsed, typed fields."""

    fields: dict[str, Any]
    server_id: str
    timestamp: datetime
    message_id: str
    cpu_percent: float
    memory_percent: float
    disk_io_mbps: float
    network_mbps: float
    error_count: int


def _reject_constant(name: str) -> Any:
    raise InvalidMessage(f"JSON no válido: {name} no es un valor JSON estándar")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects/arrays more than ``limit`` levels."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


# What Python's JSON decoder says (3.11-3.15), in the language of the other reasons;
# a sentence not listed here is kept as Python wrote it.
_JSON_ERRORS = {
    "Expecting value": "se esperaba un valor",
    "Expecting property name enclosed in double quotes": "se esperaba un nombre de campo entre comillas dobles",
    "Expecting ':' delimiter": "se esperaba ':'",
    "Expecting ',' delimiter": "se esperaba ','",
    "Unterminated string starting at": "texto sin comillas de cierre, que empieza en",
    "Invalid control character at": "carácter de control sin escapar dentro de un texto, en",
    "Invalid \\escape": "secuencia de escape (\\) no válida",
    "Invalid \\uXXXX escape": "escape \\uXXXX no válido",
    "Extra data": "hay más datos después del valor JSON",
    "Illegal trailing comma before end of object": "coma sobrante antes de cerrar el objeto",
    "Illegal trailing comma before end of array": "coma sobrante antes de cerrar la lista",
}


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are unique. With a name twice (``"cpu_percent": 10,
    "cpu_percent": 99``) which value is meant depends on the parser (Python's takes
    the last): the message is ambiguous, and dead-lettered as it came."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidMessage(f"JSON no válido: el campo {name[:64]!r} aparece dos veces en el mismo objeto")
            seen.add(name)
    return obj


# One decoder for every message: json.loads(text, parse_constant=...) would build a
# new JSONDecoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object)


def decode_json(value: bytes | None) -> Any:
    """Bytes -> Python value, with the message's JSON rules."""
    if value is None:
        raise InvalidMessage("mensaje vacío: el valor de Kafka es nulo")
    if not value:
        raise InvalidMessage("mensaje vacío: el valor de Kafka no tiene bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"el valor no es texto UTF-8 (byte no válido en la posición {exc.start})") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        # The decoder's limit is Python's (1,000 and up), far beyond MongoDB's 100;
        # whether it is reached depends on the interpreter (CPython 3.11 stops at
        # 5,000 levels, 3.14 under Pyodide reads them), so the sentence is the one
        # validate() gives.
        raise InvalidMessage(NESTING_ERROR) from None
    except InvalidMessage:
        raise  # from _reject_constant or _object: already says what is wrong
    except json.JSONDecodeError as exc:
        if text.startswith("\ufeff"):
            raise InvalidMessage("JSON no válido: empieza por la marca BOM de UTF-8 (U+FEFF), que un mensaje JSON "
                                 "no lleva") from None
        why = _JSON_ERRORS.get(exc.msg, exc.msg)
        raise InvalidMessage(f"JSON no válido: {why} (línea {exc.lineno}, columna {exc.colno})") from None
    except ValueError as exc:
        # Not a JSONDecodeError: Python (3.11+) refuses to convert an integer literal
        # of more digits than sys.get_int_max_str_digits() (4,300 by default).
        if "integer string conversion" not in str(exc):
            raise InvalidMessage(f"JSON no válido: {exc}") from None
        raise InvalidMessage(f"JSON no válido: un número entero tiene más de "
                             f"{sys.get_int_max_str_digits()} cifras") from None


def _number(metrics: dict[str, Any], name: str) -> float:
    value = metrics.get(name)
    if name not in metrics:
        raise InvalidMessage(f"falta metrics.{name}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessage(f"metrics.{name} debe ser un número, no {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise InvalidMessage(f"metrics.{name} debe ser un número finito")
    return value


def _from_iso(value: str) -> datetime:
    """ISO 8601 as Python reads it, plus RFC 3339's lowercase ``t`` and ``z``
    (``2026-11-26t15:04:05z``), which Python refuses."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        if value.upper() == value:
            raise
        return datetime.fromisoformat(value.upper())


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidMessage("timestamp_utc debe ser un texto ISO 8601")
    try:
        parsed = _from_iso(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidMessage(f"timestamp_utc no es una fecha ISO 8601 válida: {value[:64]!r}") from None


def validate(obj: Any, shallow: bool = False) -> MetricMessage:
    """Check a decoded JSON value against the rules of SPEC §2. ``shallow``: the caller
    knows the value cannot nest more than MAX_NESTING_DEPTH levels (see parse_message)."""
    if not isinstance(obj, dict):
        kind = "null" if obj is None else type(obj).__name__
        raise InvalidMessage(f"el mensaje debe ser un objeto JSON, no {kind}")
    if not shallow and _depth_exceeds(obj, MAX_NESTING_DEPTH):
        raise InvalidMessage(NESTING_ERROR)
    reserved = [name for name in RESERVED_FIELDS if name in obj]
    if reserved:
        raise InvalidMessage(f"el campo {reserved[0]!r} está reservado para el documento guardado")

    server_id = obj.get("server_id")
    if not isinstance(server_id, str) or not server_id.strip():
        raise InvalidMessage("server_id debe ser un texto no vacío")
    if "\x00" in server_id:
        raise InvalidMessage("server_id no puede contener el carácter NUL")
    if len(server_id) > MAX_SERVER_ID_LENGTH:
        raise InvalidMessage(f"server_id tiene {len(server_id)} caracteres; el máximo es {MAX_SERVER_ID_LENGTH}")

    timestamp = _parse_timestamp(obj.get("timestamp_utc"))

    message_uuid = obj.get("message_uuid")
    if not isinstance(message_uuid, str) or not _UUID_RE.match(message_uuid):
        raise InvalidMessage("message_uuid debe ser un UUID (8-4-4-4-12 dígitos hexadecimales)")

    metrics = obj.get("metrics")
    if not isinstance(metrics, dict):
        raise InvalidMessage("metrics debe ser un objeto JSON")
    values = {name: _number(metrics, name) for name in PERCENT_FIELDS + RATE_FIELDS}
    for name in PERCENT_FIELDS:
        if not 0 <= values[name] <= 100:
            raise InvalidMessage(f"metrics.{name} debe estar entre 0 y 100")
    for name in RATE_FIELDS:
        if values[name] < 0:
            raise InvalidMessage(f"metrics.{name} no puede ser negativo")

    if "error_count" not in metrics:
        raise InvalidMessage("falta metrics.error_count")
    error_count = metrics["error_count"]
    if isinstance(error_count, float) and error_count.is_integer():
        # JSON has one number type; we still ask for integers written as such, so
        # that the raw collection holds one BSON type for this field.
        raise InvalidMessage(f"metrics.error_count debe ser un número entero escrito sin decimales "
                             f"({int(error_count)}, no {error_count!r})")
    if isinstance(error_count, bool) or not isinstance(error_count, int):
        raise InvalidMessage("metrics.error_count debe ser un número entero")
    if not 0 <= error_count <= MAX_INT64:
        raise InvalidMessage("metrics.error_count debe ser un entero >= 0 (de 64 bits)")

    return MetricMessage(
        fields=obj, server_id=server_id, timestamp=timestamp, message_id=message_uuid.lower(),
        cpu_percent=values["cpu_percent"], memory_percent=values["memory_percent"],
        disk_io_mbps=values["disk_io_mbps"], network_mbps=values["network_mbps"],
        error_count=error_count)


def parse_message(value: bytes | None) -> MetricMessage:
    """Kafka value bytes -> a valid :class:`MetricMessage` (or InvalidMessage)."""
    obj = decode_json(value)  # refuses None
    # Each level of nesting opens one '{' or '['; counting them in C is far cheaper
    # than walking the decoded value, and settles it for every ordinary message.
    brackets = value.count(b"{") + value.count(b"[") if value is not None else 0
    return validate(obj, shallow=brackets <= MAX_NESTING_DEPTH)
