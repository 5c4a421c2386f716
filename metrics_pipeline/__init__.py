"""The logic behind the course scripts, one module per concern.

* ``settings``: every setting (flag, environment, ``.env``), parsed and checked;
* ``message``: the metric message schema and its validation;
* ``simulation`` / ``host_metrics``: where the producer's metrics come from;
* ``producer_loop``: sending rounds of messages, each send confirmed;
* ``kafka_connection``: client options, waiting for Kafka, creating the topic;
* ``consumer_loop``: group membership, polling, rebalances, stopping;
* ``ingest``: the commit path of one batch (store, windows, KPIs, commit);
* ``windows`` / ``kpis`` / ``alerts`` / ``documents``: pure logic of the windows;
* ``storage`` / ``retry``: MongoDB writes and retrying them;
* ``report`` / ``audit``: the KPI report, its chart, and the audit of stored windows;
* ``log_setup`` / ``redaction`` / ``shutdown`` / ``cli`` / ``spanish_argparse`` / ``clock`` /
  ``errors``: plumbing.
"""

from __future__ import annotations

import importlib.util as _importlib_util
import os as _os
import sys as _sys
from collections.abc import Callable as _Callable
from typing import Any as _Any

# datetime.fromisoformat reads every ISO 8601 form (a "Z" suffix included) only since
# Python 3.11: on an older Python valid messages would go to the dead-letter collection.
if _sys.version_info < (3, 11):  # pragma: no cover - this machine runs 3.11
    _sys.stderr.write("error: estos scripts necesitan Python 3.11 o posterior; este es "
                      f"{_sys.version.split()[0]}\n")
    raise SystemExit(1)

# What the scripts import, by import name -> the requirements.txt name to install.
# Left out on purpose: crc32c (kafka-python falls back to pure Python) and the codecs
# (lz4, zstandard, python-snappy: a batch that needs a missing one gets its own line).
REQUIRED_PACKAGES = {"kafka": "kafka-python", "pymongo": "pymongo", "dotenv": "python-dotenv",
                     "psutil": "psutil", "matplotlib": "matplotlib"}


def missing_packages(find_spec: _Callable[[str], _Any] = _importlib_util.find_spec) -> list[str]:
    """The requirements.txt names of REQUIRED_PACKAGES this Python cannot import."""
    return [package for module, package in REQUIRED_PACKAGES.items() if find_spec(module) is None]


def _missing_packages_line(missing: list[str]) -> str:
    requirements = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))),
                                 "requirements.txt")
    return (f"error: faltan paquetes de Python: {', '.join(missing)}. Instálelos con "
            f"«{_sys.executable} -m pip install -r {requirements}» (o «make setup» y use .venv/bin/python)")


# A student's most common first error: the scripts run with a Python that has not
# installed requirements.txt. One line saying so, instead of a ModuleNotFoundError.
if _missing := missing_packages():
    _sys.stderr.write(_missing_packages_line(_missing) + "\n")
    raise SystemExit(1)
