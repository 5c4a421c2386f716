"""The unit tests also pass on Python 3.14, run inside Pyodide (CPython in WebAssembly).

No Python newer than 3.11 can be installed on this machine (Debian 12 has 3.11 only, and
the portable builds download from GitHub), but the npm registry has Pyodide, CPython
3.14 compiled to WebAssembly, run by Node.js. tools/pyodide/run_pytest.mjs runs this
directory's tests in it, with the pure-Python packages of .venv (pytest, bson,
kafka-python, python-dotenv). What it shows: the pure logic (validation, KPIs, windows,
documents, settings, redaction...) behaves the same on 3.14. What it cannot: tests
that need a process or a thread (Pyodide has neither; conftest.py skips them there),
psutil, sockets, so nothing of the Kafka and MongoDB paths. Only 3.14: the npm packages
of the Pyodide releases on 3.12 (0.27) and 3.13 (0.29) lack the ssl module, which
pymongo and kafka-python import, and overflow the JavaScript stack on the 5,000-level
JSON of test_message (tried 2026-11-28); 3.12 and 3.13 get the type check of
test_types.py instead.

Skipped, with the reason, where Node.js/npm are missing or the registry cannot be reached.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "pyodide"
# Tests that start other Pythons (mypy, the mutants' pytest) and this one.
NOT_UNDER_PYODIDE = ("test_types.py", "test_mutants.py", "test_python_versions.py")


def _pyodide_or_skip() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("sin Node.js y npm no se puede ejecutar Pyodide")
    if not (TOOLS / "node_modules" / "pyodide" / "package.json").exists():
        try:
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOLS, capture_output=True,
                                  text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci no instaló Pyodide en 300 s (¿registro de npm inalcanzable?)")
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if line.startswith("npm error")), "?")
            pytest.skip(f"npm ci no pudo instalar Pyodide: {first}")
    return node


def test_the_unit_tests_pass_on_python_3_14_under_pyodide() -> None:
    node = _pyodide_or_skip()
    ignored = [f"--ignore=tests/unit/{name}" for name in NOT_UNDER_PYODIDE]
    done = subprocess.run([node, str(TOOLS / "run_pytest.mjs"), str(ROOT), sysconfig.get_paths()["purelib"],
                           "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "tests/unit", *ignored],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Python 3.14." in output and "on emscripten" in output, output[:2000]
    summary = re.search(r"(\d+) passed(?:, (\d+) skipped)? in ", output)
    assert summary is not None, output[-2000:]
    passed, skipped = int(summary[1]), int(summary[2] or 0)
    # Most of the suite runs there; what is skipped is what the platform lacks.
    assert passed >= 200 and skipped <= passed // 5, output[-4000:]
