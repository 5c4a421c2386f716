"""Pure parts of the MongoDB storage: what a dead letter keeps of a record too large, what the
answer to a write that failed in part means, the write concern."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import bson
import pytest
from pymongo import ReadPreference, WriteConcern

from metrics_pipeline.documents import deadletter_document
from metrics_pipeline.settings import SettingsError, load_consumer_settings
from metrics_pipeline.storage import (
    MAX_DEADLETTER_BYTES, MetricsStore, StorageFatal, StorageUnavailable, _fit_deadletter, journaled, open_client,
    sort_write_errors)

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def test_a_dead_letter_of_a_record_near_16_mb_still_fits_in_one_document() -> None:
    key, value = b"k" * (2 * 1024 * 1024), b"v" * (16 * 1024 * 1024)
    doc = _fit_deadletter(deadletter_document("t", 0, 7, key, value, "demasiado grande", NOW))
    assert len(bson.encode(doc)) < 16 * 1024 * 1024
    assert bytes(doc["value"]) == value[: MAX_DEADLETTER_BYTES["value"]] and doc["value_size"] == len(value)
    assert bytes(doc["key"]) == key[: MAX_DEADLETTER_BYTES["key"]] and doc["key_size"] == len(key)
    assert doc["value_truncated"] is doc["key_truncated"] is True


def test_an_ordinary_dead_letter_is_kept_as_it_came() -> None:
    doc = deadletter_document("t", 0, 8, b"web01", b'{"server_id": ', "JSON no válido", NOW)
    assert _fit_deadletter(doc) == doc


def _write_error(index: int, code: int, errmsg: str) -> dict[str, object]:
    return {"index": index, "code": code, "errmsg": errmsg}


def test_a_document_s_own_error_rejects_it_and_a_duplicate_is_an_answer() -> None:
    details = {"writeErrors": [_write_error(0, 11000, "E11000 duplicate key"),
                               _write_error(2, 121, "Document failed validation")]}
    assert sort_write_errors(details) == ({0: "MongoDB rechazó el documento: E11000 duplicate key"},
                                          {2: "MongoDB rechazó el documento: Document failed validation"})


@pytest.mark.parametrize("code, errmsg", [(24, "LockTimeout"), (46, "LockBusy"), (14031, "OutOfDiskSpace"),
                                          (112, "WriteConflict"), (10107, "not primary"), (13388, "StaleConfig")])
def test_an_error_of_a_moment_on_one_document_retries_the_write_instead_of_dead_lettering(code: int,
                                                                                           errmsg: str) -> None:
    # A valid message refused because of a lock, a full disk or a step-down would be
    # stored again once the moment passes: it must not end in the dead-letter collection.
    details = {"writeErrors": [_write_error(0, 11000, "E11000 duplicate key"), _write_error(1, code, errmsg)]}
    with pytest.raises(StorageUnavailable, match=errmsg):
        sort_write_errors(details)


def test_a_write_refused_to_the_user_or_a_write_concern_the_server_cannot_meet_is_fatal() -> None:
    with pytest.raises(StorageFatal, match="rol readWrite"):
        sort_write_errors({"writeErrors": [_write_error(0, 13, "not authorized on metrics to execute insert")]})
    with pytest.raises(StorageFatal, match="write concern pedido: no such tag"):
        sort_write_errors({"writeErrors": [], "writeConcernErrors": [{"code": 79, "errmsg": "no such tag"}]})
    with pytest.raises(StorageUnavailable, match="write concern no cumplido"):
        sort_write_errors({"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "replication timeout"}]})


def test_writes_are_journaled_keep_the_write_concern_of_the_uri_and_reads_go_to_the_primary() -> None:
    assert journaled(WriteConcern()).document == {"j": True}
    assert journaled(WriteConcern(w="majority", wtimeout=5000)).document == {"w": "majority", "wtimeout": 5000,
                                                                             "j": True}
    assert journaled(WriteConcern(w=0)).document == {"j": True}  # unacknowledged would lose messages
    assert journaled(WriteConcern(w=2, fsync=True)).document == {"w": 2, "j": True}
    # What the consumer builds from an Atlas-style URI (no connection is opened).
    settings = load_consumer_settings(
        ["--mongodb-uri", "mongodb://db.example.net/?w=majority&wtimeoutMS=8000&readPreference=secondaryPreferred"],
        environ={}, dotenv_path="")
    client = open_client(settings.mongo, "test")
    store = MetricsStore(client, settings.mongo)
    for collection in (store.raw, store.kpis, store.deadletter):
        assert collection.write_concern.document == {"w": "majority", "wtimeout": 8000, "j": True}
        # What was just written is read back: never from a secondary that may lag behind.
        assert collection.read_preference == ReadPreference.PRIMARY
    client.close()


@pytest.mark.parametrize("options, named", [
    ("tls=maybe", "tls"), ("authMechanism=NOPE", "authMechanism"), ("retryWrite=true", "retryWrite"),
    ("w=1&w=2", "w"), ("authSource=admin&retryWrite=true&appName=iabd06", "retryWrite"),
    ("retryWrite=true&tls=maybe&w=majority", "retryWrite, tls"),
])
def test_an_option_pymongo_would_only_warn_about_and_ignore_is_a_settings_error(options: str, named: str) -> None:
    settings = load_consumer_settings(["--mongodb-uri", f"mongodb://ana:S3cret@db.example.net/?{options}"],
                                      environ={}, dotenv_path="")
    with pytest.raises(SettingsError) as caught:
        open_client(settings.mongo, "test")
    # pymongo's own message does not always say which option it means: the line does.
    assert str(caught.value).startswith(f"MONGODB_URI (--mongodb-uri): opción no válida en la URI ({named}), "
                                        "que pymongo ignoraría: ")
    assert "S3cret" not in str(caught.value)


def test_a_uri_with_valid_options_builds_a_client_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    settings = load_consumer_settings(
        ["--mongodb-uri", "mongodb://db.example.net/?retryWrites=true&w=majority&appName=iabd06&tls=true"],
        environ={}, dotenv_path="")
    open_client(settings.mongo, "test").close()
    assert not [w for w in recwarn if w.category is UserWarning]


@pytest.mark.parametrize("option", ["tlsCAFile", "tlsCertificateKeyFile"])
def test_a_file_named_in_the_uri_that_cannot_be_read_is_a_settings_error(tmp_path, option: str) -> None:
    missing = tmp_path / "no-existe.pem"
    settings = load_consumer_settings(["--mongodb-uri", f"mongodb://ana:S3cret@db.example.net/?tls=true&"
                                       f"{option}={missing}"], environ={}, dotenv_path="")
    with pytest.raises(SettingsError) as caught:  # was a FileNotFoundError traceback
        open_client(settings.mongo, "test")
    assert str(caught.value) == ("MONGODB_URI (--mongodb-uri): no se puede leer el fichero que nombra la opción "
                                 f"{option.lower()} (No such file or directory)")


@pytest.mark.skipif(sys.platform == "emscripten", reason="pymongo under Pyodide loads no TLS file when it builds a client")
def test_a_tls_file_named_in_the_uri_that_is_not_pem_is_a_settings_error(tmp_path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("esto no es un certificado\n")
    settings = load_consumer_settings(["--mongodb-uri", f"mongodb://db.example.net/?tls=true&tlsCAFile={not_pem}"],
                                      environ={}, dotenv_path="")
    with pytest.raises(SettingsError) as caught:  # was "Unknown error 136", from the handler of unreadable files
        open_client(settings.mongo, "test")
    assert str(caught.value).startswith("MONGODB_URI (--mongodb-uri): un fichero de las opciones TLS de la URI "
                                        "(tlsCAFile, tlsCertificateKeyFile) no es un PEM que TLS pueda cargar (")


def test_an_encrypted_client_key_in_the_uri_needs_its_password_option(tmp_path) -> None:
    # Without tlsCertificateKeyFilePassword, OpenSSL asked for the password on the
    # terminal and waited (or, without a terminal, failed with "Invalid argument").
    trustme = pytest.importorskip("trustme", exc_type=ImportError)  # Pyodide: no binary cryptography
    from cryptography.hazmat.primitives import serialization

    issued = trustme.CA().issue_cert("alumno")
    private = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    pem = tmp_path / "cliente.pem"
    pem.write_bytes(issued.cert_chain_pems[0].bytes() + private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"Cl4ve")))
    uri = f"mongodb://db.example.net/?tls=true&tlsCertificateKeyFile={pem}"
    settings = load_consumer_settings(["--mongodb-uri", uri], environ={}, dotenv_path="")
    with pytest.raises(SettingsError) as caught:
        open_client(settings.mongo, "test")
    assert str(caught.value) == ("MONGODB_URI (--mongodb-uri): TLS no puede usar el fichero de tlsCertificateKeyFile "
                                 "(la clave está cifrada con una contraseña): debe tener el certificado y su clave en "
                                 "PEM; una clave cifrada necesita además tlsCertificateKeyFilePassword en la URI")
    with_password = load_consumer_settings(["--mongodb-uri", uri + "&tlsCertificateKeyFilePassword=Cl4ve"],
                                           environ={}, dotenv_path="")
    open_client(with_password.mongo, "test").close()
    assert "Cl4ve" in with_password.secrets  # masked in every log line
