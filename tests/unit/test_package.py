"""metrics_pipeline/__init__.py: a Python without the requirements gets one line, not a traceback."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import metrics_pipeline

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["productor_metrics_iabd06.py", "consumidor_metrics_iabd06.py", "informe_kpis_iabd06.py"]
# Imported but deliberately not required (see REQUIRED_PACKAGES): bson comes with pymongo.
NOT_CHECKED = {"bson", "crc32c", "lz4", "zstandard", "snappy"}


def test_missing_packages_are_named_as_requirements_txt_names_them() -> None:
    absent = {"kafka", "dotenv"}
    found = metrics_pipeline.missing_packages(lambda module: None if module in absent else object())
    assert found == ["kafka-python", "python-dotenv"]
    assert metrics_pipeline.missing_packages() == []  # this venv has them all


def test_every_required_package_is_in_requirements_txt() -> None:
    listed = {re.split(r"[<>=\s]", line, maxsplit=1)[0].lower()
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert set(metrics_pipeline.REQUIRED_PACKAGES.values()) <= listed


def test_every_third_party_import_of_the_scripts_is_checked() -> None:
    """A new dependency imported by the scripts must be added to REQUIRED_PACKAGES."""
    imported: set[str] = set()
    for path in [*(ROOT / "metrics_pipeline").glob("*.py"), *(ROOT / name for name in SCRIPTS)]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "metrics_pipeline"}
    assert third_party - NOT_CHECKED == set(metrics_pipeline.REQUIRED_PACKAGES)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_python_without_the_requirements_gets_one_line_and_exit_1(script: str) -> None:
    # -S: no site-packages, as with a Python that never ran `pip install -r requirements.txt`.
    done = subprocess.run([sys.executable, "-S", script, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: faltan paquetes de Python: kafka-python, pymongo, python-dotenv, psutil")
    assert f"-m pip install -r {ROOT / 'requirements.txt'}" in lines[0]
