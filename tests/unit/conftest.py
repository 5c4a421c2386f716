"""Unit tests under Pyodide: what the platform lacks is a skip there, not a failure.

tests/unit/test_python_versions.py runs these tests again on Python 3.14 compiled to
WebAssembly (Pyodide), where ``sys.platform == "emscripten"``. That platform has no
processes, no threads and no psutil: a test that needs one of them is skipped there,
with the platform's own error as the reason. On any other platform this file does
nothing.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from typing import Any

import pytest

EMSCRIPTEN = sys.platform == "emscripten"

# psutil refuses to import on emscripten; every test in this module needs it.
collect_ignore = ["test_host_metrics.py"] if EMSCRIPTEN else []


def missing_on_this_platform(error: BaseException) -> bool:
    """The errors Pyodide raises for a process or a thread."""
    if isinstance(error, OSError) and error.errno == errno.ENOTSUP:
        return True  # "emscripten does not support processes"
    return isinstance(error, RuntimeError) and str(error) == "can't start new thread"


if EMSCRIPTEN:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
        outcome = yield
        report = outcome.get_result()
        if report.failed and call.excinfo is not None and missing_on_this_platform(call.excinfo.value):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"Pyodide: {call.excinfo.value}")
