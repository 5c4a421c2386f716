"""MongoDB the way Atlas serves it: TLS and a user with a password (SCRAM).

SecantusDB is started with a certificate signed by a test CA (trustme) and with
``--auth``; the scripts get a ``mongodb://user:password@.../?tls=true&tlsCAFile=...``
URI, as a user would with Atlas (whose CA the system already trusts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support.audit import DEADLETTER, KPIS, RAW, audit
from tests.support.logs import error_lines
from tests.support.pipeline import CONSUMER, REPORT, Pipeline
from tests.support.secrets import assert_no_secret
from tests.support.tls import issue_certificate
from tools.local_stack import SecantusServer

pytestmark = pytest.mark.slow

PASSWORD = "Atlas-S3cret!"  # '!' is written %21 in a URI


def _with_auth(own_mongo, add_users: Callable[[MongoClient], object], **options: Any) -> SecantusServer:
    """SecantusDB with --auth (and ``options``) holding what ``add_users`` created:
    users and roles are created on a server started without --auth, which is then
    started again with it on the same data."""
    plain = own_mongo()
    with MongoClient(plain.uri) as client:
        add_users(client)
    plain.stop()
    return own_mongo(auth=True, **options)


@pytest.fixture
def secure_mongo(own_mongo, tmp_path: Path) -> SecantusServer:
    """SecantusDB with TLS and --auth, holding the user 'ana'."""
    return _with_auth(own_mongo, lambda client: client.admin.command("createUser", "ana", pwd=PASSWORD, roles=["root"]),
                      tls=issue_certificate(tmp_path, "server", "localhost", "127.0.0.1"))


def _user_uri(server: SecantusServer, trust_ca: bool = True) -> str:
    assert server.tls is not None
    options = f"tls=true&tlsCAFile={server.tls.ca}" if trust_ca else "tls=true"
    return f"mongodb://ana:{PASSWORD.replace('!', '%21')}@localhost:{server.port}/?authSource=admin&{options}"


def test_the_pipeline_stores_and_reports_over_tls_with_a_password(secure_mongo, kafka_server, tmp_path,
                                                                 request) -> None:
    p = Pipeline.for_test(kafka_server.address, _user_uri(secure_mongo), tmp_path, request.node.name)
    produced = p.produce(8)  # 40 messages: two windows
    consumed = p.consume()
    audit(p.db, valid=40)
    report = p.run(REPORT, "--output", str(tmp_path / "informe.png"))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "Últimas 2 ventanas KPI (de 2)" in report.stdout
    for done in (produced, consumed, report):
        assert_no_secret(done.stdout + done.stderr, PASSWORD)
        assert "Traceback" not in done.stderr


def test_a_certificate_the_client_does_not_trust_is_one_clear_error_line(secure_mongo, kafka_server, tmp_path,
                                                                         request) -> None:
    p = Pipeline.for_test(kafka_server.address, _user_uri(secure_mongo, trust_ca=False), tmp_path,
                          request.node.name)
    done = p.run(CONSUMER, "--startup-timeout", "3", timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-2000:]
    errors = error_lines(output)
    assert len(errors) == 1 and "No se pudo conectar a MongoDB" in errors[0], output[-2000:]
    assert "CERTIFICATE_VERIFY_FAILED" in errors[0]
    assert_no_secret(output, PASSWORD)
    assert "Traceback" not in output


def test_a_wrong_password_over_tls_is_one_error_line_and_exit_1(secure_mongo, kafka_server, tmp_path,
                                                                request) -> None:
    uri = _user_uri(secure_mongo).replace(PASSWORD.replace("!", "%21"), "otra-cosa")
    p = Pipeline.for_test(kafka_server.address, uri, tmp_path, request.node.name)
    done = p.run(CONSUMER, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-2000:]
    [error] = error_lines(output)
    assert "rechazó las credenciales" in error
    assert "otra-cosa" not in output and "Traceback" not in output


def test_a_user_who_may_only_read_stops_with_one_line_and_loses_nothing(own_mongo, kafka_server, tmp_path,
                                                                         request) -> None:
    """An Atlas user with the "read" role: MongoDB refuses the consumer's writes (code 13,
    Unauthorized). Retrying cannot cure that, so the consumer stops with exit 1 and one
    ERROR line saying what MongoDB refused, at start-up (the index cannot be created) or
    at its first write (when an owner created the index before); it commits nothing, so
    a run with a user who may write stores everything, once. The report, which only
    reads, works for the reader."""
    named = Pipeline.for_test(kafka_server.address, "", tmp_path, request.node.name)
    name, database = named.name, named.database
    owner_password, reader_password = "Propietaria-2026", "Solo-Lectura-2026"

    def add_users(client: MongoClient) -> None:
        client.admin.command("createUser", "ana", pwd=owner_password, roles=["root"])
        client.admin.command("createUser", "lector", pwd=reader_password,
                             roles=[{"role": "read", "db": database}])

    server = _with_auth(own_mongo, add_users)

    def uri(user: str, password: str) -> str:
        return f"mongodb://{user}:{password}@127.0.0.1:{server.port}/?authSource=admin"

    owner = Pipeline(kafka_server.address, uri("ana", owner_password), tmp_path, name)
    reader = Pipeline(kafka_server.address, uri("lector", reader_password), tmp_path, name)

    def refused(start: str, action: str) -> None:
        done = reader.run(CONSUMER, "--idle-timeout", "3", timeout=90)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output[-2000:]
        errors = [line.split(" ERROR metrics_pipeline: ", 1)[-1] for line in error_lines(output)]
        assert len(errors) == 1 and errors[0].startswith(start), output[-2000:]
        assert f"not authorized on {database} " in errors[0] and f"(action: {action})" in errors[0]
        assert errors[0].endswith("necesita permiso de escritura en la base de datos (p. ej. el rol readWrite)")
        assert "Traceback" not in output
        assert_no_secret(output, reader_password)

    owner.produce(5)  # 25 messages
    refused("No se pudieron crear los índices en MongoDB", "createIndex")  # nobody has written there yet
    owner.consume()  # creates the index; stores 25, one window, commits offset 20
    owner.produce(8)  # 40 more
    refused("MongoDB rechazó la operación", "insert")  # the index exists: start-up passes, the write not
    assert owner.db[RAW].count_documents({}) == 25  # nothing stored by the reader
    owner.consume()
    assert audit(owner.db, valid=65).windows == 3
    shown = reader.run(REPORT, "--chart", "no")  # the report only reads: a reader may run it
    assert shown.returncode == 0 and "Últimas 3 ventanas KPI (de 3)" in shown.stdout, shown.stderr[-2000:]


def test_a_user_granted_only_the_three_collections_stores_everything(own_mongo, kafka_server, tmp_path,
                                                                     request) -> None:
    """A role that names the pipeline's collections (find, insert, createIndex,
    listIndexes) and not the database: MongoDB refuses it listCollections, with which
    the consumer checks that no collection is a time series or a view. The check is
    skipped with a WARNING; everything is stored, once."""
    named = Pipeline.for_test(kafka_server.address, "", tmp_path, request.node.name)
    database, password = named.database, "Solo-Colecciones-2026"

    def add_users(client: MongoClient) -> None:
        client.admin.command("createRole", "colecciones_iabd06", roles=[], privileges=[
            {"resource": {"db": database, "collection": name}, "actions": ["find", "insert", "createIndex",
                                                                           "listIndexes"]}
            for name in (RAW, KPIS, DEADLETTER)])
        client.admin.command("createUser", "ana", pwd=password, roles=[{"role": "colecciones_iabd06", "db": "admin"}])

    server = _with_auth(own_mongo, add_users)
    p = Pipeline(kafka_server.address, f"mongodb://ana:{password}@127.0.0.1:{server.port}/?authSource=admin",
                 tmp_path, named.name)

    p.produce(9)  # 45 messages
    done = p.consume()
    assert "Traceback" not in done.stderr and not error_lines(done.stderr)
    warnings = [line for line in done.stderr.splitlines()
                if " WARNING " in line and "Alerta en la ventana" not in line]  # alerts: random data
    assert len(warnings) == 1 and "Sin permiso para listar las colecciones" in warnings[0], done.stderr[-2000:]
    assert_no_secret(done.stdout + done.stderr, password)
    assert audit(p.db, valid=45).windows == 2
