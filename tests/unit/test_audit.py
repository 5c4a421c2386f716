"""The audit of KPI windows against raw documents: clean windows pass, each kind of
damage is named with its window."""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from metrics_pipeline.audit import AuditResult, audit_windows
from metrics_pipeline.documents import kpi_document, member_from_message, raw_document
from metrics_pipeline.kpis import compute_kpis, window_bounds
from metrics_pipeline.message import parse_message
from metrics_pipeline.windows import ClosedWindow
from tests.unit.test_documents import NOW


def stored_window(partition: int, first_offset: int, size: int = 5, seed: int = 1,
                  scale: float = 1.0) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A KPI document and its raw documents, built by the pipeline's own code."""
    rng = random.Random(seed)
    raws, members = {}, []
    for i in range(size):
        offset = first_offset + i
        body = {"server_id": rng.choice(["web01", "db01"]),
                "timestamp_utc": f"2026-11-26T15:04:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}+00:00",
                "metrics": {"cpu_percent": round(rng.uniform(5, 75), 2), "memory_percent": round(rng.uniform(20, 85), 2),
                            "disk_io_mbps": rng.uniform(0.1, 50) * scale, "network_mbps": rng.uniform(1, 100),
                            "error_count": rng.choice([0, 0, 1, 3])},
                "message_uuid": f"00000000-0000-4000-8000-{partition:04d}{offset:08d}"}
        message = parse_message(json.dumps(body).encode())
        raws[message.message_id] = raw_document(message, "t", partition, offset, NOW)
        members.append(member_from_message(message, offset))
    window = ClosedWindow("t", partition, tuple(members), received_at=100.0, stored_at=100.4)
    bounds = window_bounds(window.received_at, window.stored_at)
    return kpi_document(window, bounds, compute_kpis(members, bounds.duration_seconds), NOW, []), raws


def two_windows() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    first, raw_first = stored_window(0, 0, seed=1)
    second, raw_second = stored_window(1, 40, seed=2)
    return [first, second], {**raw_first, **raw_second}


def test_windows_written_by_the_pipeline_pass() -> None:
    windows, raw = two_windows()
    result = audit_windows(windows, raw)
    assert (result.windows, result.messages, result.problems) == (2, 10, [])


def test_a_window_of_values_near_the_largest_float_passes() -> None:
    window, raw = stored_window(0, 0, scale=1e306)  # disk_io_mbps: the sum overflows a float
    assert audit_windows([window], raw).problems == []


def damaged(change) -> list[str]:
    windows, raw = two_windows()
    windows, raw = copy.deepcopy(windows), copy.deepcopy(raw)
    change(windows[1], raw)
    return audit_windows(windows, raw).problems


@pytest.mark.parametrize("change, words", [
    (lambda w, raw: w["kpis"].update(cpu_percent_avg=w["kpis"]["cpu_percent_avg"] + 1e-12), "cpu_percent_avg guardado"),
    (lambda w, raw: w["kpis"].update(error_count_sum=w["kpis"]["error_count_sum"] + 1), "error_count_sum guardado"),
    (lambda w, raw: w["kpis"].update(tasa_procesamiento_msg_seg=1.0), "tasa_procesamiento_msg_seg 1.0"),
    (lambda w, raw: w.update(window_duration_seconds=0.5), "window_duration_seconds 0.5"),
    (lambda w, raw: w.update(window_end=w["window_start"]), "no forman un intervalo"),
    (lambda w, raw: w.update(message_count=6), "message_count es 6 pero nombra 5 mensajes"),
    (lambda w, raw: w["message_uuids"].append(w["message_uuids"][0]), "nombra dos veces 1 mensajes"),
    (lambda w, raw: raw.pop(w["message_uuids"][2]), "1 de sus mensajes no están en raw"),
    (lambda w, raw: w.pop("message_uuids"), "no tiene message_uuids"),
    (lambda w, raw: w["message_uuids"].append({"a": 1}), "no tiene message_uuids"),
    (lambda w, raw: w["kafka"].update(partition=3), "es de la partición 3 pero sus mensajes vienen de [1]"),
    (lambda w, raw: w["message_uuids"].reverse(), "no están en orden de offset"),
    (lambda w, raw: w["kafka"].update(last_offset=45), "dice ir de los offsets 40 a 45"),
    (lambda w, raw: w.update(first_event_time=w["first_event_time"] - timedelta(seconds=1)), "first_event_time"),
    (lambda w, raw: w["servers"].update(web01=99), "servers no cuenta"),
    (lambda w, raw: raw[w["message_uuids"][0]]["metrics"].update(network_mbps=1.0), "network_mbps_avg guardado"),
    (lambda w, raw: raw[w["message_uuids"][1]].pop("metrics"), "1 de sus mensajes en raw no tienen la forma"),
    (lambda w, raw: raw[w["message_uuids"][1]]["metrics"].update(cpu_percent="42"), "no tienen la forma"),
], ids=["cpu by 1e-12", "errors", "rate", "duration", "empty interval", "count", "repeated id", "missing raw",
        "no ids", "an id not text", "partition", "order", "offsets", "event time", "servers", "raw changed", "raw without metrics",
        "raw text cpu"])
def test_each_kind_of_damage_is_named_with_its_window(change, words: str) -> None:
    problems = damaged(change)
    assert problems and all(p.startswith("ventana t:1:40: ") for p in problems), problems
    assert any(words in p for p in problems), problems


def test_a_message_in_two_windows_is_found_across_chunks() -> None:
    windows, raw = two_windows()
    intruder = copy.deepcopy(windows[0])
    intruder["_id"] = "t:0:99"
    result = AuditResult()
    audit_windows(windows[:1], raw, result)
    audit_windows([intruder], raw, result)  # a later chunk
    assert any(p.startswith("ventana t:0:99: el mensaje") and "ya está en la ventana t:0:0" in p
               for p in result.problems)
    assert result.windows_with_problems == {"t:0:99"}


def test_an_error_sum_beyond_64_bits_is_compared_exactly() -> None:
    window, raw = stored_window(0, 0)
    for doc in raw.values():
        doc["metrics"]["error_count"] = 2**63 - 1
    window["kpis"]["error_count_sum"] = Decimal128(str(5 * (2**63 - 1)))
    assert not [p for p in audit_windows([window], raw).problems if "error_count_sum" in p]
    window["kpis"]["error_count_sum"] = Decimal128(str(5 * (2**63 - 1) - 1))
    assert [p for p in audit_windows([window], raw).problems if "error_count_sum" in p]
