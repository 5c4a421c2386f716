"""tools/demo.py: what the demo does with the scripts' output (the whole demo runs in
tests/integration/test_demo.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import demo

pytestmark = pytest.mark.skipif(sys.platform == "emscripten", reason="Pyodide has no processes and no terminals")


def test_a_terminal_closed_before_the_hang_up_handler_runs_loses_no_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The window closes while a KPI line is being shown: the write fails (EIO) before
    # the SIGHUP handler points the output at /dev/null. The pump must go on copying
    # the script's lines to its log (its shutdown lines were missing once in CI).
    terminal, tty = os.openpty()
    os.close(terminal)
    with open(tty, "w") as stdout, open(os.dup(tty), "w") as stderr:
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stderr)
        script = subprocess.Popen(
            [sys.executable, "-c", "for i in range(3): print(f'Ventana KPI {i}')\nprint('Fin del consumidor')"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        demo._pump("consumidor", script, tmp_path / "consumidor.log", show_all=False).join(30)
        assert script.wait(30) == 0
        print("the output now goes nowhere, without an error")
    assert (tmp_path / "consumidor.log").read_text().splitlines() == [
        "Ventana KPI 0", "Ventana KPI 1", "Ventana KPI 2", "Fin del consumidor"]
