"""metrics_pipeline/cli.py: each kind of failure becomes its exit code of SPEC §6 and
one line on stderr; only a bug prints a traceback, and that one redacted. Run in a
child process, as the scripts run, so no test framework handler is in the way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.child import REPO, run_snippet

PROG = "script.py"


def _exit_with(raise_statement: str, *, logging_set_up: bool = False) -> subprocess.CompletedProcess[str]:
    code = f"""
        from metrics_pipeline.cli import exit_with
        from metrics_pipeline.errors import RunFailure, StartupError, StartupStopped
        from metrics_pipeline.log_setup import configure_logging
        from metrics_pipeline.redaction import register_secret
        from metrics_pipeline.settings import SettingsError

        def main(argv):
            register_secret("S3cr3t-pass")
            if {logging_set_up}:
                configure_logging("INFO")
            {raise_statement}

        exit_with(main, "{PROG}")
    """
    return run_snippet(code)


@pytest.mark.parametrize("raise_statement, code, line", [
    ("raise SettingsError('KPI_WINDOW_SIZE (--window-size)', 'debe ser un entero >= 1, no 0')", 2,
     f"{PROG}: error: configuración no válida: KPI_WINDOW_SIZE (--window-size): debe ser un entero >= 1, no 0"),
    ("raise StartupError('No se pudo conectar a Kafka (localhost:29092) en 3 s')", 1,
     f"{PROG}: error: No se pudo conectar a Kafka (localhost:29092) en 3 s"),
    ("raise RunFailure('2 métricas no se pudieron enviar')", 1, f"{PROG}: error: 2 métricas no se pudieron enviar"),
])
def test_an_expected_failure_is_its_exit_code_and_one_line(raise_statement: str, code: int, line: str) -> None:
    done = _exit_with(raise_statement)
    assert (done.returncode, done.stdout, done.stderr) == (code, "", line + "\n")


@pytest.mark.parametrize("raise_statement, code, line", [
    ("raise StartupError('No se pudo conectar a MongoDB (mongodb://db:27017) en 3 s')", 1,
     "No se pudo conectar a MongoDB (mongodb://db:27017) en 3 s"),
    # A setting only the broker can judge (the consumer's session timeout).
    ("raise SettingsError('KAFKA_SESSION_TIMEOUT_MS (--session-timeout-ms)', 'Kafka no admite 3000 ms')", 2,
     "configuración no válida: KAFKA_SESSION_TIMEOUT_MS (--session-timeout-ms): Kafka no admite 3000 ms"),
])
def test_after_logging_is_set_up_the_line_is_a_log_line(raise_statement: str, code: int, line: str) -> None:
    done = _exit_with(raise_statement, logging_set_up=True)
    assert done.returncode == code
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(f" ERROR metrics_pipeline: {line}")


@pytest.mark.parametrize("raise_statement", ["raise StartupStopped('Parada pedida mientras se esperaba a Kafka')",
                                             "raise KeyboardInterrupt"])
def test_a_stop_before_anything_was_done_is_a_normal_end(raise_statement: str) -> None:
    done = _exit_with(raise_statement)
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_a_reader_that_went_away_is_exit_1_without_a_traceback() -> None:
    done = _exit_with("raise BrokenPipeError(32, 'Broken pipe')")
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.parametrize("logging_set_up", [False, True])
def test_a_bug_shows_its_traceback_with_the_secrets_masked(logging_set_up: bool) -> None:
    done = _exit_with("raise ValueError('mongodb://ana:S3cr3t-pass@db:27017 dijo no')", logging_set_up=logging_set_up)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: mongodb://ana:***@db:27017 dijo no" in done.stderr
    assert "S3cr3t-pass" not in done.stderr


@pytest.mark.parametrize("script", ["productor_metrics_iabd06.py", "consumidor_metrics_iabd06.py",
                                    "informe_kpis_iabd06.py"])
def test_help_on_an_output_that_cannot_encode_spanish_is_escaped_not_a_traceback(script: str) -> None:
    # An ASCII stdout (PYTHONIOENCODING=ascii, a C locale without coercion): "--help"
    # used to die with UnicodeEncodeError at its first accent.
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, timeout=60, env=env)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    assert done.stdout.isascii() and b"\\xf3" in done.stdout  # "ó", escaped
