"""MongoDB the way Atlas serves it: TLS and a user with a password (SCRAM).

SecantusDB is started with a certificate signed by a test CA (trustme) and with
``--auth``; the scripts get a ``mongodb://user:password@.../?tls=true&tlsCAFile=...``
URI, as a user would with Atlas (whose CA the system already trusts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from pymongo import MongoClient

from tests.support.audit import audit
from tests.support.pipeline import CONSUMER, REPORT, Pipeline
from tests.support.secrets import assert_no_secret
from tools.local_stack import SecantusServer, TlsFiles

pytestmark = pytest.mark.slow

PASSWORD = "Atlas-S3cret!"  # '!' is written %21 in a URI


@pytest.fixture
def secure_mongo(own_mongo, tmp_path: Path) -> SecantusServer:
    """SecantusDB with TLS and --auth, holding the user 'ana' (created before --auth)."""
    plain = own_mongo()
    with MongoClient(plain.uri) as client:
        client.admin.command("createUser", "ana", pwd=PASSWORD, roles=["root"])
    plain.stop()
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    certificate.cert_chain_pems[0].write_to_path(files.cert)
    certificate.private_key_pem.write_to_path(files.key)
    ca.cert_pem.write_to_path(files.ca)
    return own_mongo(auth=True, tls=files)


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
    errors = [line for line in output.splitlines() if " ERROR " in line]
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
    [error] = [line for line in output.splitlines() if " ERROR " in line]
    assert "rechazó las credenciales" in error
    assert "otra-cosa" not in output and "Traceback" not in output
