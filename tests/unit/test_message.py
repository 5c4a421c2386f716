"""Validation of SPEC §2: an accept/reject table covering every rule, and random mutations."""

from __future__ import annotations

import copy
import json
import math
import random
import re
import sys
from datetime import datetime, timezone
from typing import Any

import pytest

from metrics_pipeline.message import InvalidMessage, parse_message

BASE: dict[str, Any] = {
    "server_id": "web01",
    "timestamp_utc": "2026-11-26T15:04:05.123456+00:00",
    "metrics": {"cpu_percent": 42.17, "memory_percent": 63.5, "disk_io_mbps": 12.34,
                "network_mbps": 77.01, "error_count": 0},
    "message_uuid": "6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10",
}


def variant(path: str, value: Any = ..., *, delete: bool = False) -> bytes:
    message = copy.deepcopy(BASE)
    target = message
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[key]
    if delete:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(message).encode()


ACCEPTED = [
    ("the SPEC example", json.dumps(BASE).encode()),
    ("timestamp without offset (UTC)", variant("timestamp_utc", "2026-11-26T15:04:05")),
    ("timestamp with Z", variant("timestamp_utc", "2026-11-26T15:04:05Z")),
    ("timestamp with another offset", variant("timestamp_utc", "2026-11-26T16:04:05+01:00")),
    ("timestamp in nanoseconds (Java, Go)", variant("timestamp_utc", "2026-11-26T15:04:05.123456789Z")),
    ("timestamp with RFC 3339's lowercase t and z", variant("timestamp_utc", "2026-11-26t15:04:05.5z")),
    ("nested exactly 100 deep", variant("extra", json.loads("[" * 99 + "]" * 99))),
    ("many brackets, inside strings", variant("extra", {"note": "{[" * 300, "list": [[1], [2]]})),
    ("integers as numbers", variant("metrics.cpu_percent", 42)),
    ("bounds 0 and 100", variant("metrics.memory_percent", 100)),
    ("cpu 0", variant("metrics.cpu_percent", 0)),
    ("rates zero", variant("metrics.disk_io_mbps", 0.0)),
    ("big rate", variant("metrics.network_mbps", 1e12)),
    ("error_count large", variant("metrics.error_count", 2**63 - 1)),
    ("upper-case uuid", variant("message_uuid", "6F1C2D9E-3B7A-4C55-9A1E-2F0D8C4B7E10")),
    ("extra top-level field", variant("region", "eu-west")),
    ("extra metric", variant("metrics.temperature_c", 55.5)),
    ("unicode server id", variant("server_id", "servidor-ñ")),
    ("server id of 253 characters", variant("server_id", "ñ" * 253)),
    ("server id of 253 periods", variant("server_id", "." * 253)),
    ("server id with dots (a host name)", variant("server_id", "web01.example.com")),
]

REJECTED = [
    ("null value", None, "vacío"),
    ("no bytes", b"", "vacío"),
    ("not UTF-8", b"\xff\xfe{}", "UTF-8"),
    ("truncated JSON", json.dumps(BASE).encode()[:-5], "JSON no válido"),
    ("JSON null", b"null", "objeto JSON"),
    ("array", b"[1, 2]", "objeto JSON"),
    ("scalar", b"42", "objeto JSON"),
    ("string", b'"hola"', "objeto JSON"),
    ("NaN literal", variant("metrics.cpu_percent", 1).replace(b": 1,", b": NaN,"), "NaN"),
    ("Infinity literal", variant("metrics.disk_io_mbps", 1).replace(b": 1,", b": Infinity,"), "Infinity"),
    ("1e999", variant("metrics.disk_io_mbps", 1).replace(b": 1,", b": 1e999,"), "finito"),
    ("missing server_id", variant("server_id", delete=True), "server_id"),
    ("empty server_id", variant("server_id", ""), "server_id"),
    ("blank server_id", variant("server_id", "   "), "server_id"),
    ("numeric server_id", variant("server_id", 7), "server_id"),
    ("NUL in server_id", variant("server_id", "a\x00b"), "NUL"),
    ("server_id of 254 characters", variant("server_id", "x" * 254), "el máximo es 253"),
    ("missing timestamp", variant("timestamp_utc", delete=True), "timestamp_utc"),
    ("bad timestamp", variant("timestamp_utc", "ayer por la tarde"), "timestamp_utc"),
    ("bad timestamp, lowercase", variant("timestamp_utc", "2026-11-26t25:00:00z"), "timestamp_utc"),
    ("numeric timestamp", variant("timestamp_utc", 1764169445), "timestamp_utc"),
    ("timestamp out of range after offset", variant("timestamp_utc", "0001-01-01T00:00:00+05:00"), "timestamp_utc"),
    ("missing uuid", variant("message_uuid", delete=True), "message_uuid"),
    ("bad uuid", variant("message_uuid", "not-a-uuid"), "message_uuid"),
    ("uuid without dashes", variant("message_uuid", "6f1c2d9e3b7a4c559a1e2f0d8c4b7e10"), "message_uuid"),
    ("metrics missing", variant("metrics", delete=True), "metrics"),
    ("metrics not an object", variant("metrics", [1, 2, 3]), "metrics"),
    ("metrics a string", variant("metrics", "cpu=3"), "metrics"),
    ("cpu missing", variant("metrics.cpu_percent", delete=True), "cpu_percent"),
    ("cpu boolean", variant("metrics.cpu_percent", True), "cpu_percent"),
    ("cpu string", variant("metrics.cpu_percent", "42"), "cpu_percent"),
    ("cpu above 100", variant("metrics.cpu_percent", 100.01), "cpu_percent"),
    ("cpu negative", variant("metrics.cpu_percent", -0.5), "cpu_percent"),
    ("memory above 100", variant("metrics.memory_percent", 101), "memory_percent"),
    ("memory null", variant("metrics.memory_percent", None), "memory_percent"),
    ("disk negative", variant("metrics.disk_io_mbps", -1), "disk_io_mbps"),
    ("network boolean", variant("metrics.network_mbps", False), "network_mbps"),
    ("network huge integer", variant("metrics.network_mbps", 10**400), "network_mbps"),
    # Python refuses to read an integer of more than 4,300 digits (ValueError, not a
    # JSONDecodeError): before it was caught, such a message stopped the consumer.
    ("network of 5,000 digits", variant("metrics.network_mbps", 1).replace(b": 1,", b": " + b"9" * 5000 + b","),
     "más de 4300 cifras"),
    ("extra field of 4,301 digits", variant("extra", 1).replace(b": 1}", b": -" + b"1" * 4301 + b"}"),
     "más de 4300 cifras"),
    ("error_count negative", variant("metrics.error_count", -1), "error_count"),
    ("error_count fractional", variant("metrics.error_count", 1.5), "error_count"),
    ("error_count float", variant("metrics.error_count", 2.0), "sin decimales (2, no 2.0)"),
    ("error_count boolean", variant("metrics.error_count", True), "error_count"),
    ("error_count beyond 64 bits", variant("metrics.error_count", 2**63), "error_count"),
    ("error_count missing", variant("metrics.error_count", delete=True), "error_count"),
    ("a field twice", variant("server_id", "web01").replace(b"{", b'{"server_id": "db01", ', 1),
     "el campo 'server_id' aparece dos veces"),
    ("a metric twice",
     variant("metrics.cpu_percent", 10).replace(b'"cpu_percent": 10', b'"cpu_percent": 10, "cpu_percent": 99'),
     "el campo 'cpu_percent' aparece dos veces"),
    ("reserved field _id", variant("_id", "x"), "reservado"),
    ("reserved field kafka", variant("kafka", {}), "reservado"),
    ("nested 5000 deep", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "niveles"),
    ("nested 150 deep (MongoDB's limit is 100)", variant("extra", json.loads("[" * 150 + "]" * 150)), "niveles"),
    ("nested 101 deep, the message itself being level 1", variant("extra", json.loads("[" * 100 + "]" * 100)),
     "niveles"),
]


@pytest.mark.parametrize("case, value", ACCEPTED, ids=[c for c, _ in ACCEPTED])
def test_accepted(case: str, value: bytes) -> None:
    message = parse_message(value)
    assert message.fields == json.loads(value)
    assert message.timestamp.tzinfo is not None


@pytest.mark.parametrize("case, value, words", REJECTED, ids=[c for c, _, _ in REJECTED])
def test_rejected_with_a_reason(case: str, value: bytes | None, words: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(value)
    assert words in str(caught.value)


@pytest.mark.parametrize("value, words", [
    (b"{'server_id': 'web01'}", "se esperaba un nombre de campo entre comillas dobles (línea 1, columna 2)"),
    (b'{"server_id": "web01",}', "(línea 1, columna "),  # 3.13+: "coma sobrante antes de cerrar el objeto"
    (b'[1,]', "(línea 1, columna "),
    (b'{"a" 1}', "se esperaba ':'"),
    (b'{"a": 1 "b": 2}', "se esperaba ','"),
    (b'{"a": "sin cerrar', "texto sin comillas de cierre"),
    (b'{"a": "\x01"}', "carácter de control"),
    (b'{"a": "\\q"}', "secuencia de escape"),
    (b'{"a": "\\u12"}', "escape \\uXXXX no válido"),
    (b'{} {}', "hay más datos después del valor JSON"),
    ("\ufeff{}".encode(), "marca BOM de UTF-8"),
    (b"\n\n  {", "(línea 3, columna 4)"),
    (b'{"a": NaN}', "NaN no es un valor JSON estándar"),
    (b'{"a": 1, "a": 1}', "el campo 'a' aparece dos veces en el mismo objeto"),
])
def test_json_errors_are_said_in_spanish_with_where(value: bytes, words: str) -> None:
    # The dead-letter reason of a message typed by hand (single quotes, a trailing
    # comma...): Python's English sentences, translated; line and column kept.
    with pytest.raises(InvalidMessage) as caught:
        parse_message(value)
    reason = str(caught.value)
    assert reason.startswith("JSON no válido: ") and words in reason, reason
    assert reason.count("JSON no válido") == 1, reason
    assert not any(english in reason for english in ("Expecting", "Unterminated", "Invalid", "Extra", "Illegal"))


@pytest.mark.skipif(sys.platform == "emscripten", reason="under Pyodide the JavaScript stack overflows first")
def test_a_million_levels_of_nesting_is_rejected_like_a_hundred_and_one() -> None:
    # The decoder gives up (RecursionError) where the interpreter says, not at 100.
    with pytest.raises(InvalidMessage, match="anida más de 100 niveles"):
        parse_message(b"[" * 10**6 + b"]" * 10**6)


def test_parsed_fields() -> None:
    message = parse_message(variant("timestamp_utc", "2026-11-26T16:04:05+01:00"))
    assert message.timestamp == datetime(2026, 11, 26, 15, 4, 5, tzinfo=timezone.utc)
    assert message.message_id == "6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10"
    assert (message.cpu_percent, message.error_count) == (42.17, 0)
    naive = parse_message(variant("timestamp_utc", "2026-11-26T15:04:05"))
    assert naive.timestamp == datetime(2026, 11, 26, 15, 4, 5, tzinfo=timezone.utc)
    upper = parse_message(variant("message_uuid", "6F1C2D9E-3B7A-4C55-9A1E-2F0D8C4B7E10"))
    assert upper.message_id == "6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10"


# -- random mutations against a second, plain statement of the rules ----------

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 100, 101, 100.0001, -0.0, 0.5, 2.0, 1e308, 2**63 - 1, 2**63, 10**30, "", " ", "50",
    [], {}, [1], {"a": 1}, "2026-11-26T15:04:05Z", "2026-11-26", "ayer", "2026-13-01T00:00:00", "20261126T150405Z",
    "0001-01-01T00:00:00+05:00", "6F1C2D9E-3B7A-4C55-9A1E-2F0D8C4B7E10", "6f1c2d9e3b7a4c559a1e2f0d8c4b7e10",
    "{6f1c2d9e-3b7a-4c55-9a1e-2f0d8c4b7e10}", "x" * 253, "x" * 254, "ñandú", "web\x0001",
]
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _spec_accepts(obj: Any) -> bool:
    """SPEC §2 plus the limits documented in the README, written out independently."""
    def number(value: Any) -> bool:
        try:
            return type(value) in (int, float) and math.isfinite(value)
        except OverflowError:  # an integer beyond any float
            return False

    if not isinstance(obj, dict) or {"_id", "timestamp", "kafka", "ingested_at"} & obj.keys():
        return False
    server, stamp, uuid, metrics = (obj.get(k) for k in ("server_id", "timestamp_utc", "message_uuid", "metrics"))
    if not isinstance(server, str) or not server.strip() or "\x00" in server or len(server) > 253:
        return False
    try:
        parsed = datetime.fromisoformat(stamp.upper())  # RFC 3339: 't' and 'z' may be lowercase
        if parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)
    except (AttributeError, ValueError, OverflowError):  # AttributeError: not a string
        return False
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid) or not isinstance(metrics, dict):
        return False
    if not all(number(metrics.get(k)) and 0 <= metrics[k] <= 100 for k in ("cpu_percent", "memory_percent")):
        return False
    if not all(number(metrics.get(k)) and metrics[k] >= 0 for k in ("disk_io_mbps", "network_mbps")):
        return False
    errors = metrics.get("error_count")
    return type(errors) is int and 0 <= errors < 2**63


def _mutated(rng: random.Random) -> bytes:
    message = copy.deepcopy(BASE)
    for _ in range(rng.randint(1, 2)):
        inner = isinstance(message.get("metrics"), dict) and rng.random() < 0.6
        target = message["metrics"] if inner else message
        keys = list(target) if inner else [*target, "extra", "_id", "kafka"]
        key = rng.choice(keys or ["metrics"])  # metrics may have lost every field
        if rng.random() < 0.2:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    value = bytearray(json.dumps(message).encode())
    if rng.random() < 0.2:  # and a few damaged bytes
        for _ in range(rng.randint(1, 3)):
            value[rng.randrange(len(value))] = rng.choice(b'0123456789.-eE,:{}[]"\\ \xff')
    return bytes(value)


def _not_json(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")


def test_random_mutations_are_accepted_exactly_when_the_rules_say_so() -> None:
    rng = random.Random(20261127)
    verdicts = {True: 0, False: 0}
    for _ in range(4000):
        value = _mutated(rng)
        try:
            expected = _spec_accepts(json.loads(value.decode("utf-8"), parse_constant=_not_json))
        except (UnicodeDecodeError, ValueError):
            expected = False
        try:
            parse_message(value)
            accepted = True
        except InvalidMessage:
            accepted = False
        assert accepted == expected, value
        verdicts[accepted] += 1
    assert min(verdicts.values()) > 300  # both sides well exercised
