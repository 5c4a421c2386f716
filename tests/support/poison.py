"""Every kind of invalid payload the pipeline must dead-letter (SPEC §2, issue 3),
shared by the poison scenario (tests/integration/test_fault_poison.py) and the soak
(tools/soak.py). Each is invalid by construction, not by asking our validator."""

from __future__ import annotations

import json
import random

from tests.support.pipeline import encode, valid_message


def _with(path: str, value) -> bytes:
    message = valid_message()
    target = message
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return json.dumps(message).encode()


def _replace(path: str, literal: bytes) -> bytes:
    return _with(path, 123456789).replace(b"123456789", literal)


def _extra(member: bytes) -> bytes:
    """A valid message with one more JSON member, written as given."""
    return encode(valid_message())[:-1] + b", " + member + b"}"


POISON: list[tuple[str, bytes | None]] = [
    ("empty", b""),
    ("tombstone (no value)", None),
    ("null", b"null"),
    ("array", b"[1, 2, 3]"),
    ("number", b"42"),
    ("string", b'"web01"'),
    ("truncated JSON", encode(valid_message())[:-7]),
    ("random bytes", bytes(random.Random(1).randrange(256) for _ in range(300))),
    ("not UTF-8", b'{"server_id": "web\xff01"}'),
    ("NaN literal", _replace("metrics.cpu_percent", b"NaN")),
    ("Infinity literal", _replace("metrics.disk_io_mbps", b"Infinity")),
    ("-Infinity literal", _replace("metrics.network_mbps", b"-Infinity")),
    ("1e999", _replace("metrics.network_mbps", b"1e999")),
    ("integer of 5,000 digits", _replace("metrics.network_mbps", b"9" * 5000)),
    ("boolean as a number", _with("metrics.memory_percent", True)),
    ("negative error_count", _with("metrics.error_count", -2)),
    ("fractional error_count", _with("metrics.error_count", 0.5)),
    ("error_count beyond 64 bits", _with("metrics.error_count", 2**64)),
    ("bad UUID", _with("message_uuid", "1234")),
    ("bad timestamp", _with("timestamp_utc", "26/11/2026 15:04")),
    ("empty server_id", _with("server_id", "")),
    ("server_id of 254 characters", _with("server_id", "x" * 254)),
    ("metrics not an object", _with("metrics", "cpu=42")),
    ("cpu above 100", _with("metrics.cpu_percent", 180.5)),
    ("missing metric", json.dumps({**valid_message(), "metrics": {"cpu_percent": 1}}).encode()),
    ("reserved field", _with("kafka", {"offset": 1})),
    ("arrays nested 5,000 deep", b'{"server_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("objects nested 150 deep", _with("extra", json.loads('{"a":' * 150 + "1" + "}" * 150))),
    ("a metric twice (which value?)", _replace("metrics.cpu_percent", b'10, "cpu_percent": 99')),
    ("value near 1 MB", b'{"server_id": "web01", "blob": "' + b"x" * 1_000_000 + b'"'),
    # Valid by SPEC §2 (extra fields are kept) but not storable as BSON: the raw write
    # rejects them and they are dead-lettered with the reason, the rest of the batch stored.
    ("lone surrogate in an extra field", _extra(b'"note": "\\ud800"')),
    ("NUL in an extra field's name", _extra(b'"a\\u0000b": 1')),
    ("integer beyond 64 bits in an extra field", _extra(b'"big": 123456789012345678901234567890')),
]
