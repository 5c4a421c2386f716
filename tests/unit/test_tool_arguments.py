"""tools/arguments.py: the flags of the tools (demo, local stack, soak, bench, proxy, mutants)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.arguments import at_least, port_number


def test_numbers_below_the_minimum_or_not_numbers_are_refused_in_spanish() -> None:
    assert at_least(1, int)("3") == 3 and at_least(0, float)("0") == 0.0
    for parse, text, reason in ((at_least(1, int), "0", "debe ser >= 1, no 0"),
                                (at_least(0, float), "nan", "debe ser >= 0, no nan"),
                                (at_least(1, int), "2.5", "'2.5' no es un número")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            parse(text)


def test_ports_are_1_to_65535() -> None:
    assert (port_number("1"), port_number("65535")) == (1, 65535)
    for text in ("0", "65536", "-1", "http"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_number(text)


# -- each tool, run as the README runs it -------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["tools/demo.py", "tools/local_stack.py", "tools/soak.py", "tools/tcp_proxy.py", "tools/mutants.py",
         "bench/bench.py"]
_FLAG = re.compile(r"\[?(-{1,2}[a-z][a-z-]*)")


def _run(tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / tool), *argv], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


@pytest.mark.skipif(sys.platform == "emscripten", reason="Pyodide has no processes")
@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_explains_every_flag_in_spanish_and_refuses_a_bad_one_in_one_line(tool: str) -> None:
    shown = _run(tool, "--help")
    assert shown.returncode == 0 and not shown.stderr
    usage, _, options = shown.stdout.partition("\nopciones:\n")
    assert usage.startswith("uso: ") and options
    text = " ".join(options.split())
    flags = {flag for flag in _FLAG.findall(" ".join(usage.split()[2:])) if flag not in ("-h",)}
    assert flags
    for flag in flags:  # the flag, its metavar if any, then a help text in lower case
        assert re.search(rf"{flag}(?: [A-Z:_]+)? [a-z¿(]", text), f"{tool}: {flag} has no help text"
    for english in ("usage:", "options:", "show this help"):
        assert english not in shown.stdout

    refused = _run(tool, "--no-such-flag")  # the proxy's required flags are missing too: that is said first
    assert refused.returncode == 2 and not refused.stdout
    assert re.fullmatch(rf"{Path(tool).name}: error: (argumentos desconocidos: --no-such-flag|faltan argumentos "
                        r"obligatorios: --listen, --target) \(véase --help\)\n", refused.stderr), refused.stderr
