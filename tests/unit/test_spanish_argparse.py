"""metrics_pipeline/spanish_argparse.py: help and command-line errors in Spanish."""

from __future__ import annotations

import pytest

from metrics_pipeline.spanish_argparse import spanish_parser, translate


def _parser(with_defaults: bool = False):
    parser = spanish_parser("Prueba.", prog="prueba.py", with_defaults=with_defaults)
    parser.add_argument("--rounds", type=int, default=None, help="rondas")
    parser.add_argument("--max-messages", type=int, default=0, help="mensajes")
    parser.add_argument("--max-poll-ms", type=float, default=1.5, help="ms")
    parser.add_argument("--keep", action="store_true", help="conservar")
    parser.add_argument("--mode", choices=["a", "b"], default="a", help="modo (por defecto: el primero)")
    parser.add_argument("--target", required=True, help="destino")
    return parser


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prueba.py: error: ") and err.endswith(" (véase --help)\n")
    return err


@pytest.mark.parametrize("argv, spanish", [
    ((), "faltan argumentos obligatorios: --target"),
    (("--target",), "argumento --target: falta su valor"),
    (("--target", "x", "--rounds", "tres"), "argumento --rounds: valor no válido: 'tres'"),
    (("--target", "x", "--mode", "c"), "argumento --mode: valor no válido: 'c' (se admite: "),
    (("--target", "x", "--keep=1"), "argumento --keep: no admite valor (se le dio '1')"),
    # Written in full only: argparse would take --max-m for --max-messages, and call
    # --max ambiguous (in English).
    (("--target", "x", "--max-m", "5"), "argumentos desconocidos: --max-m y 1 valor que no se muestra"),
    (("--target", "x", "--max", "5"), "argumentos desconocidos: --max y 1 valor que no se muestra"),
])
def test_a_bad_command_line_is_one_spanish_line_and_exit_2(capsys, argv, spanish) -> None:
    err = _error(capsys, *argv)
    assert spanish in err
    for english in ("argument ", "expected", "invalid", "required", "choose", "ambiguous", "unrecognized"):
        assert english not in err


def test_unknown_flags_are_named_without_their_values(capsys) -> None:
    err = _error(capsys, "--target", "x", "--mongodb-uri=mongodb://u:s3cr3t@h", "--sasl-password", "hunter2")
    assert "--mongodb-uri, --sasl-password y 2 valores que no se muestran" in err
    assert "s3cr3t" not in err and "hunter2" not in err


def test_sentences_argparse_may_add_are_left_as_they_are() -> None:
    assert translate("argument --x: some new sentence") == "argumento --x: some new sentence"


def test_help_is_spanish_and_the_tools_show_every_default(capsys) -> None:
    with pytest.raises(SystemExit):
        _parser(with_defaults=True).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("uso: prueba.py [-h]") and "opciones: -h, --help muestra esta ayuda y sale" in text
    assert "--max-messages MAX_MESSAGES mensajes (por defecto: 0)" in text  # 0 is a default too
    assert "--max-poll-ms MAX_POLL_MS ms (por defecto: 1.5)" in text
    assert "--rounds ROUNDS rondas --max-messages" in text  # no default: nothing added
    assert "--keep conservar --mode" in text  # a switch: nothing added
    assert "modo (por defecto: el primero) --target" in text  # said already: not twice
    for english in ("usage:", "options:", "show this help"):
        assert english not in text


def test_the_scripts_write_their_own_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        _parser(with_defaults=False).parse_args(["--help"])
    assert "(por defecto: 0)" not in capsys.readouterr().out
