"""The full audit of what the pipeline stored, used at the end of every scenario.

It recomputes everything from the raw collection and compares exactly:

* raw count (and, when known, the exact set of message ids) = valid messages sent;
* dead-letter count = invalid messages sent;
* per partition, windows = floor(valid messages of the partition / window size);
* every window holds exactly ``window_size`` distinct ids (one of the sizes, when
  the setting changed between runs), all present in raw, all
  from its partition, in offset order, between its first and last offset, and
  consecutive among that partition's stored messages;
* no message id is in two windows; the messages in no window are, per partition,
  fewer than a window and all after the last window;
* every KPI equals its recomputation from the raw documents named in
  ``message_uuids`` (math.fsum, so exactly; to 1e-15 for rates so large that their
  sum overflows a float), and the duration and rate equal their recomputation from
  the stored window bounds.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from bson.decimal128 import Decimal128

RAW = "system_metrics_raw_iabd06"
KPIS = "system_metrics_kpis_iabd06"
DEADLETTER = "system_metrics_deadletter_iabd06"


@dataclass
class AuditReport:
    raw: int
    windows: int
    deadletter: int
    pending: dict[int, int]  # partition -> messages not yet in a window


def audit(db: Any, *, valid: int, invalid: int = 0, window_size: int | set[int] = 20,
          valid_ids: set[str] | None = None, deadletter_ids: set[str] | None = None,
          topic: str | None = None) -> AuditReport:
    raw_docs = {d["_id"]: d for d in db[RAW].find({}, {"metrics": 1, "server_id": 1, "timestamp": 1,
                                                         "kafka": 1, "message_uuid": 1})}
    kpi_docs = list(db[KPIS].find())
    dead_docs = list(db[DEADLETTER].find({}, {"value": 0}))

    assert len(raw_docs) == valid, f"raw: {len(raw_docs)} documents, expected {valid}"
    if valid_ids is not None:
        assert set(raw_docs) == {i.lower() for i in valid_ids}, "raw ids differ from the ids sent"
    for _id, doc in raw_docs.items():
        assert _id == doc["message_uuid"].lower()
        if topic is not None:
            assert doc["kafka"]["topic"] == topic
    assert len(dead_docs) == invalid, f"dead-letter: {len(dead_docs)} documents, expected {invalid}"
    if deadletter_ids is not None:
        assert {d["_id"] for d in dead_docs} == deadletter_ids

    # Stored messages per partition, in offset order.
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for doc in raw_docs.values():
        by_partition[doc["kafka"]["partition"]].append(doc)
    for docs in by_partition.values():
        docs.sort(key=lambda d: d["kafka"]["offset"])

    sizes = window_size if isinstance(window_size, set) else {window_size}
    seen: Counter[str] = Counter()
    windows_by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for kpi in kpi_docs:
        ids = kpi["message_uuids"]
        assert kpi["message_count"] in sizes and kpi["message_count"] == len(ids) == len(set(ids)), kpi["_id"]
        seen.update(ids)
        assert all(i in raw_docs for i in ids), f"window {kpi['_id']} names a message not in raw"
        members = [raw_docs[i] for i in ids]
        partition = kpi["kafka"]["partition"]
        offsets = [m["kafka"]["offset"] for m in members]
        assert all(m["kafka"]["partition"] == partition for m in members), kpi["_id"]
        assert offsets == sorted(offsets), f"window {kpi['_id']} is not in offset order"
        assert offsets[0] == kpi["kafka"]["first_offset"] and offsets[-1] == kpi["kafka"]["last_offset"]
        windows_by_partition[partition].append(kpi)
        check_kpis(kpi, members)
    duplicated = [i for i, n in seen.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} messages are in two windows"

    pending: dict[int, int] = {}
    for partition in set(by_partition) | set(windows_by_partition):
        docs = by_partition.get(partition, [])
        windows = sorted(windows_by_partition.get(partition, []), key=lambda k: k["kafka"]["first_offset"])
        # Windows tile the stored messages of the partition, in order, and leave
        # fewer than a window after them.
        actual = [i for k in windows for i in k["message_uuids"]]
        assert actual == [d["_id"] for d in docs[: len(actual)]], (
            f"partition {partition}: windows do not tile the stored messages")
        pending[partition] = len(docs) - len(actual)
        assert pending[partition] < max(sizes), (
            f"partition {partition}: {len(windows)} windows for {len(docs)} messages")
    return AuditReport(raw=len(raw_docs), windows=len(kpi_docs), deadletter=len(dead_docs), pending=pending)


def check_kpis(kpi: dict[str, Any], members: list[dict[str, Any]]) -> None:
    n = len(members)
    k = kpi["kpis"]
    for name in ("cpu_percent", "memory_percent", "disk_io_mbps", "network_mbps"):
        values = [m["metrics"][name] for m in members]
        try:
            assert k[f"{name}_avg"] == math.fsum(values) / n, (kpi["_id"], name)
        except OverflowError:
            exact = float(sum(Fraction(v) for v in values) / n)
            assert math.isclose(k[f"{name}_avg"], exact, rel_tol=1e-15), (kpi["_id"], name)
    errors = k["error_count_sum"]
    if isinstance(errors, Decimal128):  # a sum beyond 64 bits
        errors = int(errors.to_decimal())
    assert errors == sum(m["metrics"]["error_count"] for m in members)
    duration = (kpi["window_end"] - kpi["window_start"]).total_seconds()
    assert duration > 0
    assert kpi["window_duration_seconds"] == duration
    assert k["tasa_procesamiento_msg_seg"] == n / duration
    assert kpi["first_event_time"] == min(m["timestamp"] for m in members)
    assert kpi["last_event_time"] == max(m["timestamp"] for m in members)
    assert kpi["servers"] == dict(Counter(m["server_id"] for m in members))
