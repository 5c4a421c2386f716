"""The type hints of the package and the three scripts hold (mypy, settings in mypy.ini)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# 3.11 is the version the pipeline runs on here; 3.12, 3.13 and 3.14 check the same code
# against the standard library of newer Pythons (removed modules, deprecated calls) on
# every run. Running the suite itself on them is done by hand, outside CI
# (docs/otras-versiones-de-python.md).
@pytest.mark.parametrize("python_version", ["3.11", "3.12", "3.13", "3.14"])
def test_mypy_finds_no_error(tmp_path: Path, python_version: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "--python-version", python_version,
                           "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in" in done.stdout
