"""Secret masking: URIs, known secrets, their encoded forms, tracebacks."""

from __future__ import annotations

import logging

from metrics_pipeline.redaction import (Redactor, RedactingFormatter, describe_mongodb_uri,
                                        mongodb_uri_password, mongodb_uri_secrets)
from tests.support.logs import scripts_logging


def test_uri_credentials_are_masked_by_pattern() -> None:
    r = Redactor()
    assert r("conecto a mongodb+srv://ana:p4ss@cluster0.x.net/db?x=1") == \
        "conecto a mongodb+srv://ana:***@cluster0.x.net/db?x=1"
    assert r("mongodb://u:p@h1:27017,h2:27017/") == "mongodb://u:***@h1:27017,h2:27017/"
    assert r("sin credenciales mongodb://h:1/") == "sin credenciales mongodb://h:1/"


def test_known_secrets_are_masked_in_any_form() -> None:
    r = Redactor(["p@ss word/1"])
    assert r("error: p@ss word/1") == "error: ***"
    assert r("error: p%40ss+word%2F1") == "error: ***"
    assert r("error: p%40ss%20word%2F1") == "error: ***"


def test_a_secret_with_bytes_that_are_not_utf8_is_masked_and_breaks_no_line() -> None:
    # Python reads such an environment value with the bytes as lone surrogates: the URL
    # forms are the same bytes percent-encoded. It used to raise inside the formatter
    # (UnicodeEncodeError), and logging dropped every line the script wrote.
    r = Redactor(["clave\udcf1a"])
    assert r("error: clave\udcf1a y clave%F1a") == "error: *** y ***"
    assert r("una línea cualquiera") == "una línea cualquiera"
    assert Redactor(["lone\ud800"])("x lone\ud800 y") == "x *** y"


def test_password_and_description_of_a_mongodb_uri() -> None:
    uri = "mongodb+srv://ana:S3cr%40to@cluster0.abcde.mongodb.net/?retryWrites=true"
    assert mongodb_uri_password(uri) == "S3cr@to"
    assert describe_mongodb_uri(uri) == "mongodb+srv://cluster0.abcde.mongodb.net"
    assert mongodb_uri_password("mongodb://localhost:27017") is None
    assert mongodb_uri_password("mongodb://solo-usuario@h/") is None
    # "/" and "@" left unencoded in the password: it is still read whole, and no piece
    # of it is taken for the host.
    unencoded = "mongodb://alumno:Pq@ss/2026@localhost:27017/?authSource=admin"
    assert mongodb_uri_password(unencoded) == "Pq@ss/2026"
    assert describe_mongodb_uri(unencoded) == "mongodb://localhost:27017"


def test_formatter_masks_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", Redactor(["hunter22"]))
    try:
        raise RuntimeError("no pude con mongodb://root:hunter22@db:27017")
    except RuntimeError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "fallo %s", ("hunter22",), sys.exc_info())
    text = formatter.format(record)
    assert "hunter22" not in text and "Traceback" in text and "***" in text


def test_configured_logging_masks_library_output_too() -> None:
    with scripts_logging(secrets=["zz-secret-zz"]) as stream:
        logging.getLogger("pymongo.any").warning("uri mongodb://a:zz-secret-zz@h")
        logging.getLogger("metrics_pipeline.x").info("clave zz-secret-zz")
    assert "zz-secret-zz" not in stream.getvalue()
    assert stream.getvalue().count("***") == 2


def test_an_option_of_the_uri_named_like_a_password_is_a_secret_too() -> None:
    uri = "mongodb://ana:S3cr%40to@h/?tls=true&tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=Cl%26ve"
    assert mongodb_uri_secrets(uri) == ["S3cr@to", "Cl&ve"]
    assert mongodb_uri_secrets("mongodb://localhost:27017/?tlsCertificateKeyFilePassword=") == []
