"""Audit of stored KPI windows against the raw documents they name (pure, no I/O).

Every KPI document lists its messages in ``message_uuids`` (SPEC §3), so anyone can
check it. ``informe_kpis_iabd06.py --audit yes`` does, for each window it reads:

* ``message_count`` is the number of ids, and no id is there twice;
* every id is in the raw collection, from the window's partition, with offsets
  increasing from ``kafka.first_offset`` to ``kafka.last_offset``;
* each average is its recomputation from those raw documents (the same correctly
  rounded sum the consumer uses, so equal to the last bit; to 1e-15 for values so
  large that their sum overflows a float), the error sum is the exact sum, and
  ``first_event_time``, ``last_event_time`` and ``servers`` match;
* ``window_duration_seconds`` is ``window_end - window_start`` (> 0) and the rate is
  ``message_count / window_duration_seconds``;

and, over all the windows read, that no message is in two of them. The recomputation
is written here again, not taken from :mod:`metrics_pipeline.kpis`: an audit that
reused the code it checks would agree with it whatever it did.

What it cannot see from the windows alone: messages stored but in no window yet
(the open window of each partition, rebuilt after a restart) and messages never
stored; the consumer's commit rules (SPEC §5) are what make those complete.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from bson.decimal128 import Decimal128

AVERAGED = ("cpu_percent", "memory_percent", "disk_io_mbps", "network_mbps")
RAW_FIELDS = {"metrics": 1, "server_id": 1, "timestamp": 1, "kafka": 1}  # what the audit reads of raw


@dataclass
class AuditResult:
    windows: int = 0
    messages: int = 0
    problems: list[str] = field(default_factory=list)
    windows_with_problems: set[str] = field(default_factory=set)
    _seen: dict[str, str] = field(default_factory=dict)  # message id -> first window naming it

    def problem(self, window_id: str, sentence: str) -> None:
        self.windows_with_problems.add(window_id)
        self.problems.append(f"ventana {window_id}: {sentence}")


def _mean(values: Sequence[float]) -> tuple[float, bool]:
    """The mean, and whether it is exact (False: the sum overflowed, see module doc)."""
    try:
        return math.fsum(values) / len(values), True
    except OverflowError:
        return float(sum(Fraction(v) for v in values) / len(values)), False


def _number(value: Any) -> Any:
    return int(value.to_decimal()) if isinstance(value, Decimal128) else value


def _members(window: Mapping[str, Any], raw: Mapping[str, Mapping[str, Any]],
             result: AuditResult) -> list[Mapping[str, Any]] | None:
    """The window's raw documents, or None (with the problems said) when its list of
    ids cannot be audited further."""
    wid, ids = str(window.get("_id")), window.get("message_uuids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        result.problem(wid, "no tiene message_uuids (una lista de ids en texto): no se puede auditar")
        return None
    if window.get("message_count") != len(ids):
        result.problem(wid, f"message_count es {window.get('message_count')!r} pero nombra {len(ids)} mensajes")
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        result.problem(wid, f"nombra dos veces {len(repeated)} mensajes (p. ej. {repeated[0]})")
    for message_id in dict.fromkeys(ids):
        first = result._seen.setdefault(message_id, wid)
        if first != wid:
            result.problem(wid, f"el mensaje {message_id} ya está en la ventana {first}")
    missing = [i for i in ids if i not in raw]
    if missing:
        result.problem(wid, f"{len(missing)} de sus mensajes no están en raw (p. ej. {missing[0]})")
        return None
    misshapen = [i for i in ids if not _auditable(raw[i])]
    if misshapen:
        result.problem(wid, f"{len(misshapen)} de sus mensajes en raw no tienen la forma que guarda el "
                            f"consumidor (p. ej. {misshapen[0]})")
        return None
    return [raw[i] for i in ids]


def _auditable(doc: Mapping[str, Any]) -> bool:
    """A raw document with what the audit reads, of the types the consumer stores
    (one edited by hand may lack them)."""
    metrics = doc.get("metrics")
    return (isinstance(metrics, dict)
            and all(isinstance(metrics.get(name), (int, float)) and not isinstance(metrics.get(name), bool)
                    for name in (*AVERAGED, "error_count"))
            and isinstance(doc.get("timestamp"), datetime) and isinstance(doc.get("server_id"), str)
            and isinstance(doc.get("kafka"), dict))


def _check_origin(window: Mapping[str, Any], members: Sequence[Mapping[str, Any]], result: AuditResult) -> None:
    wid, kafka = str(window.get("_id")), window.get("kafka") or {}
    partitions = {m.get("kafka", {}).get("partition") for m in members}
    if partitions != {kafka.get("partition")}:
        result.problem(wid, f"es de la partición {kafka.get('partition')!r} pero sus mensajes vienen de "
                            f"{sorted(partitions, key=repr)}")
    offsets = [m.get("kafka", {}).get("offset") for m in members]
    if offsets != sorted(offsets, key=lambda o: (o is None, o)) or len(set(offsets)) != len(offsets):
        result.problem(wid, "sus mensajes no están en orden de offset")
    elif (offsets[0], offsets[-1]) != (kafka.get("first_offset"), kafka.get("last_offset")):
        result.problem(wid, f"dice ir de los offsets {kafka.get('first_offset')!r} a {kafka.get('last_offset')!r} "
                            f"pero sus mensajes van de {offsets[0]!r} a {offsets[-1]!r}")


def _check_kpis(window: Mapping[str, Any], members: Sequence[Mapping[str, Any]], result: AuditResult) -> None:
    wid, kpis = str(window.get("_id")), window.get("kpis") or {}
    for name in AVERAGED:
        stored = kpis.get(f"{name}_avg")
        expected, exact = _mean([m["metrics"][name] for m in members])
        same = stored == expected if exact else (
            isinstance(stored, float) and math.isclose(stored, expected, rel_tol=1e-15))
        if not same:
            result.problem(wid, f"{name}_avg guardado {stored!r}, recalculado desde raw {expected!r}")
    errors = sum(m["metrics"]["error_count"] for m in members)
    if _number(kpis.get("error_count_sum")) != errors:
        result.problem(wid, f"error_count_sum guardado {kpis.get('error_count_sum')!r}, recalculado {errors}")
    start, end = window.get("window_start"), window.get("window_end")
    if not isinstance(start, datetime) or not isinstance(end, datetime) or end <= start:
        result.problem(wid, f"window_start {start!r} y window_end {end!r} no forman un intervalo")
        return
    duration = (end - start).total_seconds()
    if window.get("window_duration_seconds") != duration:
        result.problem(wid, f"window_duration_seconds {window.get('window_duration_seconds')!r}, "
                            f"pero window_end - window_start = {duration!r}")
    rate = len(members) / duration
    if kpis.get("tasa_procesamiento_msg_seg") != rate:
        result.problem(wid, f"tasa_procesamiento_msg_seg {kpis.get('tasa_procesamiento_msg_seg')!r}, "
                            f"recalculada {rate!r}")
    times = [m["timestamp"] for m in members]
    if (window.get("first_event_time"), window.get("last_event_time")) != (min(times), max(times)):
        result.problem(wid, "first_event_time / last_event_time no son la menor y la mayor hora de sus mensajes")
    if window.get("servers") != dict(Counter(m["server_id"] for m in members)):
        result.problem(wid, "servers no cuenta los mensajes de cada servidor")


def audit_windows(windows: Iterable[Mapping[str, Any]], raw: Mapping[str, Mapping[str, Any]],
                  result: AuditResult | None = None) -> AuditResult:
    """Audit ``windows`` against ``raw`` (message id -> raw document with at least
    :data:`RAW_FIELDS`). Pass the same ``result`` for windows read in several chunks,
    so that a message in two windows of different chunks is still seen."""
    result = result if result is not None else AuditResult()
    for window in windows:
        result.windows += 1
        members = _members(window, raw, result)
        if members is None:
            continue
        result.messages += len(members)
        _check_origin(window, members, result)
        _check_kpis(window, members, result)
    return result
