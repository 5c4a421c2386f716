"""Kafka side of the start-up: client settings, waiting for the broker, the topic.

Both scripts call :func:`ensure_topic` before anything else: it waits for Kafka
(:mod:`metrics_pipeline.startup`: WARNING per failed attempt,
:class:`~metrics_pipeline.errors.StartupError` after ``--startup-timeout`` seconds)
and creates the topic with ``KAFKA_TOPIC_PARTITIONS``
partitions when it is missing. Brokers differ in how many partitions they give an
auto-created topic, and the consumer's windows are per partition, so the scripts do
not leave that to the broker: their clients never ask for an auto-created topic
(:func:`forbid_topic_auto_creation`), and the producer calls
:func:`recreate_topic_if_missing` if the topic vanishes under it. An existing topic is
used as it is.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient

from metrics_pipeline.errors import StartupError
from metrics_pipeline.log_setup import SERVER_CLOSED, KafkaStatus, login_failure
from metrics_pipeline.settings import KafkaSettings
from metrics_pipeline.startup import NotReady, wait_for_server

log = logging.getLogger(__name__)

UNKNOWN_TOPIC = 3
_AUTH_ERRORS = (kafka_errors.AuthorizationError, kafka_errors.SaslAuthenticationFailedError,
                kafka_errors.UnsupportedSaslMechanismError, kafka_errors.IllegalSaslStateError)


def client_config(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """The connection options shared by producer, consumer and admin clients."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL_"):
        config.update(sasl_mechanism=settings.sasl_mechanism,
                      sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_password)
        if settings.sasl_mechanism and settings.sasl_mechanism.startswith("SCRAM-"):
            _read_scram_server_errors()
    if settings.ssl_cafile:
        config["ssl_cafile"] = settings.ssl_cafile
    if settings.ssl_certfile:
        config.update(ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)
    return config


def _scram_server_error(auth_bytes: bytes) -> str | None:
    """The ``e=`` of an RFC 5802 server-final-message (``e=invalid-proof``,
    ``e=unknown-user``...), or None when the message is not a server error."""
    text = auth_bytes.decode("utf-8", "replace")
    return text.split(",", 1)[0][2:] if text.startswith("e=") else None


@functools.cache
def _read_scram_server_errors() -> None:
    """Make kafka-python's SCRAM take a server's refusal for what it is.

    RFC 5802 lets a server refuse a SCRAM login inside the exchange, with
    ``e=<reason>`` where its signature (``v=``) would be. Apache Kafka refuses with a
    Kafka error code instead, which kafka-python reports as SaslAuthenticationFailed;
    but kafka-python 3.0.x reads an ``e=`` answer (Tansu sends ``e=unknown-user``) as
    a connection that failed with ``KeyError('v')``, and retries it until
    ``--startup-timeout``. Registered through kafka-python's own
    ``register_sasl_mechanism``, a SCRAM that raises SaslAuthenticationFailedError
    with the server's reason: the start-up stops after its first attempt with that
    line, as for any refused login. Another kafka-python without that registry is
    left alone. Once per process: every client built afterwards uses it.
    """
    try:
        from kafka.net.sasl import get_sasl_mechanism, register_sasl_mechanism
        from kafka.net.sasl.scram import SaslMechanismScram
    except ImportError:
        return

    class ScramReadingServerErrors(SaslMechanismScram):
        def receive(self, auth_bytes: bytes) -> bool:
            error = _scram_server_error(auth_bytes)
            if error is not None:
                raise kafka_errors.SaslAuthenticationFailedError(
                    f"el servidor rechazó el login SCRAM de {self.username!r}: e={error}")
            return bool(super().receive(auth_bytes))

    for name in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        if get_sasl_mechanism(name) is SaslMechanismScram:
            register_sasl_mechanism(name, ScramReadingServerErrors, overwrite=True)


def forbid_topic_auto_creation(cluster: Any) -> None:
    """Make a producer's or consumer's metadata requests stop asking the broker to
    create a missing topic.

    kafka-python 3.0.x accepts ``allow_auto_create_topics=False`` but does not pass it
    on to the cluster metadata that builds those requests: they keep asking, and a
    broker that allows it (Apache Kafka's default, and the local Tansu) creates the
    topic with its own partition count the moment the topic is missing (seen after a
    broker restarted without its data: 4 partitions instead of 1). ``cluster`` is the
    client's ``ClusterMetadata``; an object of another shape (another kafka-python)
    is left alone.
    """
    config = getattr(cluster, "config", None)
    if isinstance(config, dict) and "allow_auto_create_topics" in config:
        config["allow_auto_create_topics"] = False


def error_reason(exc: BaseException) -> str:
    """A Kafka error in one line of at most 200 characters, for a log or error line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    """Partitions of the topic, or None when it does not exist."""
    described = admin.describe_topics([topic])
    info = next((t for t in described if t.get("name") == topic), None)
    if info is None or info.get("error_code") == UNKNOWN_TOPIC:
        return None
    if info.get("error_code"):
        raise kafka_errors.for_code(info["error_code"])(topic)
    return len(info.get("partitions") or [])


def _ensure_once(settings: KafkaSettings, client_id: str, timeout_ms: int) -> tuple[int, bool]:
    admin = KafkaAdminClient(**client_config(settings, client_id), bootstrap_timeout_ms=timeout_ms,
                             request_timeout_ms=max(timeout_ms, 5000))
    try:
        count = _partition_count(admin, settings.topic)
        if count:
            return count, False
        try:
            admin.create_topics({settings.topic: {"num_partitions": settings.partitions,
                                                  "replication_factor": -1}})
        except kafka_errors.TopicAlreadyExistsError:
            pass  # another script created it a moment ago
        except kafka_errors.IncompatibleBrokerVersion:
            # Brokers before 2.4 need an explicit replication factor.
            admin.create_topics({settings.topic: {"num_partitions": settings.partitions,
                                                  "replication_factor": 1}})
        admin.wait_for_topics([settings.topic], timeout_ms=max(timeout_ms, 5000))
        return _partition_count(admin, settings.topic) or settings.partitions, True
    finally:
        admin.close()


def recreate_topic_if_missing(settings: KafkaSettings, client_id: str, timeout_seconds: float = 5.0) -> None:
    """Mid-run check, after sends failed for lack of the topic: create it again.

    The clients never let the broker auto-create the topic (it would choose the
    partition count); a topic that vanished (a broker restarted without its data, a
    topic deleted) is created here with ``KAFKA_TOPIC_PARTITIONS``, like at start-up.
    Failing is not fatal: the caller keeps retrying its sends.
    """
    try:
        count, created = _ensure_once(settings, client_id, int(timeout_seconds * 1000))
    except (kafka_errors.KafkaError, OSError) as exc:
        log.warning("No se pudo comprobar el tema %s en Kafka: %s", settings.topic, error_reason(exc))
        return
    if created:
        log.warning("El tema %s no existía (¿un broker reiniciado sin sus datos o un tema borrado?): "
                    "creado de nuevo (particiones: %d)", settings.topic, count)


def _disconnected_hint(settings: KafkaSettings) -> str:
    """What to check when the server closes every connection without an answer."""
    protocol = settings.security_protocol
    if not settings.uses_tls:
        return (f"¿pide otro KAFKA_SECURITY_PROTOCOL (ahora {protocol}; p. ej. SASL_SSL en un Kafka gestionado) "
                f"o no es un broker de Kafka?")
    # Over TLS 1.3 a listener that wants a client certificate ends the connection
    # after the handshake, which kafka-python reports the same way.
    if settings.ssl_certfile:
        client = (f"no acepta el certificado de cliente de KAFKA_SSL_CERTFILE ({settings.ssl_certfile}: ¿lo "
                  f"firma una CA en la que confíe?)")
    else:
        client = "pide un certificado de cliente (KAFKA_SSL_CERTFILE y KAFKA_SSL_KEYFILE)"
    return f"¿{client}, pide otro KAFKA_SECURITY_PROTOCOL (ahora {protocol}) o no es un broker de Kafka?"


def _not_ready_reason(settings: KafkaSettings, reason: str, status: KafkaStatus | None) -> str:
    """Why an attempt to reach Kafka failed: kafka-python's exception (often only
    "Unable to bootstrap"), its last complaint, and what to check when the server
    closed a connection without an answer, in this attempt or an earlier one."""
    if status is not None and status.last_error and status.last_error not in reason:
        reason = f"{reason} (último error de kafka-python: {status.last_error})"
    closed = SERVER_CLOSED.search(reason) is not None
    if not closed and status is not None and status.server_closed:
        reason += f" (antes: {status.server_closed})"
        closed = True
    if closed:
        reason += f"; el servidor acepta la conexión y la cierra: {_disconnected_hint(settings)}"
    return reason


def refused_login(settings: KafkaSettings, failure: str | BaseException) -> str:
    """The line for a login (or a permission) the broker refused: ``failure`` is
    the error's name and the broker's words (log_setup.login_failure), or the
    exception kafka-python raised; the line adds which settings to check."""
    if isinstance(failure, BaseException):
        failure = login_failure(str(failure) or type(failure).__name__)
    line = f"Kafka ({settings.bootstrap_servers}) rechazó la autenticación: {failure}"
    if "UnsupportedSaslMechanism" in failure:
        return (f"{line}: el broker no admite KAFKA_SASL_MECHANISM={settings.sasl_mechanism}; use el que indique "
                f"su proveedor (PLAIN, SCRAM-SHA-256 o SCRAM-SHA-512)")
    if "Authorization" in failure:
        return (f"Kafka ({settings.bootstrap_servers}) no da permiso a este cliente: {failure}: pida a quien "
                f"administre Kafka permiso (ACL) para el usuario {settings.sasl_username!r} en el tema "
                f"{settings.topic} (y, para el consumidor, en su grupo)")
    if settings.security_protocol.startswith("SASL_"):
        return (f"{line}: revise KAFKA_SASL_USERNAME ({settings.sasl_username!r}), KAFKA_SASL_PASSWORD y "
                f"KAFKA_SASL_MECHANISM ({settings.sasl_mechanism})")
    return line


def _untrusted_certificate(settings: KafkaSettings, failure: str) -> str:
    """The start-up line for a broker certificate the client does not accept."""
    line = f"Kafka ({settings.bootstrap_servers}) presenta un certificado TLS que este cliente no acepta ({failure})"
    if "mismatch" in failure.lower():
        return (f"{line}: el certificado no es para la dirección de KAFKA_BOOTSTRAP_SERVERS; use el nombre "
                f"para el que se emitió")
    if settings.ssl_cafile:
        return f"{line}: no lo firma la CA de KAFKA_SSL_CAFILE ({settings.ssl_cafile})"
    return f"{line}: si lo firma una CA propia, dé su fichero PEM en KAFKA_SSL_CAFILE"


def ensure_topic(settings: KafkaSettings, client_id: str, stop: threading.Event,
                 status: KafkaStatus | None = None) -> int:
    """Wait for Kafka (:func:`~metrics_pipeline.startup.wait_for_server`) and make sure
    the topic exists. Returns its partition count.

    ``status`` (fed by kafka-python's log lines) tells a refused login, which
    kafka-python itself only logs, from a broker that is not there yet.
    """
    def refused() -> StartupError | None:
        """A login kafka-python logged as refused (it only logs it, and retries)."""
        if status is not None and status.auth_failure:
            return StartupError(refused_login(settings, status.auth_failure))
        return None

    def attempt(seconds_left: float) -> tuple[int, bool]:
        try:
            return _ensure_once(settings, client_id, int(max(min(seconds_left, 10.0), 1.0) * 1000))
        except _AUTH_ERRORS as exc:
            raise StartupError(refused_login(settings, exc)) from None
        except (kafka_errors.KafkaError, OSError) as exc:
            if (refusal := refused()) is not None:
                raise refusal from None
            if status is not None and status.tls_failure:
                raise StartupError(_untrusted_certificate(settings, status.tls_failure)) from None
            raise NotReady(_not_ready_reason(settings, error_reason(exc), status)) from None

    silent = "el broker acepta la conexión pero no responde"
    if settings.uses_tls:
        # kafka-python's TLS handshake has no timeout: against a listener without TLS
        # (the local docker compose Kafka) it waits for ever for the broker's greeting.
        silent += (f"; con KAFKA_SECURITY_PROTOCOL={settings.security_protocol} el cliente espera el "
                   f"saludo TLS del broker: ¿ese puerto no usa TLS (p. ej. el Kafka de docker compose, "
                   f"PLAINTEXT)?")
    count, created = wait_for_server(f"Kafka ({settings.bootstrap_servers})", attempt, stop,
                                     settings.startup_timeout, "no se ha enviado ni leído nada", silent,
                                     give_up=refused)
    if status is not None:
        status.mark_up()  # if kafka-python's lines said it was down: it answered
    if created:
        log.info("Tema %s creado (particiones: %d)", settings.topic, count)
    elif count != settings.partitions:
        log.info("Tema %s ya existe (particiones: %d; KAFKA_TOPIC_PARTITIONS=%d solo se aplica "
                 "al crearlo)", settings.topic, count, settings.partitions)
    else:
        log.info("Tema %s listo (particiones: %d)", settings.topic, count)
    return count
