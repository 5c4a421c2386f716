"""tools/arguments.py: the flags of the tools (demo, local stack, soak, bench)."""

from __future__ import annotations

import argparse

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
