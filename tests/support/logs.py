"""Read what a script printed: its log lines, by level."""

from __future__ import annotations


def error_lines(output: str) -> list[str]:
    """The ERROR and CRITICAL lines of a script's output, in order."""
    return [line for line in output.splitlines() if " ERROR " in line or " CRITICAL " in line]
