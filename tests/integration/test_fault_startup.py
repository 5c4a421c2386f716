"""Scenario 7: unreachable servers or refused credentials at start-up, and bad settings.

Exit 1 after --startup-timeout with one clear ERROR line naming what could not be
reached; exit 2 with one line for a bad setting; never a traceback; and a password
given in MONGODB_URI or KAFKA_SASL_PASSWORD appears in no output, error paths included.
"""

from __future__ import annotations

import signal
import time

import pytest
from kafka import KafkaConsumer
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from metrics_pipeline.log_setup import SERVER_CLOSED
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, PRODUCER, REPORT, Pipeline
from tests.support.secrets import assert_no_secret
from tools.local_stack import free_port

pytestmark = pytest.mark.slow

MONGO_SECRET = "Mongo-S3cret-Pw!"
KAFKA_SECRET = "Kafka-S3cret-Pw!"


def _closed_port_uri() -> str:
    return f"mongodb://ana:{MONGO_SECRET.replace('!', '%21')}@127.0.0.1:{free_port()}/?authSource=admin"


def _no_secret(text: str) -> None:
    assert_no_secret(text, MONGO_SECRET, KAFKA_SECRET)


def _exits_1_after(pipeline: Pipeline, script, args: list[str], env: dict[str, str], seconds: float,
                   at_most: float) -> tuple[str, str]:
    """Run a script that must give up after ``seconds``: exit 1, no secret, no
    traceback, exactly one ERROR line. Returns (that line, the whole output)."""
    started = time.monotonic()
    done = pipeline.run(script, *args, env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert seconds <= elapsed < at_most
    output = done.stdout + done.stderr
    _no_secret(output)
    assert "Traceback" not in output
    [line] = error_lines(output)
    return line, output


def test_consumer_exits_1_when_mongodb_is_unreachable(pipeline: Pipeline) -> None:
    env = pipeline.env(MONGODB_URI=_closed_port_uri(), STARTUP_TIMEOUT_SECONDS="5", LOG_LEVEL="DEBUG")
    line, output = _exits_1_after(pipeline, CONSUMER, [], env, 5, 15)
    assert "No se pudo conectar a MongoDB (mongodb://127.0.0.1:" in line and "en 5 s" in line
    assert "WARNING" in output and "MongoDB (mongodb://127.0.0.1:" in output  # the retries were logged


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
def test_scripts_exit_1_when_kafka_is_unreachable_and_never_show_the_sasl_password(pipeline: Pipeline, script) -> None:
    env = pipeline.env(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", STARTUP_TIMEOUT_SECONDS="3",
                       KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="PLAIN",
                       KAFKA_SASL_USERNAME="ana", KAFKA_SASL_PASSWORD=KAFKA_SECRET, LOG_LEVEL="DEBUG")
    args = ["--rounds", "1"] if script == PRODUCER else []
    line, output = _exits_1_after(pipeline, script, args, env, 3, 20)
    assert "No se pudo conectar a Kafka (127.0.0.1:" in line
    assert "ECONNREFUSED" in line  # kafka-python's own reason, not only "Unable to bootstrap"
    assert " WARNING " in output  # the retries were logged


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
def test_a_sasl_login_the_broker_refuses_exits_1_without_waiting_out_the_timeout(pipeline: Pipeline, script) -> None:
    # The local broker offers no SASL mechanism: kafka-python only logs the refusal
    # and would retry until --startup-timeout; retrying cannot cure it.
    env = pipeline.env(STARTUP_TIMEOUT_SECONDS="60", KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                       KAFKA_SASL_MECHANISM="SCRAM-SHA-256", KAFKA_SASL_USERNAME="ana",
                       KAFKA_SASL_PASSWORD=KAFKA_SECRET, LOG_LEVEL="DEBUG")
    args = ["--rounds", "1"] if script == PRODUCER else []
    line, _ = _exits_1_after(pipeline, script, args, env, 0, 30)
    assert f"Kafka ({pipeline.bootstrap}) rechazó la autenticación" in line and "Sasl" in line


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
def test_a_broker_that_wants_a_login_the_settings_do_not_give_gets_a_hint(pipeline: Pipeline, own_kafka,
                                                                          script) -> None:
    # The broker requires SASL and the settings say PLAINTEXT (the default): it closes
    # every connection, which kafka-python reports as "socket disconnected" (or, if
    # the close meets a request being written, "Broken pipe").
    broker = own_kafka(authentication=True)
    env = pipeline.env(KAFKA_BOOTSTRAP_SERVERS=broker.address, STARTUP_TIMEOUT_SECONDS="3")
    args = ["--rounds", "1"] if script == PRODUCER else []
    line, _ = _exits_1_after(pipeline, script, args, env, 3, 20)
    assert f"No se pudo conectar a Kafka ({broker.address}) en 3 s" in line
    assert SERVER_CLOSED.search(line)
    assert "¿pide otro KAFKA_SECURITY_PROTOCOL (ahora PLAINTEXT;" in line


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
def test_a_scram_login_the_broker_refuses_in_the_exchange_says_so_with_its_reason(pipeline: Pipeline, own_kafka,
                                                                                  script) -> None:
    # The broker answers the client's proof with RFC 5802's e=<reason> (Tansu keeps no
    # users: e=unknown-user). kafka-python alone read it as a connection failure
    # (KeyError 'v') and retried until --startup-timeout.
    broker = own_kafka(authentication=True)
    env = pipeline.env(KAFKA_BOOTSTRAP_SERVERS=broker.address, STARTUP_TIMEOUT_SECONDS="60",
                       KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                       KAFKA_SASL_USERNAME="ana", KAFKA_SASL_PASSWORD=KAFKA_SECRET, LOG_LEVEL="DEBUG")
    args = ["--rounds", "1"] if script == PRODUCER else []
    line, _ = _exits_1_after(pipeline, script, args, env, 0, 30)
    assert f"Kafka ({broker.address}) rechazó la autenticación" in line
    assert "el servidor rechazó el login SCRAM de 'ana': e=unknown-user" in line


@pytest.mark.parametrize("script", [PRODUCER, CONSUMER], ids=["productor", "consumidor"])
def test_tls_against_a_broker_without_tls_exits_1_after_the_timeout_with_a_hint(pipeline: Pipeline,
                                                                               script) -> None:
    # kafka-python's TLS handshake waits for ever for the greeting of a plaintext
    # broker: no error, no log line. It used to hang past --startup-timeout until a signal.
    env = pipeline.env(STARTUP_TIMEOUT_SECONDS="3", KAFKA_SECURITY_PROTOCOL="SSL")
    args = ["--rounds", "1"] if script == PRODUCER else []
    line, _ = _exits_1_after(pipeline, script, args, env, 3, 15)
    assert f"No se pudo conectar a Kafka ({pipeline.bootstrap}) en 3 s: el broker acepta la conexión pero " \
           f"no responde; con KAFKA_SECURITY_PROTOCOL=SSL el cliente espera el saludo TLS" in line


class _ItsOwnStrategy(RoundRobinPartitionAssignor):
    """An assignment strategy only the other program knows (like a Java consumer with
    only ``cooperative-sticky``): no strategy in common with ours."""

    name = "solo-la-suya"


def test_a_group_another_program_uses_with_other_strategies_exits_1_naming_the_group(pipeline: Pipeline) -> None:
    # Kafka refuses our join for good (INCONSISTENT_GROUP_PROTOCOL); kafka-python
    # raises it from poll(), where it used to end as an "unexpected error" traceback.
    pipeline.create_topic()
    other = KafkaConsumer(pipeline.topic, bootstrap_servers=pipeline.bootstrap, group_id=pipeline.group,
                          enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                          partition_assignment_strategy=[_ItsOwnStrategy])
    try:
        deadline = time.monotonic() + 60
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(timeout_ms=500)
        assert other.assignment(), "the other program's consumer never got its partition"
        line, _ = _exits_1_after(pipeline, CONSUMER, ["--idle-timeout", "60"], pipeline.env(), 0, 50)
    finally:
        other.close()
    assert f"grupo {pipeline.group}" in line and "KAFKA_GROUP_ID (--group-id)" in line


@pytest.mark.parametrize("script, unreachable, signum", [
    (PRODUCER, "kafka", signal.SIGTERM), (CONSUMER, "kafka", signal.SIGINT), (CONSUMER, "mongodb", signal.SIGTERM),
], ids=["productor-kafka", "consumidor-kafka", "consumidor-mongodb"])
def test_a_stop_while_waiting_at_start_up_is_a_normal_end_at_once(pipeline: Pipeline, script, unreachable,
                                                                  signum) -> None:
    # A Kafka attempt waits up to 10 s for a bootstrap; a stop must not wait it out, and
    # it is not "could not connect in 60 s" (exit 1): nothing was done yet, exit 0.
    closed = f"127.0.0.1:{free_port()}"
    env = pipeline.env(STARTUP_TIMEOUT_SECONDS="60", **(
        {"KAFKA_BOOTSTRAP_SERVERS": closed} if unreachable == "kafka" else {"MONGODB_URI": _closed_port_uri()}))
    running = pipeline.start(script, *(["--rounds", "1"] if script == PRODUCER else []), env=env)
    try:
        running.wait_for(" no responde: ", timeout=30)
        time.sleep(1.0)  # inside the next attempt
        started = time.monotonic()
        running.signal(signum)
        code = running.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        running.kill()
    output = running.text()
    assert code == 0, output
    assert elapsed < 5, elapsed  # an attempt waited out would take up to 10 s
    assert "Parada pedida mientras se esperaba a " + ("Kafka" if unreachable == "kafka" else "MongoDB") in output
    assert "No se pudo conectar" not in output and "Traceback" not in output
    _no_secret(output)


def test_refused_mongodb_credentials_exit_1_at_once_without_the_password(own_mongo, kafka_server, tmp_path,
                                                                         request) -> None:
    mongo = own_mongo()
    from pymongo import MongoClient
    MongoClient(mongo.uri).admin.command("createUser", "ana", pwd="la-buena", roles=["root"])
    p = Pipeline.for_test(kafka_server.address, mongo.uri, tmp_path, request.node.name)
    uri = f"mongodb://ana:{MONGO_SECRET.replace('!', '%21')}@127.0.0.1:{mongo.port}/?authSource=admin"
    # At once: no retry (a retry is a WARNING "... no responde: ...") and an exit long
    # before --startup-timeout (run() raises TimeoutExpired after half of it).
    done = p.run(CONSUMER, env=p.env(MONGODB_URI=uri, LOG_LEVEL="DEBUG", STARTUP_TIMEOUT_SECONDS="120"),
                 timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert " no responde: " not in output
    _no_secret(output)
    assert "Traceback" not in output
    [line] = error_lines(output)
    assert "rechazó las credenciales" in line


@pytest.mark.parametrize("script, args, env, setting", [
    (CONSUMER, [], {"MONGODB_URI": f"mongodb://ana:{MONGO_SECRET}@host:notaport/"}, "MONGODB_URI"),
    (CONSUMER, [], {"MONGODB_URI": f"postgres://ana:{MONGO_SECRET}@host/"}, "MONGODB_URI"),
    # "/" and "@" unencoded in the password: pymongo would take the secret for the host.
    (CONSUMER, [], {"MONGODB_URI": f"mongodb://ana:x@{MONGO_SECRET}/2026@127.0.0.1:1/"}, "MONGODB_URI"),
    (CONSUMER, ["--window-size", "-4"], {}, "KPI_WINDOW_SIZE"),
    (CONSUMER, [], {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": KAFKA_SECRET}, "KAFKA_SASL_MECHANISM"),
    (PRODUCER, ["--interval", "pronto"], {}, "PRODUCER_INTERVAL_SECONDS"),
    (PRODUCER, ["--bogus"], {}, "--bogus"),
    (REPORT, ["--last", "0"], {}, "--last"),
    (REPORT, ["--since", "0001-01-01T00:00+05:00"], {}, "--since"),
    # A password typed in a Latin-1 terminal: the environment holds the byte 0xF1.
    (CONSUMER, [], {"MONGODB_URI": f"mongodb://ana:{MONGO_SECRET}\udcf1@127.0.0.1:1/"}, "MONGODB_URI"),
    (CONSUMER, ["--window-size", "9" * 5000], {}, "KPI_WINDOW_SIZE"),
], ids=["uri-port", "uri-scheme", "uri-unencoded", "window", "sasl", "interval", "unknown-flag", "report-last",
        "report-since-before-year-1", "uri-not-utf8", "window-5000-digits"])
def test_bad_settings_exit_2_with_one_line_naming_the_setting(pipeline: Pipeline, script, args, env, setting) -> None:
    done = pipeline.run(script, *args, env=pipeline.env(**env), timeout=60)
    assert done.returncode == 2
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert setting in lines[0]
    _no_secret(output)


@pytest.mark.parametrize("collection", ["system_metrics_raw_iabd06", "system_metrics_kpis_iabd06"])
def test_a_time_series_collection_is_refused_at_start_up(pipeline: Pipeline, collection: str) -> None:
    # MongoDB keeps _id unique in every collection but a time-series one (which is what
    # its documentation suggests for metrics): there a replay would store each message
    # again. SecantusDB, like MongoDB, stores two documents with one _id there.
    pipeline.db.create_collection(collection, timeseries={"timeField": "timestamp", "metaField": "server_id"})
    pipeline.produce(1)
    done = pipeline.run(CONSUMER, "--idle-timeout", "3", timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert f"La colección {pipeline.database}.{collection} es de series temporales" in line
    assert pipeline.db[collection].count_documents({}) == 0


def test_a_view_is_refused_at_start_up(pipeline: Pipeline) -> None:
    # Real MongoDB refuses writes to a view; SecantusDB acknowledges them and keeps nothing.
    pipeline.db.create_collection("base")
    pipeline.db.create_collection("system_metrics_raw_iabd06", viewOn="base", pipeline=[])
    pipeline.produce(1)
    done = pipeline.run(CONSUMER, "--idle-timeout", "3", timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    [line] = error_lines(done.stderr)
    assert f"La colección {pipeline.database}.system_metrics_raw_iabd06 es una vista" in line
    assert "Traceback" not in done.stderr
