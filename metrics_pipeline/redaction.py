"""Keep secrets out of every line the scripts print.

Two layers, because a secret can reach a log line by two roads:

* a known secret (the password inside ``MONGODB_URI``, ``KAFKA_SASL_PASSWORD``) is
  replaced wherever it appears, also URL-encoded, also inside a library's message;
* any ``scheme://user:password@host`` that slips through is masked by pattern.

:class:`RedactingFormatter` applies both to the whole formatted record, traceback
included, so no handler of ours can print a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus

MASK = "***"

# Secrets met while reading the settings. Every Redactor also masks these, so a
# secret is protected from the moment it is read, even by an early error line.
_REGISTERED: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so that every later line masks it."""
    if secret:
        _REGISTERED.add(secret)


# scheme://user:password@  ->  scheme://user:***@
_CREDENTIALS_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<password>[^@\s]*)@")


def before_options(uri: str) -> str:
    """``user:password@hosts/database``: what a URI holds between its scheme and its options."""
    return uri.split("://", 1)[-1].split("?", 1)[0]


def uri_options(uri: str) -> list[tuple[str, str]]:
    """The options after a URI's ``?``, decoded, in order (a name given twice, twice)."""
    return parse_qsl(uri.partition("?")[2], keep_blank_values=True)


def mongodb_uri_password(uri: str) -> str | None:
    """The password inside a MongoDB URI (decoded), or None.

    Read up to the last "@" before the options, not up to the first "/": a password
    written with "/" and "@" unencoded (``alumno:P@ss/2026@host``) is still taken
    whole, not as "P" (which would mask every P of every line and keep "ss/2026")."""
    authority = before_options(uri)
    if "@" not in authority:
        return None
    userinfo = authority.rpartition("@")[0]
    if ":" not in userinfo:
        return None
    password = unquote_plus(userinfo.split(":", 1)[1])
    return password or None


def mongodb_uri_secrets(uri: str) -> list[str]:
    """Every secret a MongoDB URI holds: its password, and the value of any option
    named like a password (``tlsCertificateKeyFilePassword``), decoded."""
    found = [mongodb_uri_password(uri)]
    found += [value for name, value in uri_options(uri) if "password" in name.lower()]
    return [secret for secret in found if secret]


def describe_mongodb_uri(uri: str) -> str:
    """The URI with no user, password, database or options: what a log line may name
    (the hosts after the last "@", as :func:`mongodb_uri_password` reads it)."""
    scheme, sep, _ = uri.partition("://")
    if not sep:
        return MASK
    hosts = before_options(uri).rpartition("@")[2].split("/", 1)[0]
    return f"{scheme}://{hosts}"


def _url_encoded(secret: str) -> set[str]:
    """How a URI writes the secret. A secret read from a non-UTF-8 environment holds
    the undecodable bytes as lone surrogates (surrogateescape): encoded back as the
    same bytes, %FF and all; any other lone surrogate has no URL form."""
    try:
        return {quote_plus(secret, errors="surrogateescape"), quote(secret, safe="", errors="surrogateescape")}
    except UnicodeEncodeError:
        return set()


class Redactor:
    """Replaces secrets (given here or registered) and URL credentials in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._given = {s for s in secrets if s}
        self._registered_seen = -1
        self._variants: list[str] = []

    def _current_variants(self) -> list[str]:
        # Secrets are only ever added, so the registry's size says whether it changed;
        # this runs for every log line.
        if len(_REGISTERED) != self._registered_seen:
            self._registered_seen = len(_REGISTERED)
            variants: set[str] = set()
            for secret in self._given | _REGISTERED:
                variants.update({secret, *_url_encoded(secret)})
            # Longest first, so a secret that contains another is masked whole.
            self._variants = sorted(variants, key=len, reverse=True)
        return self._variants

    def __call__(self, text: str) -> str:
        if "@" in text:  # cheap test first: most lines hold no URL with credentials
            text = _CREDENTIALS_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        for secret in self._current_variants():
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output, exception text included, goes through a Redactor."""

    def __init__(self, fmt: str, redactor: Redactor) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))
