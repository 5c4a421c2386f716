"""What the scripts ask of Kafka besides sending and reading: no auto-created topic,
and a SCRAM login refused inside the exchange taken as a refused login.

The behaviour itself (a broker that lost its data gets the topic back with
KAFKA_TOPIC_PARTITIONS partitions, created by the producer) is tested against a real
broker in tests/integration/test_fault_broker_restart.py.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading

import pytest
from kafka.cluster import ClusterMetadata
from kafka.errors import SaslAuthenticationFailedError
from kafka.net.sasl import get_sasl_mechanism

from metrics_pipeline import kafka_connection
from metrics_pipeline.kafka_connection import (_not_ready_reason, _untrusted_certificate, client_config,
                                               ensure_topic, forbid_topic_auto_creation, refused_login)
from metrics_pipeline.log_setup import KafkaLogBridge, KafkaStatus
from metrics_pipeline.settings import KafkaSettings


def test_metadata_requests_stop_asking_the_broker_to_create_the_topic() -> None:
    cluster = ClusterMetadata(bootstrap_servers="localhost:1")  # no network until used
    # What a producer or consumer of kafka-python 3.0.x keeps, whatever it was given.
    assert cluster.metadata_request().allow_auto_topic_creation is True
    forbid_topic_auto_creation(cluster)
    assert cluster.metadata_request().allow_auto_topic_creation is False


def test_a_client_of_another_shape_is_left_alone() -> None:
    forbid_topic_auto_creation(None)
    forbid_topic_auto_creation(object())
    forbid_topic_auto_creation(type("Cluster", (), {"config": {"other": 1}})())


@pytest.mark.skipif(not hasattr(hashlib, "pbkdf2_hmac"),
                    reason="sin hashlib.pbkdf2_hmac (Pyodide no trae OpenSSL): el SCRAM de kafka-python lo necesita")
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_scram_server_error_is_a_refused_login_with_the_servers_reason(mechanism: str) -> None:
    # RFC 5802: the server may answer the client's proof with e=<reason> instead of
    # v=<its signature>. kafka-python 3.0.x alone fails there with KeyError('v'), a
    # "connection failure" retried until --startup-timeout (seen against Tansu).
    settings = KafkaSettings("localhost:1", "t", 1, "SASL_SSL", mechanism, "ana", "pw")
    config = client_config(settings, "test")
    scram = get_sasl_mechanism(mechanism)(host="localhost", **config)
    client_first = scram.auth_bytes()                       # n,,n=ana,r=<client nonce>
    nonce = client_first.split(b",r=")[1]
    salt = base64.b64encode(b"sal").decode()
    assert scram.receive(b"r=" + nonce + b"srv,s=" + salt.encode() + b",i=4096") is False  # a normal server-first
    scram.auth_bytes()                                      # the client's proof
    with pytest.raises(SaslAuthenticationFailedError, match="login SCRAM de 'ana': e=invalid-proof$"):
        scram.receive(b"e=invalid-proof")


def test_the_ca_file_reaches_the_client_and_an_untrusted_certificate_says_what_to_set() -> None:
    plain = KafkaSettings("k:9093", "t", 1, "SSL")
    own_ca = KafkaSettings("k:9093", "t", 1, "SSL", ssl_cafile="/etc/kafka/ca.pem")
    assert "ssl_cafile" not in client_config(plain, "test")
    assert client_config(own_ca, "test")["ssl_cafile"] == "/etc/kafka/ca.pem"
    unknown = "certificate verify failed: unable to get local issuer certificate"
    assert _untrusted_certificate(plain, unknown) == (
        f"Kafka (k:9093) presenta un certificado TLS que este cliente no acepta ({unknown}): si lo firma una CA "
        f"propia, dé su fichero PEM en KAFKA_SSL_CAFILE")
    assert _untrusted_certificate(own_ca, unknown).endswith(": no lo firma la CA de KAFKA_SSL_CAFILE (/etc/kafka/ca.pem)")
    assert _untrusted_certificate(own_ca, "certificate verify failed: IP address mismatch, certificate is not valid "
                                          "for '127.0.0.1'").endswith(
        ": el certificado no es para la dirección de KAFKA_BOOTSTRAP_SERVERS; use el nombre para el que se emitió")


def test_a_refused_login_says_which_settings_to_check() -> None:
    scram = KafkaSettings("k:9093", "t", 1, "SASL_SSL", "SCRAM-SHA-512", "ana", "pw")
    refused = "SaslAuthenticationFailedError: Authentication failed: Invalid username or password"
    assert refused_login(scram, refused) == (
        f"Kafka (k:9093) rechazó la autenticación: {refused}: revise KAFKA_SASL_USERNAME ('ana'), KAFKA_SASL_PASSWORD "
        f"y KAFKA_SASL_MECHANISM (SCRAM-SHA-512)")
    assert refused_login(scram, "UnsupportedSaslMechanismError").endswith(
        ": UnsupportedSaslMechanismError: el broker no admite KAFKA_SASL_MECHANISM=SCRAM-SHA-512; use el que indique "
        "su proveedor (PLAIN, SCRAM-SHA-256 o SCRAM-SHA-512)")
    assert refused_login(scram, "TopicAuthorizationFailedError: t") == (
        "Kafka (k:9093) no da permiso a este cliente: TopicAuthorizationFailedError: t: pida a quien administre "
        "Kafka permiso (ACL) para el usuario 'ana' en el tema t (y, para el consumidor, en su grupo)")
    assert refused_login(KafkaSettings("k:9093", "t", 1, "SSL"), "IllegalSaslStateError") == (
        "Kafka (k:9093) rechazó la autenticación: IllegalSaslStateError")


HINT = ("el servidor acepta la conexión y la cierra: ¿pide un certificado de cliente (KAFKA_SSL_CERTFILE y "
        "KAFKA_SSL_KEYFILE), pide otro KAFKA_SECURITY_PROTOCOL (ahora SSL) o no es un broker de Kafka?")
FAILED = "Bootstrap connection to bootstrap-0 failed: "
UNABLE = "KafkaTimeoutError: Unable to bootstrap from ['kafka:9093']"


def _start_up_reason(*kafka_python_lines: str) -> str:
    status = KafkaStatus()
    bridge = KafkaLogBridge(status)
    for line in kafka_python_lines:
        bridge.emit(logging.LogRecord("kafka.net.manager", logging.WARNING, __file__, 1, line, (), None))
    return _not_ready_reason(KafkaSettings("kafka:9093", "t", 1, "SSL"), UNABLE, status)


# How the close of a TLS 1.3 listener that wants a client certificate reaches the
# client depends on what it was doing: reading, writing its first request, or either
# after a reset (the first two seen here, on Python 3.11/3.13 and 3.14).
@pytest.mark.parametrize("closed", ["KafkaConnectionError: socket disconnected",
                                    "KafkaConnectionError: [Errno 32] Broken pipe",
                                    "KafkaConnectionError: [Errno 104] Connection reset by peer"])
def test_a_server_that_closes_the_connection_gets_a_hint(closed: str) -> None:
    assert _start_up_reason(FAILED + closed) == f"{UNABLE} (último error de kafka-python: {FAILED}{closed}); {HINT}"


def test_the_hint_stays_when_the_deadline_ends_a_later_attempt() -> None:
    # The start-up deadline can end an attempt between its TLS handshake and its first
    # request: kafka-python's last word is then a timeout, not the close.
    timeout = "KafkaTimeoutError: Timeout during ApiVersions check"
    reason = _start_up_reason(FAILED + "KafkaConnectionError: [Errno 32] Broken pipe", FAILED + timeout)
    assert reason == f"{UNABLE} (último error de kafka-python: {FAILED}{timeout}) (antes: Broken pipe); {HINT}"


def test_a_broker_that_closed_nothing_gets_no_such_hint() -> None:
    assert "cierra" not in _start_up_reason(FAILED + "KafkaConnectionError: 111 ECONNREFUSED")
    assert "cierra" not in _start_up_reason(FAILED + "KafkaTimeoutError: Timeout during ApiVersions check")


def test_a_topic_found_at_start_up_says_kafka_answers_again(monkeypatch, caplog) -> None:
    # A script started while Kafka was down hears kafka-python say so; the topic
    # then found is the proof that it answers (not the first record, maybe much later).
    status = KafkaStatus()
    status.mark_down("Connection failed: KafkaConnectionError: 111 ECONNREFUSED")
    monkeypatch.setattr(kafka_connection, "_ensure_once", lambda settings, client_id, timeout_ms: (3, False))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert ensure_topic(KafkaSettings("k:9092", "t", 3), "test", threading.Event(), status) == 3
    assert [r.getMessage()[:32] for r in caplog.records] == ["Conexión con Kafka (Kafka) resta", "Tema t listo (particiones: 3)"]
