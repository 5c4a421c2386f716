"""argparse in Spanish, for the three scripts and the tools beside them.

* the headings (``uso:``, ``opciones:``) and ``-h``'s help are Spanish;
* a bad command line is one Spanish line on stderr naming the flag, then exit 2:
  argparse's own English sentences are translated (:data:`_TRANSLATIONS`), and an
  unknown flag is named without its value, which may be a secret given to the
  wrong script (the producer has no ``--mongodb-uri``);
* a flag is written in full: argparse would take ``--max-m`` for ``--max-messages``
  (and stop taking it the day another flag starts the same way), and call ``--max``
  ambiguous in English;
* ``with_defaults=True`` (the tools) appends ``(por defecto: …)`` to each flag's help
  that has a default and does not already say it; the scripts write their own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import NoReturn

from metrics_pipeline.redaction import Redactor

# argparse's sentences (Python 3.11-3.14) -> Spanish; what is not listed stays as is.
_TRANSLATIONS = [
    (re.compile(r"the following arguments are required: "), "faltan argumentos obligatorios: "),
    (re.compile(r"expected one argument"), "falta su valor"),
    (re.compile(r"ignored explicit argument (.*)"), r"no admite valor (se le dio \1)"),
    (re.compile(r"invalid choice: (.*?) \(choose from (.*)\)"), r"valor no válido: \1 (se admite: \2)"),
    (re.compile(r"invalid \w+ value: (.*)"), r"valor no válido: \1"),
    (re.compile(r"not allowed with argument "), "no se admite junto con "),
    (re.compile(r"^argument "), "argumento "),
]


def translate(message: str) -> str:
    """One of argparse's error sentences, in Spanish."""
    for pattern, spanish in _TRANSLATIONS:
        message = pattern.sub(spanish, message)
    return message


class SpanishParser(argparse.ArgumentParser):
    """argparse with Spanish headings and one-line errors (exit code 2)."""

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flags = [token.split("=", 1)[0] for token in unknown if token.startswith("-")]
            values = sum(1 for token in unknown if not token.startswith("-") or "=" in token)
            parts = [", ".join(flags)] if flags else []
            if values:
                parts.append(f"{values} valor{'es' if values > 1 else ''} que no se muestra{'n' if values > 1 else ''}")
            shown = " y ".join(parts)
            self.error(f"argumentos desconocidos: {shown}")
        return parsed

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        line = Redactor()(f"{self.prog}: error: {translate(message)} (véase --help)")
        self.exit(2, line + "\n")


class _HelpFormatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, prefix="uso: " if prefix is None else prefix)


class _HelpWithDefaults(_HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if unset or "por defecto" in text or "%(default)" in text:
            return text
        return f"{text} (por defecto: %(default)s)" if text else "por defecto: %(default)s"


def spanish_parser(description: str, prog: str | None = None, with_defaults: bool = False) -> SpanishParser:
    """A parser whose help, headings and errors are Spanish (see the module doc)."""
    parser = SpanishParser(prog=prog, description=description, add_help=False, allow_abbrev=False,
                           formatter_class=_HelpWithDefaults if with_defaults else _HelpFormatter)
    parser._optionals.title = "opciones"  # argparse has no public setter for this heading
    parser.add_argument("-h", "--help", action="help", help="muestra esta ayuda y sale")
    return parser
