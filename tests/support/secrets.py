"""Checks that a script's output keeps secrets out."""

from __future__ import annotations

from urllib.parse import quote


def assert_no_secret(text: str, *secrets: str) -> None:
    """No secret appears in ``text``, neither as given nor percent-encoded (as it is
    written inside a MongoDB URI)."""
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            assert form not in text, f"a secret ({form[:4]}...) appears in the output"
