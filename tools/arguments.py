"""The command line of the tools (demo, local stack, soak, bench, proxy, mutants):
Spanish help with every default, and a bad flag is one Spanish line and exit 2, not
a traceback or a run that means something else."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from metrics_pipeline.spanish_argparse import SpanishParser, spanish_parser


def tool_parser(description: str) -> SpanishParser:
    """The parser of a tool: Spanish, and each flag's help ends with its default."""
    return spanish_parser(description, with_defaults=True)


def at_least(minimum: float, kind: type) -> Callable[[str], Any]:
    """A number of ``kind`` (int or float) >= ``minimum``; NaN is refused too."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} no es un número") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"debe ser >= {minimum}, no {text}")
        return value
    return parse


def port_number(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} no es un número de puerto") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"un puerto va de 1 a 65535, no {port}")
    return port
