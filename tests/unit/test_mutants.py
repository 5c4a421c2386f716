"""tools/mutants.py: only a test that fails detects a mutant; a test that cannot even
run (its fixture broke) is an error to look at, not a detection."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tools import mutants

CASES = {
    "a_test_fails": ("def test_it():\n    assert 1 == 2\n", "DETECTADO"),
    "a_fixture_breaks": ("import pytest\n\n@pytest.fixture\ndef server():\n    raise OSError('puerto ocupado')\n\n"
                         "def test_it(server):\n    pass\n", "ERROR"),
    "the_file_does_not_import": ("import a_module_that_is_not_there\n\ndef test_it():\n    pass\n", "ERROR"),
    "every_test_passes": ("def test_it():\n    assert 1 == 1\n", "SOBREVIVE"),
}


@pytest.mark.parametrize("case", CASES)
def test_verdict_of_a_real_pytest_run(case: str, tmp_path: Path) -> None:
    code, expected = CASES[case]
    (tmp_path / "test_case.py").write_text(code)
    # Not this run's PYTEST_ADDOPTS: a --basetemp in it would be the inner run's too.
    env = {name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"}
    done = subprocess.run(mutants.pytest_command(["test_case.py"]), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    assert mutants.verdict(done.returncode, summary, done.stderr)[0] == expected, done.stdout


def test_every_mutant_changes_text_that_is_there_once() -> None:
    # A refactoring that rewrites a mutant's line leaves it "NO ENCONTRADO" in the
    # next `make mutants`, which runs outside CI: say so here, in CI.
    for mutant in mutants.MUTANTS:
        text = (mutants.ROOT / mutant.path).read_text()
        assert text.count(mutant.old) == 1, f"{mutant.name}: {text.count(mutant.old)} veces en {mutant.path}"
