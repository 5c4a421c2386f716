"""Kafka behind TLS and SASL, as a managed or self-hosted Kafka serves it.

The local broker (Tansu) has no TLS listener, so a TLS proxy (tools/tcp_proxy.py
with a certificate signed by a test CA, trustme) stands in front of it and the
broker advertises the proxy's port: every connection of the scripts, bootstrap and
afterwards, speaks TLS. The scripts get ``KAFKA_SECURITY_PROTOCOL=SSL`` and, to
trust that CA, ``KAFKA_SSL_CAFILE``.

Tansu keeps no users, so it refuses every SASL login. A login that succeeds is
asked for by the same proxy (``--sasl-user``, tools/kafka_sasl.py), which checks
the PLAIN password or the SCRAM proof as Apache Kafka does, refuses as Apache Kafka
does, and then hands the connection to the broker."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from metrics_pipeline.log_setup import SERVER_CLOSED
from tests.support.audit import audit
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, PRODUCER, Pipeline
from tests.support.secrets import assert_no_secret
from tests.support.tls import issue_certificate, other_ca
from tools.local_stack import ServerProcess, TansuServer, TcpProxy, TlsFiles, free_port

pytestmark = pytest.mark.slow


SASL_USER, SASL_PASSWORD = "alumno", "S4sl-pa$$:w0rd@iabd"


def _broker_behind_proxy(own_servers: list[ServerProcess], tmp_path: Path, authentication: bool = False,
                         **listener: Any) -> str:
    """A fresh broker that clients reach only through a tools/tcp_proxy.py listener
    (``listener``: TcpProxy's options), which it advertises: the listener's address
    (the listener is own_servers[-1]). ``authentication``: the broker itself requires
    a SASL login (and, keeping no users, refuses every one)."""
    broker_port, listener_port = free_port(), free_port()
    own_servers.append(TansuServer(broker_port, tmp_path / "servers", advertised_port=listener_port,
                                   authentication=authentication).start())
    own_servers.append(TcpProxy(listener_port, broker_port, tmp_path / "servers", **listener).start())
    return f"127.0.0.1:{listener_port}"


def _tls_broker(own_servers: list[ServerProcess], tmp_path: Path, *names: str, authentication: bool = False,
                client_ca: Path | None = None, sasl: bool = False) -> tuple[str, TlsFiles]:
    """A fresh broker behind a TLS listener whose certificate is for ``names``:
    (the listener's address, the certificate files). ``authentication``: see
    _broker_behind_proxy; ``client_ca``: the listener requires a client certificate
    signed by that CA; ``sasl``: the listener requires a SASL login of SASL_USER
    (see the module doc)."""
    files = issue_certificate(tmp_path, "kafka", *names)
    address = _broker_behind_proxy(own_servers, tmp_path, authentication, tls=files, client_ca=client_ca,
                                   sasl=(SASL_USER, SASL_PASSWORD) if sasl else None)
    return address, files


def _sasl_broker(own_servers: list[ServerProcess], tmp_path: Path, session_ms: int = 0) -> str:
    """A fresh broker behind a plaintext listener that requires a SASL login of
    SASL_USER (see the module doc), again every ``session_ms`` if set: the
    listener's address (the listener is own_servers[-1])."""
    return _broker_behind_proxy(own_servers, tmp_path, sasl=(SASL_USER, SASL_PASSWORD), sasl_session_ms=session_ms)


@pytest.fixture
def tls_kafka(own_servers: list[ServerProcess], tmp_path: Path) -> tuple[str, TlsFiles]:
    return _tls_broker(own_servers, tmp_path, "localhost", "127.0.0.1")


def test_the_pipeline_goes_through_a_tls_listener_trusting_the_brokers_ca(tls_kafka, mongo_server, tmp_path,
                                                                         request) -> None:
    address, files = tls_kafka
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name,
                          extra_env={"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(files.ca)})
    produced = p.produce(8)  # 40 messages: two windows
    consumed = p.consume()
    audit(p.db, valid=40)
    for done in (produced, consumed):
        assert "Traceback" not in done.stderr and " ERROR " not in done.stderr


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
@pytest.mark.parametrize("trust, says", [
    ("system", "certificate verify failed: unable to get local issuer certificate): si lo firma una CA propia, "
               "dé su fichero PEM en KAFKA_SSL_CAFILE"),
    ("other CA", "certificate verify failed: unable to get local issuer certificate): no lo firma la CA de "
                 "KAFKA_SSL_CAFILE"),
], ids=["sin-ca", "otra-ca"])
def test_a_broker_certificate_the_client_does_not_trust_stops_at_the_first_attempt(
        tls_kafka, mongo_server, tmp_path, request, script, trust, says) -> None:
    # Retrying cannot cure it: exit 1 after the first attempt, not after the timeout,
    # with one line saying what to set.
    address, _ = tls_kafka
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name)
    env = p.env(KAFKA_SECURITY_PROTOCOL="SSL", STARTUP_TIMEOUT_SECONDS="60")
    if trust == "other CA":
        env["KAFKA_SSL_CAFILE"] = str(other_ca(tmp_path))
    started = time.monotonic()
    done = p.run(script, *(["--rounds", "1"] if script == PRODUCER else []), env=env, timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 30, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert f"Kafka ({address}) presenta un certificado TLS que este cliente no acepta (" in line
    assert says in line


def test_a_certificate_for_another_name_says_which_name_to_use(own_servers, mongo_server, tmp_path,
                                                               request) -> None:
    address, files = _tls_broker(own_servers, tmp_path, "kafka.example.net")  # not 127.0.0.1
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name)
    done = p.run(PRODUCER, "--rounds", "1", env=p.env(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(files.ca)),
                 timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    [line] = error_lines(done.stderr)
    assert "mismatch" in line and "el certificado no es para la dirección de KAFKA_BOOTSTRAP_SERVERS" in line


def test_a_client_without_tls_against_the_tls_listener_gets_the_protocol_hint(tls_kafka, mongo_server, tmp_path,
                                                                              request) -> None:
    # The other way round from the SSL-against-plaintext case of test_fault_startup:
    # the listener ends the handshake that never comes, which kafka-python reports as
    # "socket disconnected".
    address, _ = tls_kafka
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name)
    started = time.monotonic()
    done = p.run(PRODUCER, "--rounds", "1", env=p.env(STARTUP_TIMEOUT_SECONDS="3"), timeout=60)
    assert done.returncode == 1 and 3 <= time.monotonic() - started < 20, done.stderr[-2000:]
    [line] = error_lines(done.stderr)
    assert "el servidor acepta la conexión y la cierra: ¿pide otro KAFKA_SECURITY_PROTOCOL (ahora PLAINTEXT;" in line


def test_sasl_over_tls_reaches_the_login(own_servers, mongo_server, tmp_path, request) -> None:
    # SASL_SSL, what a managed Kafka asks for: TLS with the given CA, then the SASL
    # exchange inside it. The local broker keeps no users, so the login itself is
    # refused (e=unknown-user), which is as far as it can be tested here.
    address, files = _tls_broker(own_servers, tmp_path, "localhost", "127.0.0.1", authentication=True)
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name)
    env = p.env(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SSL_CAFILE=str(files.ca), KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
                KAFKA_SASL_USERNAME="ana", KAFKA_SASL_PASSWORD="Tls-S3cret!", STARTUP_TIMEOUT_SECONDS="60")
    done = p.run(CONSUMER, env=env, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    [line] = error_lines(done.stderr)
    assert f"Kafka ({address}) rechazó la autenticación" in line and "e=unknown-user" in line
    assert "Tls-S3cret!" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_broker_that_asks_for_a_client_certificate_gets_the_one_in_the_settings(own_servers, mongo_server,
                                                                                  tmp_path, request) -> None:
    # Mutual TLS, as Aiven's Kafka serves it: the client shows a certificate signed
    # by a CA the broker trusts (KAFKA_SSL_CERTFILE + KAFKA_SSL_KEYFILE).
    client = issue_certificate(tmp_path, "alumno", "alumno")
    address, files = _tls_broker(own_servers, tmp_path, "localhost", "127.0.0.1", client_ca=client.ca)
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name,
                          extra_env={"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(files.ca),
                                     "KAFKA_SSL_CERTFILE": str(client.cert), "KAFKA_SSL_KEYFILE": str(client.key)})
    p.produce(4)
    p.consume()
    audit(p.db, valid=20)
    # Without a certificate, or with one of another CA, the listener ends every
    # connection right after the handshake: the line says what to check.
    strangers = issue_certificate(tmp_path, "otro", "otro")
    for certfile, keyfile, says in (
            ("", "", "¿pide un certificado de cliente (KAFKA_SSL_CERTFILE y KAFKA_SSL_KEYFILE), pide otro "
                     "KAFKA_SECURITY_PROTOCOL (ahora SSL)"),
            (str(strangers.cert), str(strangers.key), f"¿no acepta el certificado de cliente de KAFKA_SSL_CERTFILE "
                                                      f"({strangers.cert}: ¿lo firma una CA en la que confíe?)")):
        env = p.env(KAFKA_SSL_CERTFILE=certfile, KAFKA_SSL_KEYFILE=keyfile, STARTUP_TIMEOUT_SECONDS="3")
        done = p.run(PRODUCER, "--rounds", "1", env=env, timeout=60)
        assert done.returncode == 1, done.stderr[-2000:]
        [line] = error_lines(done.stderr)
        assert SERVER_CLOSED.search(line) and says in line


@pytest.mark.parametrize("protocol, mechanism", [("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                 ("SASL_SSL", "SCRAM-SHA-512")])
def test_a_sasl_login_the_broker_accepts_runs_the_pipeline_and_shows_no_password(
        own_servers, mongo_server, tmp_path, request, protocol, mechanism) -> None:
    # What a managed Kafka asks for, to the end: the login succeeds on every
    # connection (bootstrap, producer, consumer, group coordinator), the data is
    # stored and audited, and the password is in no line, DEBUG included. SCRAM
    # goes through the project's own SCRAM class (kafka_connection), which must
    # still accept the server's signature.
    if protocol == "SASL_SSL":
        address, files = _tls_broker(own_servers, tmp_path, "localhost", "127.0.0.1", sasl=True)
        tls = {"KAFKA_SSL_CAFILE": str(files.ca)}
    else:
        address, tls = _sasl_broker(own_servers, tmp_path), {}
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name,
                          extra_env={"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism,
                                     "KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
                                     "LOG_LEVEL": "DEBUG", **tls})
    produced = p.produce(4)  # 20 messages: one window
    consumed = p.consume()
    audit(p.db, valid=20)
    for done in (produced, consumed):
        output = done.stdout + done.stderr
        assert_no_secret(output, SASL_PASSWORD)
        assert "Traceback" not in output and " ERROR " not in output
        cleartext = output.count(" WARNING metrics_pipeline.kafka: KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: el inicio de "
                                 "sesión y los mensajes viajan sin cifrar")
        assert cleartext == (1 if protocol == "SASL_PLAINTEXT" else 0)  # once per process, not per connection


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
@pytest.mark.parametrize("mechanism, broker_says", [
    ("PLAIN", "Authentication failed: Invalid username or password"),
    ("SCRAM-SHA-256", "Authentication failed during authentication due to invalid credentials with SASL mechanism "
                      "SCRAM-SHA-256"),
])
def test_a_wrong_password_is_refused_at_once_with_the_brokers_words(own_servers, mongo_server, tmp_path, request,
                                                                    script, mechanism, broker_says) -> None:
    # Apache Kafka refuses a login with error 58 and its message. kafka-python only
    # logs it and retries until its own timeout: the script stops as soon as the
    # refusal is logged, not after an attempt's 10 s nor --startup-timeout's 60.
    address = _sasl_broker(own_servers, tmp_path)
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name)
    wrong = SASL_PASSWORD + "-no"
    env = p.env(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM=mechanism, KAFKA_SASL_USERNAME=SASL_USER,
                KAFKA_SASL_PASSWORD=wrong, STARTUP_TIMEOUT_SECONDS="60", LOG_LEVEL="DEBUG")
    started = time.monotonic()
    done = p.run(script, *(["--rounds", "1"] if script == PRODUCER else []), env=env, timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 6, "\n".join(
        line[:200] for line in done.stderr.splitlines() if "kafka-python: " not in line and "pymongo" not in line)
    output = done.stdout + done.stderr
    assert_no_secret(output, wrong)
    assert "Traceback" not in output
    [line] = error_lines(output)
    assert line.endswith(f"Kafka ({address}) rechazó la autenticación: SaslAuthenticationFailedError: {broker_says}: "
                         f"revise KAFKA_SASL_USERNAME ('{SASL_USER}'), KAFKA_SASL_PASSWORD y KAFKA_SASL_MECHANISM "
                         f"({mechanism})")


def test_sessions_that_expire_are_renewed_on_open_connections_and_nothing_is_lost(own_servers, mongo_server,
                                                                                 tmp_path, request) -> None:
    # A Kafka with connections.max.reauth.ms (KIP-368) ends each login's session
    # after that long: the client must log in again on the open connection, and a
    # connection whose session expired is closed at its next request. Sessions of
    # 3 s here, while the consumer and the producer (12 s of rounds) run together.
    address = _sasl_broker(own_servers, tmp_path, session_ms=3000)
    proxy = own_servers[-1]
    p = Pipeline.for_test(address, mongo_server.uri, tmp_path, request.node.name,
                          extra_env={"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                     "KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": SASL_PASSWORD})
    consumer = p.start(CONSUMER, "--idle-timeout", "6")
    consumer.wait_for("Particiones asignadas", timeout=60)
    produced = p.produce(24, "--interval", "0.5")  # 120 messages in 12 s: six windows
    assert consumer.wait(timeout=120) == 0
    audit(p.db, valid=120)
    proxy_log = proxy.log_path.read_text()
    renewed = re.findall(r"reautenticación SASL de \S+ \((\d+)\.ª", proxy_log)
    assert renewed and max(int(n) for n in renewed) >= 3, proxy_log[-2000:]  # each connection, again and again
    assert "caducada" not in proxy_log, proxy_log[-2000:]
    for output in (produced.stderr, consumer.text()):
        assert "Traceback" not in output and " ERROR " not in output
        assert "no responde" not in output  # no connection was lost to an expired session
