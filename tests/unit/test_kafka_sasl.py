"""tools/kafka_sasl.py: the broker's side of a SASL login, against kafka-python's
own client side of it (the tests of the scripts trust this proxy to accept exactly
the right password)."""

from __future__ import annotations

import hashlib

import pytest
from kafka.net.sasl.scram import ScramClient

from tools.kafka_sasl import LoginFailed, SaslUser, ScramServer, check_plain

USER = SaslUser("alumno", "pa$$:w0rd@x")
needs_pbkdf2 = pytest.mark.skipif(not hasattr(hashlib, "pbkdf2_hmac"),
                                  reason="sin hashlib.pbkdf2_hmac (Pyodide no trae OpenSSL): SCRAM lo necesita")


def _scram_login(mechanism: str, name: str, password: str, tamper=lambda final: final) -> bytes:
    """kafka-python's SCRAM client against ScramServer; returns the server-final
    message once the client has checked the server's signature."""
    client, server = ScramClient(name, password, mechanism), ScramServer(USER, mechanism)
    answer, done = server.step(client.first_message())
    assert not done
    client.process_server_first_message(answer)
    answer, done = server.step(tamper(client.final_message()))
    assert done
    client.process_server_final_message(answer)  # raises if the server's signature is wrong
    return answer


@needs_pbkdf2
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_accepts_the_right_password_and_proves_it_knows_it(mechanism: str) -> None:
    assert _scram_login(mechanism, USER.name, USER.password).startswith(b"v=")


@needs_pbkdf2
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("name, password, tamper", [
    ("alumno", "pa$$:w0rd@y", lambda final: final),                                  # wrong password
    ("otro", "pa$$:w0rd@x", lambda final: final),                                    # unknown user
    ("alumno", "pa$$:w0rd@x", lambda final: final.replace(b",r=", b",r=x", 1)),      # another nonce
    ("alumno", "pa$$:w0rd@x", lambda final: final[:-6] + b"AAAA=="),                # another proof
], ids=["contraseña", "usuario", "nonce", "prueba"])
def test_scram_refuses_anything_else_with_apache_kafkas_words(mechanism: str, name: str, password: str,
                                                              tamper) -> None:
    with pytest.raises(LoginFailed, match=f"^Authentication failed during authentication due to invalid credentials "
                                          f"with SASL mechanism {mechanism}$"):
        _scram_login(mechanism, name, password, tamper)


@pytest.mark.parametrize("token, refused", [
    (b"alumno\0alumno\0pa$$:w0rd@x", None),          # what kafka-python sends: authzid = the user
    (b"\0alumno\0pa$$:w0rd@x", None),                # no authzid
    (b"alumno\0alumno\0pa$$:w0rd@y", "Invalid username or password"),
    (b"\0otro\0pa$$:w0rd@x", "Invalid username or password"),
    (b"otro\0alumno\0pa$$:w0rd@x", "authorization id that is different from username"),
    (b"alumno\0pa$$:w0rd@x", "expected 3 tokens"),
])
def test_plain_checks_the_user_and_the_password(token: bytes, refused: str | None) -> None:
    if refused is None:
        check_plain(USER, token)
    else:
        with pytest.raises(LoginFailed, match=refused):
            check_plain(USER, token)
